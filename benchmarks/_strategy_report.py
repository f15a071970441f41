"""The strategy comparison: every strategy beside the raw-asyncio floor of its kind, measured
in the same repetition, and the table that shows them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from actors import serve_registry
from coordination.scenarios.order_placement import order_workflow

from ._stats import Sample
from ._strategy_cases import ORCHESTRATED, StrategyRun, run_strategy
from ._workflow_cases import raw_choreography_chain, raw_mediator_chain

__all__ = (
    "METRICS_TARGET",
    "TARGET",
    "MetricsCost",
    "StrategyComparison",
    "compare_strategies",
    "print_metrics_cost",
    "print_strategies",
)

TARGET = 0.40
"""Each strategy's share of its floor's workflows/s to reach on MemoryBus."""

STEPS = len(order_workflow.steps)

METRICS_TARGET = 0.10
"""The share of workflow throughput the metrics may cost at most."""
METRICS_MEASURED = ("mediator", "stamp_coupled")
"""The strategies also run with metrics off, for the cost of the metrics."""


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
    metrics_port: int | None = None,
) -> tuple[list[StrategyComparison], list[MetricsCost]]:
    """Each repetition measures both floors, then every strategy (and a few with metrics
    off); a strategy's ratio is taken against the floor of its kind from its own repetition.
    With `metrics_port`, the live metrics of the system under test are served on
    127.0.0.1 while it runs."""
    registry = CollectorRegistry() if metrics_port is not None else None
    server = None
    if registry is not None:
        server = await serve_registry(registry, port=metrics_port or 0)
        print(f"live metrics on {server.url}", flush=True)
    runs: dict[str, list[StrategyRun]] = {name: [] for name in strategies}
    unmetered: dict[str, list[float]] = {name: [] for name in METRICS_MEASURED}
    mediator_floor: list[float] = []
    choreography_floor: list[float] = []
    try:
        for repetition in range(repeat):
            mediator_floor.append(await raw_mediator_chain(workflows, STEPS))
            choreography_floor.append(await raw_choreography_chain(workflows, STEPS))
            step("strategies: raw floors")
            for name in strategies:
                # metrics off before or after on, in turns, so that drift hits both alike
                off_first = name in unmetered and repetition % 2 == 1
                if off_first:
                    await _unmetered(name, workflows, failure_rate, unmetered)
                run = await run_strategy(
                    name, workflows, failure_rate=failure_rate, registry=registry
                )
                runs[name].append(run)
                if name in unmetered and not off_first:
                    await _unmetered(name, workflows, failure_rate, unmetered)
                step(f"strategies: {name}")
    finally:
        if server is not None:
            await server.close()
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
    costs = [
        MetricsCost(
            name,
            Sample(tuple(run.workflows_per_s for run in runs[name])),
            Sample(tuple(off)),
        )
        for name, off in unmetered.items()
        if off
    ]
    return comparisons, costs


async def _unmetered(
    name: str, workflows: int, failure_rate: float, into: dict[str, list[float]]
) -> None:
    off = await run_strategy(name, workflows, failure_rate=failure_rate, metrics=False)
    into[name].append(off.workflows_per_s)


def print_metrics_cost(costs: list[MetricsCost]) -> None:
    for cost in costs:
        print(
            f"metrics cost ({cost.strategy}): {cost.on.median:,.0f} workflows/s with metrics, "
            f"{cost.off.median:,.0f} without: {cost.cost:.1%} of throughput; target "
            f"<= {METRICS_TARGET:.0%}: {'ok' if cost.met else 'MISSED'}"
        )


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
