"""A scenario under each strategy, measured the same way: a closed loop of clients that each
start a workflow and wait for its end, for a number of workflows or for a duration; then the
cost of `status`; then (in a separate, small run, so that recording costs nothing in the timed
one) the links of each case and the largest message."""

from __future__ import annotations

import asyncio
import gc
import itertools
import random
import statistics
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from prometheus_client import CollectorRegistry

from actors import ActorSystem, Link
from brokers import Bus, MemoryBus, Msg
from coordination import (
    EventSourced,
    FrontController,
    Mediator,
    QueryAll,
    StampCoupled,
    Strategy,
    Workflow,
)
from coordination.choreography._events import Advance

from ._budget import Budget
from ._scenarios import Scenario

__all__ = ("MEMORY_IN_FLIGHT", "ORCHESTRATED", "STRATEGIES", "StrategyRun", "run_strategy")

StrategyFactory = Callable[[ActorSystem, Workflow[Any]], Strategy[Any]]

STRATEGIES: dict[str, StrategyFactory] = {
    "mediator": Mediator,
    "front_controller": FrontController,
    "stamp_coupled": StampCoupled,
    "query_all": lambda system, workflow: QueryAll(system, workflow),
    "event_sourced": lambda system, workflow: EventSourced(system, workflow),
}
ORCHESTRATED = frozenset({"mediator"})
"""Compared with the raw mediator; the others with the raw choreography."""

_advance = msgspec.msgpack.Decoder(Advance)

STATUS_SAMPLE = 200
"""Workflows whose status is read to time a status query."""


@dataclass(frozen=True, slots=True)
class StrategyRun:
    """One measured run of one strategy."""

    strategy: str
    workflows: int
    workflows_per_s: float
    p50: float
    p95: float
    p99: float
    """Latency of one workflow, start to result, in seconds."""
    messages_per_workflow: float
    bytes_per_workflow: float
    compensations_per_workflow: float
    status_seconds: float
    """Median latency of one status query."""
    status_messages: float
    """Messages one status query puts on the bus."""
    links: dict[str, int]
    """Distinct sender -> receiver -> message type links one workflow used, per case (the
    happy path and each kind of failure), and the links the failures add to the happy path's
    (added_by_errors)."""
    largest_message: int
    """Bytes of the largest message of a workflow (the stamp at its last step, for stamp
    coupling)."""
    unseen_while_running: tuple[str, ...]
    """The status fields the strategy could not see while a workflow ran."""
    flowcharts: dict[str, str]
    """A Mermaid flowchart of the links of each case."""
    event_sizes: list[int]
    """Bytes of the event that starts each step of a completed workflow (choreographies: the
    stamp grows step by step under stamp coupling); empty under the Mediator."""
    memory_per_workflow: float | None = None
    """Peak bytes allocated per workflow with `MEMORY_IN_FLIGHT` of them in flight at once
    (measured when asked: tracing allocations is slow)."""


def _inputs(scenario: Scenario, failure_rate: float, seed: int = 1) -> Callable[[], Any]:
    """An endless supply of distinct inputs, `failure_rate` of them failing."""
    numbers = itertools.count()
    rng = random.Random(seed)

    def next_input() -> Any:
        failing = rng.choice(scenario.failures) if rng.random() < failure_rate else None
        return scenario.make(next(numbers), failing)

    return next_input


async def run_strategy(
    name: str,
    scenario: Scenario,
    *,
    workflows: int | None = None,
    duration: float | None = None,
    clients: int = 100,
    failure_rate: float = 0.0,
    metrics: bool = True,
    registry: CollectorRegistry | None = None,
    extras: bool = True,
    bus: Callable[[], Bus] = MemoryBus,
    memory: bool = False,
) -> StrategyRun:
    """Measure `scenario` under strategy `name` on a bus made by `bus` (a MemoryBus):
    `workflows` of them, or as many as `duration` seconds allow. With `metrics=False` nothing
    is timed for the metrics; `registry` receives them (a live endpoint's). Without `extras`,
    the links, the largest message and what status cannot see are not measured."""
    factory = STRATEGIES[name]
    next_input = _inputs(scenario, failure_rate)
    latencies: list[float] = []
    made = bus()
    system = ActorSystem(made, metrics=metrics, registry=registry)
    async with made, system:
        await scenario.spawn(system)
        async with factory(system, scenario.workflow) as strategy:
            gc.collect()  # the garbage of earlier runs is not this run's to collect
            began_at = time.perf_counter()
            budget = Budget(workflows, duration)

            async def client() -> None:
                clock = time.perf_counter
                while budget.take():
                    began = clock()
                    await strategy.result(await strategy.start(next_input()))
                    latencies.append(clock() - began)

            stats = made.stats
            published, sent_bytes = stats.published, stats.published_bytes
            compensated = _compensations(strategy)
            await asyncio.gather(*(client() for _ in range(clients)))
            elapsed = time.perf_counter() - began_at
            done = len(latencies)
            messages = (stats.published - published) / done
            size = (stats.published_bytes - sent_bytes) / done
            compensations = (_compensations(strategy) - compensated) / done
            status_seconds, status_messages = await _status_cost(strategy, scenario, made)
            unseen = await _unseen_while_running(strategy, scenario) if extras else ()
            memory_per_workflow = await _peak_memory(strategy, scenario) if memory else None
    links: dict[str, int] = {}
    largest = 0
    flowcharts: dict[str, str] = {}
    event_sizes: list[int] = []
    if extras:
        links, largest, flowcharts, event_sizes = await _links_and_largest(name, scenario)
    latencies.sort()
    return StrategyRun(
        name,
        done,
        done / elapsed,
        _percentile(latencies, 0.50),
        _percentile(latencies, 0.95),
        _percentile(latencies, 0.99),
        messages,
        size,
        compensations,
        status_seconds,
        status_messages,
        links,
        largest,
        unseen,
        flowcharts,
        event_sizes,
        memory_per_workflow,
    )


