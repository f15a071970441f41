"""The strategy comparison: every strategy, on every scenario and failure mix, beside the
raw-asyncio floor of its kind measured in the same repetition; and the tables that show them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from actors import serve_registry

from ._message_bounds import corps_choreography_chain, corps_mediator_chain
from ._scenarios import Scenario
from ._stats import Sample
from ._strategy_cases import MEMORY_IN_FLIGHT, ORCHESTRATED, StrategyRun, run_strategy
from ._workflow_cases import raw_choreography_chain, raw_mediator_chain

__all__ = (
    "METRICS_TARGET",
    "TARGET",
    "Load",
    "MetricsCost",
    "PeerComparison",
    "StrategyComparison",
    "compare_peers",
    "compare_strategies",
    "print_metrics_cost",
    "print_peers",
    "print_strategies",
)

TARGET = 0.40
"""Each strategy's share of its floor's workflows/s to reach on MemoryBus."""

METRICS_TARGET = 0.10
"""The share of workflow throughput the metrics may cost at most."""
METRICS_MEASURED = ("mediator", "stamp_coupled")
"""The strategies also run with metrics off (first scenario, no failures), in turns with
metrics on, for the cost of the metrics."""


@dataclass(frozen=True, slots=True)
class Load:
    """How much each measurement runs: a number of workflows, or a duration in seconds; and
    how many workflows are kept in flight (clients in a closed loop)."""

    workflows: int | None = None
    duration: float | None = None
    clients: int = 100

    def describe(self) -> str:
        if self.workflows is not None:
            return f"{self.workflows:,} workflows"
        return f"{self.duration:g} s"


@dataclass(frozen=True, slots=True)
class StrategyComparison:
    scenario: str
    failure_rate: float
    strategy: str
    runs: tuple[StrategyRun, ...]
    floor_name: str
    floor: Sample
    bound: Sample
    """The floor's hops as corps messages with no strategy logic (`_message_bounds`), in the
    same repetitions: the most any strategy on corps could reach."""

    def figure(self, pick: Callable[[StrategyRun], float]) -> Sample:
        return Sample(tuple(pick(run) for run in self.runs))

    @property
    def throughput(self) -> Sample:
        return self.figure(lambda run: run.workflows_per_s)

    @property
    def ratio(self) -> Sample:
        return self.throughput.ratio_to(self.floor)

    @property
    def met(self) -> bool:
        return self.ratio.median >= TARGET

    @property
    def bound_ratio(self) -> Sample:
        """What corps' messages alone reach of the floor."""
        return self.bound.ratio_to(self.floor)

    @property
    def of_bound(self) -> Sample:
        """The strategy's share of what corps' messages alone reach: its logic's cost."""
        return self.throughput.ratio_to(self.bound)

    def as_json(self) -> dict[str, object]:
        last = self.runs[-1]
        return {
            "bus": "memory",
            "scenario": self.scenario,
            "failure_rate": self.failure_rate,
            "strategy": self.strategy,
            "workflows": [run.workflows for run in self.runs],
            "workflows_per_s": list(self.throughput.values),
            "floor_name": self.floor_name,
            "floor": list(self.floor.values),
            "ratio_median": self.ratio.median,
            "bound": list(self.bound.values),
            "bound_ratio_median": self.bound_ratio.median,
            "of_bound_median": self.of_bound.median,
            "target_ratio": TARGET,
            "met": self.met,
            "p50_s": self.figure(lambda r: r.p50).median,
            "p95_s": self.figure(lambda r: r.p95).median,
            "p99_s": self.figure(lambda r: r.p99).median,
            "messages_per_workflow": self.figure(lambda r: r.messages_per_workflow).median,
            "bytes_per_workflow": self.figure(lambda r: r.bytes_per_workflow).median,
            "compensations_per_workflow": self.figure(
                lambda r: r.compensations_per_workflow
            ).median,
            "largest_message": last.largest_message,
            "status_s": self.figure(lambda r: r.status_seconds).median,
            "status_messages": last.status_messages,
            "links": last.links,
            "unseen_while_running": list(last.unseen_while_running),
            "flowcharts": last.flowcharts,
            "event_sizes": last.event_sizes,
            "memory_per_workflow": next(
                (r.memory_per_workflow for r in self.runs if r.memory_per_workflow is not None),
                None,
            ),
        }


