"""The strategy comparison: every strategy beside the raw-asyncio floor of its kind, measured
in the same repetition, and the table that shows them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from coordination.scenarios.order_placement import order_workflow

from ._stats import Sample
from ._strategy_cases import ORCHESTRATED, StrategyRun, run_strategy
from ._workflow_cases import raw_choreography_chain, raw_mediator_chain

__all__ = ("TARGET", "StrategyComparison", "compare_strategies", "print_strategies")

TARGET = 0.40
"""Each strategy's share of its floor's workflows/s to reach on MemoryBus."""

STEPS = len(order_workflow.steps)


@dataclass(frozen=True, slots=True)
class StrategyComparison:
    strategy: str
    runs: tuple[StrategyRun, ...]
    floor_name: str
    floor: Sample

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

    def as_json(self) -> dict[str, object]:
        last = self.runs[-1]
        return {
            "bus": "memory",
            "scenario": "order-placement",
            "strategy": self.strategy,
            "workflows": last.workflows,
            "workflows_per_s": list(self.throughput.values),
            "floor_name": self.floor_name,
            "floor": list(self.floor.values),
            "ratio_median": self.ratio.median,
            "target_ratio": TARGET,
            "met": self.met,
            "p50_s": self.figure(lambda r: r.p50).median,
            "p99_s": self.figure(lambda r: r.p99).median,
            "messages_per_workflow": last.messages_per_workflow,
            "bytes_per_workflow": self.figure(lambda r: r.bytes_per_workflow).median,
            "largest_message": last.largest_message,
            "status_s": self.figure(lambda r: r.status_seconds).median,
            "status_messages": last.status_messages,
            "links": last.links,
        }


async def compare_strategies(
    strategies: Sequence[str],
    workflows: int,
    repeat: int,
    failure_rate: float,
    step: Callable[[str], None],
) -> list[StrategyComparison]:
    """Each repetition measures both floors, then every strategy; a strategy's ratio is taken
    against the floor of its kind from its own repetition."""
    runs: dict[str, list[StrategyRun]] = {name: [] for name in strategies}
    mediator_floor: list[float] = []
    choreography_floor: list[float] = []
    for _ in range(repeat):
        mediator_floor.append(await raw_mediator_chain(workflows, STEPS))
        choreography_floor.append(await raw_choreography_chain(workflows, STEPS))
        step("strategies: raw floors")
        for name in strategies:
            runs[name].append(await run_strategy(name, workflows, failure_rate=failure_rate))
            step(f"strategies: {name}")
    comparisons = []
    for name in strategies:
        orchestrated = name in ORCHESTRATED
        comparisons.append(
            StrategyComparison(
                name,
                tuple(runs[name]),
                "raw asyncio mediator" if orchestrated else "raw asyncio choreography",
                Sample(tuple(mediator_floor if orchestrated else choreography_floor)),
            )
        )
    return comparisons


def print_strategies(comparisons: list[StrategyComparison], failure_rate: float) -> None:
    if not comparisons:
        return
    first = comparisons[0]
    print(
        f"\nstrategies on MemoryBus: order placement ({STEPS} steps), 100 clients in a closed "
        f"loop, {first.runs[0].workflows:,} workflows, {failure_rate:.0%} failing"
    )
    header = (
        f"{'strategy':<17} {'workflows/s [min-max]':>24} {'floor':>9} {'ratio':>6} {'target':>12}"
        f" {'p50 ms':>7} {'p99 ms':>7} {'msgs':>5} {'bytes':>6} {'max msg':>7}"
        f" {'status us':>9} {'st msgs':>7} {'links ok/decl/backo/+err':>24}"
    )
    print(header)
    print("-" * len(header))
    for c in comparisons:
        wfs = c.throughput
        last = c.runs[-1]
        verdict = f">= {TARGET:.2f} {'ok' if c.met else 'MISSED'}"
        print(
            f"{c.strategy:<17} {f'{wfs.median:,.0f} [{wfs.low:,.0f}-{wfs.high:,.0f}]':>24}"
            f" {c.floor.median:>9,.0f} {c.ratio.median:>6.2f} {verdict:>12}"
            f" {c.figure(lambda r: r.p50).median * 1e3:>7.1f}"
            f" {c.figure(lambda r: r.p99).median * 1e3:>7.1f}"
            f" {last.messages_per_workflow:>5.1f}"
            f" {c.figure(lambda r: r.bytes_per_workflow).median:>6,.0f}"
            f" {last.largest_message:>7,}"
            f" {c.figure(lambda r: r.status_seconds).median * 1e6:>9.1f}"
            f" {last.status_messages:>7.1f} {'/'.join(map(str, last.links.values())):>24}"
        )
    print(
        "floor: the same steps hand-written in raw asyncio, msgpack on every hop (the mediator "
        "against a mediator task, the choreographies against service queues feeding each "
        "other); msgs and bytes: on the bus per workflow; max msg: the largest message of one "
        "workflow; status: one status() query on an ended workflow and the messages it needs; "
        "links: distinct sender/receiver/message links of a completed, a declined and a "
        "backordered order, and how many links the two error cases add to the happy path's"
    )
