"""`python -m benchmarks` (or `corps-bench`): corps actors on MemoryBus against raw asyncio.

Every corps figure is shown beside a raw-asyncio baseline measured in the same process, in
alternating repetitions, as the median of the per-repetition ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import metadata

from ._actor_cases import actor_ask, actor_tell, idle_actor_cost
from ._baselines import raw_ping_pong, raw_queue_one_way
from ._stats import Sample

__all__ = ("main",)

KIB = 1024


@dataclass(frozen=True, slots=True)
class Comparison:
    name: str
    unit: str
    corps: Sample
    baseline_name: str
    baseline: Sample
    target_ratio: float

    @property
    def ratio(self) -> Sample:
        return self.corps.ratio_to(self.baseline)

    @property
    def met(self) -> bool:
        return self.ratio.median >= self.target_ratio


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Measure corps actors on the in-memory bus against raw asyncio baselines.",
    )
    parser.add_argument(
        "--repeat", type=int, default=5, help="repetitions of each case (default 5)"
    )
    parser.add_argument(
        "--messages", type=int, default=200_000, help="tells per repetition (default 200000)"
    )
    parser.add_argument(
        "--asks", type=int, default=30_000, help="asks per repetition (default 30000)"
    )
    parser.add_argument(
        "--idle-actors",
        type=int,
        default=100_000,
        help="idle actors spawned for the memory figure (default 100000)",
    )
    parser.add_argument("--json", metavar="PATH", help="also write every figure to PATH as JSON")
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: 1 repetition, a tenth of the work"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.repeat = 1
        args.messages //= 10
        args.asks //= 10
        args.idle_actors //= 10
    if args.repeat < 1 or args.messages < 1 or args.asks < 1 or args.idle_actors < 1:
        parser.error("counts must be positive")
    return args


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
            sys.stderr.write(f"\r[{bar}] {self.done}/{self.total} {label:<32}")
            sys.stderr.flush()

    def close(self) -> None:
        if self.live:
            sys.stderr.write("\r" + " " * 80 + "\r")
            sys.stderr.flush()


async def paired(
    corps: Callable[[], Awaitable[float]],
    baseline: Callable[[], Awaitable[float]],
    repeat: int,
    progress: Progress,
    label: str,
) -> tuple[Sample, Sample]:
    """Alternate corps and baseline runs so that drift in the machine hits both alike."""
    ours: list[float] = []
    theirs: list[float] = []
    for _ in range(repeat):
        theirs.append(await baseline())
        progress.step(f"{label}: baseline")
        ours.append(await corps())
        progress.step(f"{label}: corps")
    return Sample(tuple(ours)), Sample(tuple(theirs))


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


async def run(args: argparse.Namespace) -> dict[str, object]:
    progress = Progress(4 * args.repeat + 1)
    started = time.perf_counter()
    tell, queue = await paired(
        lambda: actor_tell(args.messages),
        lambda: raw_queue_one_way(args.messages),
        args.repeat,
        progress,
        "tell",
    )
    ask, ping_pong = await paired(
        lambda: actor_ask(args.asks),
        lambda: raw_ping_pong(args.asks),
        args.repeat,
        progress,
        "ask",
    )
    idle = await idle_actor_cost(args.idle_actors)
    progress.step("idle actors")
    progress.close()
    comparisons = [
        Comparison("tell", "msgs/s", tell, "asyncio.Queue one-way", queue, 0.25),
        Comparison("ask", "round trips/s", ask, "ping-pong, two tasks", ping_pong, 0.35),
    ]
    memory_target = 4 * KIB
    print(f"corps benchmark: actors on MemoryBus ({machine()})")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions().items()))
    print(
        f"{args.repeat} repetitions, corps and baseline alternating; "
        "median [min-max]; ratio = median of per-repetition corps/baseline"
    )
    print()
    header = (
        f"{'case':<20} {'corps: median [min-max]':>28}   {'baseline':<22} {'median':>10}"
        f" {'ratio':>6}  target"
    )
    print(header)
    print("-" * (len(header) + 12))
    for c in comparisons:
        ours = f"{fmt(c.corps.median)} [{fmt(c.corps.low)}-{fmt(c.corps.high)}]"
        verdict = "ok" if c.met else "MISSED"
        print(
            f"{c.name + ' (' + c.unit + ')':<20} {ours:>28}   {c.baseline_name:<22}"
            f" {fmt(c.baseline.median):>10} {c.ratio.median:>6.2f}  >= {c.target_ratio:.2f} "
            f"{verdict}"
        )
    memory_ok = idle.bytes_per_actor < memory_target and idle.tasks_created == 0
    print()
    print(
        f"idle actors: {idle.bytes_per_actor / KIB:.2f} KiB each over {idle.actors:,} actors "
        f"(bus subscription included), {idle.tasks_created} tasks; "
        f"target < 4 KiB and no task: {'ok' if memory_ok else 'MISSED'}"
    )
    print(f"\ntook {time.perf_counter() - started:.1f} s")
    return {
        "machine": machine(),
        "versions": versions(),
        "repeat": args.repeat,
        "cases": [
            {
                "name": c.name,
                "unit": c.unit,
                "corps": list(c.corps.values),
                "baseline_name": c.baseline_name,
                "baseline": list(c.baseline.values),
                "ratio_median": c.ratio.median,
                "target_ratio": c.target_ratio,
                "met": c.met,
            }
            for c in comparisons
        ],
        "idle_actors": {
            "actors": idle.actors,
            "bytes_per_actor": idle.bytes_per_actor,
            "tasks_created": idle.tasks_created,
            "target_bytes": memory_target,
            "met": memory_ok,
        },
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; the exit status is 0 even when a target is missed (it is a report)."""
    args = parse_args(argv)
    results = asyncio.run(run(args))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(results, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