@dataclass(frozen=True, slots=True)
class MetricsCost:
    strategy: str
    on: Sample
    off: Sample

    @property
    def cost(self) -> float:
        """The share of throughput lost to the metrics (median of per-repetition ratios)."""
        return 1 - self.on.ratio_to(self.off).median

    @property
    def met(self) -> bool:
        return self.cost <= METRICS_TARGET

    def as_json(self) -> dict[str, object]:
        return {
            "strategy": self.strategy,
            "metrics_on": list(self.on.values),
            "metrics_off": list(self.off.values),
            "cost": self.cost,
            "target": METRICS_TARGET,
            "met": self.met,
        }


async def compare_strategies(
    scenarios: Sequence[Scenario],
    strategies: Sequence[str],
    failure_rates: Sequence[float],
    load: Load,
    repeat: int,
    step: Callable[[str], None],
    metrics_port: int | None = None,
) -> tuple[list[StrategyComparison], list[MetricsCost]]:
    """Each repetition measures, per scenario, both floors, then every strategy under every
    failure mix (and a few with metrics off); a strategy's ratio is taken against the floor
    of its kind from its own repetition. With `metrics_port`, the live metrics of the system
    under test are served on 127.0.0.1 while it runs."""
    registry = CollectorRegistry() if metrics_port is not None else None
    server = None
    if registry is not None:
        server = await serve_registry(registry, port=metrics_port or 0)
        print(f"live metrics on {server.url}", flush=True)
    runs: dict[tuple[str, float, str], list[StrategyRun]] = {}
    floors: dict[tuple[str, bool], list[float]] = {}
    bounds: dict[tuple[str, bool], list[float]] = {}
    chains = (
        (floors, True, raw_mediator_chain),
        (floors, False, raw_choreography_chain),
        (bounds, True, corps_mediator_chain),
        (bounds, False, corps_choreography_chain),
    )
    try:
        for repetition in range(repeat):
            for scenario in scenarios:
                steps = len(scenario.workflow.steps)
                for kept, orchestrated, chain in chains:
                    # The bounds are pure message passing, steady from the start: half the
                    # time is enough, and keeps the default run within its budget.
                    duration = load.duration
                    if duration is not None and kept is bounds:
                        duration /= 2
                    kept.setdefault((scenario.name, orchestrated), []).append(
                        await chain(load.workflows, steps, load.clients, duration=duration)
                    )
                step(f"{scenario.name}: raw floors, corps messages alone")
                for rate in failure_rates:
                    for name in strategies:
                        run = await run_strategy(
                            name,
                            scenario,
                            workflows=load.workflows,
                            duration=load.duration,
                            failure_rate=rate,
                            clients=load.clients,
                            registry=registry,
                            memory=repetition == 0 and not rate,
                        )
                        runs.setdefault((scenario.name, rate, name), []).append(run)
                        step(f"{scenario.name} {rate:.0%}: {name} ({repetition + 1}/{repeat})")
    finally:
        if server is not None:
            await server.close()
    comparisons = []
    for (scenario_name, rate, name), measured in runs.items():
        orchestrated = name in ORCHESTRATED
        comparisons.append(
            StrategyComparison(
                scenario_name,
                rate,
                name,
                tuple(measured),
                "raw asyncio mediator" if orchestrated else "raw asyncio choreography",
                Sample(tuple(floors[scenario_name, orchestrated])),
                Sample(tuple(bounds[scenario_name, orchestrated])),
            )
        )
    costs = []
    if scenarios:
        for name in (n for n in METRICS_MEASURED if n in strategies):
            costs.append(await _metrics_cost(name, scenarios[0], load, step))
    return comparisons, costs