def _percentile(ordered: list[float], share: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def _compensations(strategy: Strategy[Any]) -> int:
    metrics = getattr(strategy, "metrics", None)
    return int(getattr(metrics, "compensations", 0))


async def _status_cost(
    strategy: Strategy[Any], scenario: Scenario, bus: Bus
) -> tuple[float, float]:
    """The median time of a status query, and the messages each one needs, over ended
    instances on an otherwise quiet bus."""
    next_input = _inputs(scenario, 0.0, seed=2)
    ids = [await strategy.start(next_input()) for _ in range(STATUS_SAMPLE)]
    for workflow_id in ids:
        await strategy.result(workflow_id)
    published = bus.stats.published
    durations = []
    for workflow_id in ids:
        began = time.perf_counter()
        await strategy.status(workflow_id)
        durations.append(time.perf_counter() - began)
    messages = (bus.stats.published - published) / len(ids)
    return statistics.median(durations), messages


MEMORY_IN_FLIGHT = 500
"""Enough for a per-workflow figure that a fixed cost does not blur; tracing allocations makes
this the slowest part of the strategy comparison (QueryAll's ticket took 5.6 s at 1000)."""


async def _peak_memory(strategy: Strategy[Any], scenario: Scenario) -> float:
    """Peak traced bytes per workflow while `MEMORY_IN_FLIGHT` run at once, over what was
    allocated before they started."""
    next_input = _inputs(scenario, 0.0, seed=4)
    inputs = [next_input() for _ in range(MEMORY_IN_FLIGHT)]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        ids = await asyncio.gather(*(strategy.start(i) for i in inputs))
        await asyncio.gather(*(strategy.result(i) for i in ids))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return (peak - before) / MEMORY_IN_FLIGHT


async def _unseen_while_running(strategy: Strategy[Any], scenario: Scenario) -> tuple[str, ...]:
    """What `status` says it cannot see about a workflow asked at once after its start."""
    workflow_id = await strategy.start(_inputs(scenario, 0.0, seed=3)())
    status = await strategy.status(workflow_id)
    await strategy.result(workflow_id)
    return tuple(sorted(status.unknown))


async def _links_and_largest(
    name: str, scenario: Scenario
) -> tuple[dict[str, int], int, dict[str, str], list[int]]:
    """Distinct links of one workflow of each case (the happy path, each kind of failure),
    and the largest message any of them put on the bus."""
    bus = MemoryBus()
    largest = 0
    steps: dict[int, int] = {}
    counting = [False]

    async def measure(msg: Msg) -> None:
        nonlocal largest
        largest = max(largest, len(msg.data))
        if counting[0]:
            try:
                event = _advance.decode(msg.data)
            except msgspec.DecodeError:
                return
            steps.setdefault(event.step, len(msg.data))  # the first, not a sidecar's resend

    used: dict[str, set[Link]] = {}
    flowcharts: dict[str, str] = {}
    async with bus, ActorSystem(bus, record_links=True) as system:
        await bus.subscribe(">", measure)
        await scenario.spawn(system)
        recorder = system.links
        assert recorder is not None
        async with STRATEGIES[name](system, scenario.workflow) as strategy:
            for case, workflow_input in scenario.link_cases().items():
                counting[0] = case == "completed"
                recorder.clear()
                await strategy.result(await strategy.start(workflow_input))
                await bus.flush()
                await asyncio.sleep(0.01)  # the notices told after the end
                used[case] = recorder.links
                flowcharts[case] = recorder.flowchart()
    links = {case: len(found) for case, found in used.items()}
    # figure 11-10: the links the error cases need beyond the happy path's
    errors: set[Link] = set().union(*(used[kind] for kind in scenario.failures))
    links["added_by_errors"] = len(errors - used["completed"])
    return links, largest, flowcharts, [steps[step] for step in sorted(steps)]
