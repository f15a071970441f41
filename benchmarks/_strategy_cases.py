"""Order placement under each strategy, measured the same way: a closed loop of clients that
each start a workflow and wait for its end, then the cost of `status`, then (in a separate,
small run, so that recording costs nothing in the timed one) the links and the largest
message."""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from actors import ActorSystem, Link, SupervisorPolicy
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
from coordination.scenarios.order_placement import (
    EmailService,
    FulfillmentService,
    OrderService,
    PaymentService,
    PlaceOrder,
    order_workflow,
)

__all__ = ("ORCHESTRATED", "STRATEGIES", "StrategyRun", "run_strategy")

StrategyFactory = Callable[[ActorSystem, Workflow[PlaceOrder]], Strategy[PlaceOrder]]

STRATEGIES: dict[str, StrategyFactory] = {
    "mediator": Mediator,
    "front_controller": FrontController,
    "stamp_coupled": StampCoupled,
    "query_all": lambda system, workflow: QueryAll(system, workflow),
    "event_sourced": lambda system, workflow: EventSourced(system, workflow),
}
ORCHESTRATED = frozenset({"mediator"})
"""Compared with the raw mediator; the others with the raw choreography."""

DECLINED = "mallory"
STOCK = 10**9


@dataclass(frozen=True, slots=True)
class StrategyRun:
    """One measured run of one strategy."""

    strategy: str
    workflows: int
    workflows_per_s: float
    p50: float
    p99: float
    """Latency of one workflow, start to result, in seconds."""
    messages_per_workflow: float
    bytes_per_workflow: float
    status_seconds: float
    """Median latency of one status query."""
    status_messages: float
    """Messages one status query puts on the bus."""
    links: dict[str, int]
    """Distinct sender -> receiver -> message type links one workflow used, per case
    (completed, declined, backordered), and the links the error cases add to the happy
    path's (added_by_errors)."""
    largest_message: int
    """Bytes of the largest message of a workflow (the stamp at its last step, for stamp
    coupling)."""


def orders(count: int, failure_rate: float, seed: int = 1) -> list[PlaceOrder]:
    """`count` orders; a `failure_rate` share of them fail, half declined, half backordered."""
    rng = random.Random(seed)
    placed = []
    for number in range(count):
        customer, item = "ann", "book"
        if rng.random() < failure_rate:
            if rng.random() < 0.5:
                customer = DECLINED
            else:
                item = "rare"
        placed.append(PlaceOrder(f"o{number}", customer, item, 1, 1000))
    return placed


async def _spawn_services(system: ActorSystem) -> None:
    await system.spawn(OrderService, name="order")
    await system.spawn(lambda: PaymentService(declined=frozenset({DECLINED})), name="payment")
    await system.spawn(
        lambda: FulfillmentService(stock={"book": STOCK, "rare": 0}), name="fulfillment"
    )
    await system.spawn(EmailService, name="email")


async def run_strategy(
    name: str,
    workflows: int,
    clients: int = 100,
    failure_rate: float = 0.0,
    *,
    metrics: bool = True,
    registry: CollectorRegistry | None = None,
) -> StrategyRun:
    """Measure `workflows` order placements under strategy `name` on a MemoryBus; with
    `metrics=False` nothing is timed for the metrics; `registry` receives them (a live
    endpoint's)."""
    factory = STRATEGIES[name]
    placed = orders(workflows, failure_rate)
    per_client = workflows // clients
    latencies: list[float] = []
    bus = MemoryBus()
    policy = SupervisorPolicy(max_restarts=1000, backoff_initial=0)
    system = ActorSystem(bus, supervision=policy, metrics=metrics, registry=registry)
    async with bus, system:
        await _spawn_services(system)
        async with factory(system, order_workflow) as strategy:

            async def client(first: int) -> None:
                clock = time.perf_counter
                for placing in placed[first : first + per_client]:
                    began = clock()
                    await strategy.result(await strategy.start(placing))
                    latencies.append(clock() - began)

            published, sent_bytes = bus.stats.published, bus.stats.published_bytes
            started = time.perf_counter()
            await asyncio.gather(*(client(n * per_client) for n in range(clients)))
            elapsed = time.perf_counter() - started
            done = per_client * clients
            messages = (bus.stats.published - published) / done
            size = (bus.stats.published_bytes - sent_bytes) / done
            status_seconds, status_messages = await _status_cost(strategy, bus)
    links, largest = await _links_and_largest(name)
    latencies.sort()
    return StrategyRun(
        name,
        done,
        done / elapsed,
        latencies[len(latencies) // 2],
        latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        messages,
        size,
        status_seconds,
        status_messages,
        links,
        largest,
    )


async def _status_cost(strategy: Strategy[PlaceOrder], bus: Bus) -> tuple[float, float]:
    """The median time of a status query, and the messages each one needs, over ended
    instances on an otherwise quiet bus."""
    ids = [await strategy.start(placing) for placing in orders(200, 0.0, seed=2)]
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


LINK_CASES = {
    "completed": PlaceOrder("l1", "ann", "book", 1, 1000),
    "declined": PlaceOrder("l2", DECLINED, "book", 1, 1000),
    "backordered": PlaceOrder("l3", "ann", "rare", 1, 1000),
}
"""The chapter's happy path and error cases, whose links are counted one by one."""


async def _links_and_largest(name: str) -> tuple[dict[str, int], int]:
    """Distinct links of one completed, one declined and one backordered order, and the
    largest message any of them put on the bus."""
    bus = MemoryBus()
    largest = 0

    async def measure(msg: Msg) -> None:
        nonlocal largest
        largest = max(largest, len(msg.data))

    used: dict[str, set[Link]] = {}
    async with bus, ActorSystem(bus, record_links=True) as system:
        await bus.subscribe(">", measure)
        await _spawn_services(system)
        recorder = system.links
        assert recorder is not None
        async with STRATEGIES[name](system, order_workflow) as strategy:
            for case, placing in LINK_CASES.items():
                recorder.clear()
                await strategy.result(await strategy.start(placing))
                await bus.flush()
                await asyncio.sleep(0.01)  # the notices told after the end
                used[case] = recorder.links
    links = {case: len(found) for case, found in used.items()}
    # figure 11-10: the links the error cases need beyond the happy path's
    errors = used["declined"] | used["backordered"]
    links["added_by_errors"] = len(errors - used["completed"])
    return links, largest