METRICS_PAIRS = 4
"""Runs with metrics on and off, in turns, for the cost of the metrics: a single pair is at
the mercy of the machine's noise (seen: 18% one way on a pair, 3.5% over six)."""


async def _metrics_cost(
    name: str, scenario: Scenario, load: Load, step: Callable[[str], None]
) -> MetricsCost:
    on: list[float] = []
    off: list[float] = []
    for pair in range(METRICS_PAIRS):
        for metrics in (True, False) if pair % 2 == 0 else (False, True):
            run = await run_strategy(
                name,
                scenario,
                workflows=load.workflows,
                duration=load.duration,
                clients=load.clients,
                metrics=metrics,
                extras=False,
            )
            (on if metrics else off).append(run.workflows_per_s)
    step(f"metrics cost: {name}")
    return MetricsCost(name, Sample(tuple(on)), Sample(tuple(off)))


def print_metrics_cost(costs: list[MetricsCost]) -> None:
    for cost in costs:
        print(
            f"metrics cost ({cost.strategy}): {cost.on.median:,.0f} workflows/s with metrics, "
            f"{cost.off.median:,.0f} without: {cost.cost:.1%} of throughput; target "
            f"<= {METRICS_TARGET:.0%}: {'ok' if cost.met else 'MISSED'}"
        )


def _bound_line(rows: Sequence[StrategyComparison]) -> str:
    """What corps' messages alone reach, per kind of floor, and each strategy's share of it."""
    kinds: dict[str, StrategyComparison] = {}
    for c in rows:
        kinds.setdefault(c.floor_name, c)
    reach = "; ".join(
        f"{c.bound.median:,.0f} workflows/s on the {name}'s hops ({c.bound_ratio.median:.2f} of it)"
        for name, c in kinds.items()
    )
    shares = ", ".join(f"{c.strategy} {c.of_bound.median:.2f}" for c in rows)
    return f"corps messages alone, no strategy: {reach}. Each strategy's share of that: {shares}"


def print_strategies(comparisons: list[StrategyComparison], load: Load) -> None:
    tables: dict[tuple[str, float], list[StrategyComparison]] = {}
    for comparison in comparisons:
        tables.setdefault((comparison.scenario, comparison.failure_rate), []).append(comparison)
    for (scenario, rate), rows in tables.items():
        print(
            f"\nstrategies on MemoryBus: {scenario}, {rate:.0%} failing; {load.clients} clients "
            f"in a closed loop, {load.describe()} per run"
        )
        header = (
            f"{'strategy':<17} {'workflows/s [min-max]':>22} {'floor':>9} {'ratio':>6}"
            f" {'p50/p95/p99 ms':>16} {'msgs':>5} {'bytes':>6} {'max msg':>7} {'comp':>5}"
            f" {'mem/wf':>7}"
            f" {'status us':>9} {'st msgs':>7}  links"
        )
        print(header)
        print("-" * len(header))
        for c in rows:
            wfs = c.throughput
            last = c.runs[-1]
            latency = "/".join(
                f"{c.figure(pick).median * 1e3:.1f}"
                for pick in (lambda r: r.p50, lambda r: r.p95, lambda r: r.p99)
            )
            print(
                f"{c.strategy:<17} {f'{wfs.median:,.0f} [{wfs.low:,.0f}-{wfs.high:,.0f}]':>22}"
                f" {c.floor.median:>9,.0f} {c.ratio.median:>6.2f} {latency:>16}"
                f" {c.figure(lambda r: r.messages_per_workflow).median:>5.1f}"
                f" {c.figure(lambda r: r.bytes_per_workflow).median:>6,.0f}"
                f" {last.largest_message:>7,}"
                f" {c.figure(lambda r: r.compensations_per_workflow).median:>5.2f}"
                f" {_memory(c):>7}"
                f" {c.figure(lambda r: r.status_seconds).median * 1e6:>9.1f}"
                f" {last.status_messages:>7.1f}  {_links(last.links)}"
            )
        print(_bound_line(rows))
    if comparisons:
        missed = sum(not c.met for c in comparisons)
        reach = [c.bound_ratio.median for c in comparisons]
        print(
            f"\ntarget: each strategy >= {TARGET:.0%} of its floor's workflows/s; "
            f"met by {len(comparisons) - missed} of {len(comparisons)}; corps' messages alone, "
            f"with no strategy, reach {min(reach):.2f}-{max(reach):.2f} of the floors"
        )
        print(
            "floor: the same steps hand-written in raw asyncio, msgpack on every hop (the "
            "mediator against a mediator task, the choreographies against service queues "
            "feeding each other); msgs, bytes: on the bus per workflow; max msg: the largest "
            "message of one workflow; comp: compensations run per workflow; mem/wf: peak bytes "
            f"allocated per workflow with {MEMORY_IN_FLIGHT} in flight (no failures); status: one "
            "status() on an ended workflow and the messages it needs; links: distinct "
            "sender/receiver/message links of one workflow per case, and +err: the links the "
            "failure cases add to the happy path's"
        )


def _memory(comparison: StrategyComparison) -> str:
    measured = [r.memory_per_workflow for r in comparison.runs if r.memory_per_workflow]
    return f"{measured[0] / 1024:.1f}K" if measured else "-"


def _links(links: dict[str, int]) -> str:
    cases = [f"{case} {count}" for case, count in links.items() if case != "added_by_errors"]
    return ", ".join(cases) + f", +err {links.get('added_by_errors', 0)}"


@dataclass(frozen=True, slots=True)
class PeerComparison:
    """The corps Mediator against a peer library's mediator on one scenario."""

    scenario: str
    peer: str
    corps: Sample
    theirs: Sample

    @property
    def ratio(self) -> Sample:
        return self.corps.ratio_to(self.theirs)

    @property
    def ahead(self) -> bool:
        return self.ratio.median >= 1

    def as_json(self) -> dict[str, object]:
        return {
            "scenario": self.scenario,
            "peer": self.peer,
            "corps_mediator": list(self.corps.values),
            "peer_mediator": list(self.theirs.values),
            "ratio_median": self.ratio.median,
            "ahead": self.ahead,
        }


async def compare_peers(
    scenarios: Sequence[Scenario],
    comparisons: list[StrategyComparison],
    load: Load,
    step: Callable[[str], None],
) -> list[PeerComparison]:
    """Pykka's mediator on each scenario's steps, as many repetitions as the corps Mediator
    had (no failures), each in a thread of its own."""
    import asyncio

    from ._peers import pykka_available, pykka_mediator

    if not pykka_available():
        return []
    peers = []
    for scenario in scenarios:
        ours = next(
            (
                c
                for c in comparisons
                if c.scenario == scenario.name and c.strategy == "mediator" and not c.failure_rate
            ),
            None,
        )
        if ours is None:
            continue
        duration = load.duration or 0.5
        steps = len(scenario.workflow.steps)
        theirs = []
        for _ in ours.runs:
            theirs.append(await asyncio.to_thread(pykka_mediator, steps, duration))
        step(f"{scenario.name}: pykka")
        peers.append(PeerComparison(scenario.name, "pykka", ours.throughput, Sample(tuple(theirs))))
    return peers


def print_peers(peers: list[PeerComparison]) -> None:
    for peer in peers:
        print(
            f"peer ({peer.scenario}): the corps Mediator {peer.corps.median:,.0f} workflows/s, "
            f"a Pykka tell-based mediator {peer.theirs.median:,.0f}: {peer.ratio.median:.2f}; "
            f"target ahead: {'ok' if peer.ahead else 'MISSED'}"
        )
