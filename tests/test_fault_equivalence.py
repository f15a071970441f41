"""One definition, the same outcome under every fault, whatever coordinates it.

Services that raise once, raise always, hang past the step's timeout, answer late, or fail
while compensating; an operator's cancel while a step is under way. Every strategy (the
choreographies with sidecars and without) on both buses must give the same outcome, the same
`Failure.step`, the same compensation order and the same final state of every service.

And wherever things run (`layout`): all in one system; the services in a system of their own
(another process, as far as the strategy can tell: on NATS, another connection); or the
services in a host with the choreography's adapters beside them (`remote_sidecars`, the
events kept in JetStream on NATS), the starter keeping only the start and the end.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import msgspec
import pytest

from actors import Actor, ActorSystem, Message, Request, idempotent
from brokers import Bus, NatsBus
from coordination import (
    EventSourced,
    FrontController,
    Outcome,
    QueryAll,
    Rejected,
    RetryPolicy,
    StampCoupled,
    Step,
    Strategy,
    Workflow,
)

from .helpers import until
from .test_strategies import STRATEGIES, StrategyFactory

pytestmark = pytest.mark.anyio


class Order(msgspec.Struct, frozen=True):
    key: str


class Reserve(Request["Reserved"]):
    key: str


class Reserved(Message):
    key: str


class Release(Request["Released"]):
    key: str


class Released(Message):
    key: str


class Charge(Request["Charged"]):
    key: str


class Charged(Message):
    key: str


class Refund(Request["Refunded"]):
    key: str


class Refunded(Message):
    key: str


class Ship(Request["Shipped | Rejected"]):
    key: str


class Shipped(Message):
    key: str


@dataclass
class Effects:
    """What the services did: the world a strategy must leave the same."""

    reserved: dict[str, int] = field(default_factory=dict)
    charged: dict[str, int] = field(default_factory=dict)
    shipped: dict[str, int] = field(default_factory=dict)
    undone: list[str] = field(default_factory=list)
    """Compensations, in the order they took effect."""
    ship_calls: int = 0
    refund_calls: int = 0
    counted_by: Any = None
    """The strategy object whose metrics count what happened to the steps: the starter's,
    or, with the adapters beside the services, the host's."""

    def final(self) -> tuple[dict[str, int], dict[str, int], dict[str, int], list[str]]:
        return self.reserved, self.charged, self.shipped, self.undone


@dataclass
class Fault:
    """How the shipping and refund services misbehave."""

    ship: str = "ok"
    """ok, transient (raise once per order), always (raise), hang, late, reject, gate"""
    refund_fails: bool = False
    gate: anyio.Event = field(default_factory=anyio.Event)
    entered: anyio.Event = field(default_factory=anyio.Event)


class Stock(Actor):
    def __init__(self, effects: Effects) -> None:
        self.effects = effects

    @idempotent
    async def reserve(self, msg: Reserve) -> Reserved:
        self.effects.reserved[msg.key] = self.effects.reserved.get(msg.key, 0) + 1
        return Reserved(msg.key)

    @idempotent
    async def release(self, msg: Release) -> Released:
        self.effects.reserved[msg.key] -= 1
        self.effects.undone.append("release")
        return Released(msg.key)


class Bank(Actor):
    def __init__(self, effects: Effects, fault: Fault) -> None:
        self.effects = effects
        self.fault = fault

    @idempotent
    async def charge(self, msg: Charge) -> Charged:
        self.effects.charged[msg.key] = self.effects.charged.get(msg.key, 0) + 1
        return Charged(msg.key)

    @idempotent
    async def refund(self, msg: Refund) -> Refunded:
        self.effects.refund_calls += 1
        if self.fault.refund_fails:
            raise RuntimeError("the bank's refund API is down")
        self.effects.charged[msg.key] -= 1
        self.effects.undone.append("refund")
        return Refunded(msg.key)


class Shipper(Actor):
    def __init__(self, effects: Effects, fault: Fault) -> None:
        self.effects = effects
        self.fault = fault
        self.failed_once: set[str] = set()
        """State the service keeps: a restart would lose it (and raise again)."""

    @idempotent
    async def ship(self, msg: Ship) -> Shipped | Rejected:
        fault = self.fault
        self.effects.ship_calls += 1
        if fault.ship == "transient" and msg.key not in self.failed_once:
            self.failed_once.add(msg.key)
            raise RuntimeError("transient: the carrier timed out")
        if fault.ship == "always":
            raise RuntimeError("the carrier is down")
        if fault.ship == "reject":
            return Rejected("nothing left to ship")
        if fault.ship in ("hang", "gate"):
            fault.entered.set()
            await fault.gate.wait()
        if fault.ship == "late":
            await anyio.sleep(0.5)
        self.effects.shipped[msg.key] = self.effects.shipped.get(msg.key, 0) + 1
        return Shipped(msg.key)


def build_workflow(timeout: float, retry: RetryPolicy) -> Workflow[Order]:
    return Workflow(
        "fulfil",
        Order,
        [
            Step(
                "reserve",
                "stock",
                lambda ctx: Reserve(ctx.input.key),
                compensation=lambda ctx: Release(ctx.input.key),
            ),
            Step(
                "charge",
                "bank",
                lambda ctx: Charge(ctx.input.key),
                compensation=lambda ctx: Refund(ctx.input.key),
                retry=RetryPolicy(attempts=2, backoff=0.01),
                timeout=2.0,
            ),
            Step("ship", "shipper", lambda ctx: Ship(ctx.input.key), timeout=timeout, retry=retry),
        ],
        services={"stock": Stock, "bank": Bank, "shipper": Shipper},
    )


def _hosted(choreography: Callable[..., Strategy[Any]], **options: Any) -> StrategyFactory:
    return lambda system, workflow: choreography(  # type: ignore[no-any-return]
        system, workflow, remote_sidecars=True, durable_events=True, **options
    )


HOSTED: dict[str, StrategyFactory] = {
    "front_controller": _hosted(FrontController),
    "front_controller+callbacks": _hosted(FrontController, callbacks=True),
    "stamp_coupled": _hosted(StampCoupled),
    "query_all": _hosted(QueryAll),
    "event_sourced": _hosted(EventSourced),
}
"""The strategies whose adapters can run beside the services, in the services' host."""

LAYOUTS = ("one", "apart", "hosted")
_prefixes = itertools.count()


@contextlib.asynccontextmanager
async def second_bus(bus: Bus) -> AsyncIterator[Bus]:
    """A connection of its own to the same server (the same bus, in memory)."""
    if not isinstance(bus, NatsBus):
        yield bus
        return
    assert bus.connected_url is not None
    async with NatsBus(bus.connected_url) as other:
        yield other


@contextlib.asynccontextmanager
async def running(
    bus: Bus, strategy: str, fault: Fault, workflow: Workflow[Order], layout: str = "one"
) -> AsyncIterator[tuple[Strategy[Order], Effects]]:
    effects = Effects()
    factory = HOSTED[strategy] if layout == "hosted" else STRATEGIES[strategy]
    prefix = f"faults{next(_prefixes)}"  # JetStream keeps what a test left: not for the next
    async with contextlib.AsyncExitStack() as stack:
        system = await stack.enter_async_context(
            ActorSystem(bus, shutdown_timeout=1.0, prefix=prefix)
        )
        services: dict[str, Actor] = {
            "stock": Stock(effects),
            "bank": Bank(effects, fault),
            "shipper": Shipper(effects, fault),
        }
        for name, service in services.items():
            await system.spawn(lambda service=service: service, name=name)
        stack.callback(fault.gate.set)  # a hung handler lets go, so the system can stop
        if layout == "hosted":
            effects.counted_by = await stack.enter_async_context(factory(system, workflow))
        if layout != "one":
            starter_bus = await stack.enter_async_context(second_bus(bus))
            system = await stack.enter_async_context(
                ActorSystem(starter_bus, shutdown_timeout=1.0, prefix=prefix)
            )
            stack.callback(fault.gate.set)
        coordinator = await stack.enter_async_context(factory(system, workflow))  # type: ignore[arg-type]
        if effects.counted_by is None:
            effects.counted_by = coordinator
        yield coordinator, effects  # type: ignore[misc]


STRATEGY_NAMES = sorted(STRATEGIES)
PLACEMENTS = [
    (layout, strategy)
    for layout in LAYOUTS
    for strategy in STRATEGY_NAMES
    if layout != "hosted" or strategy in HOSTED
]
"""Every strategy in every layout it can run in (only a choreography with sidecars runs its
adapters in the services' host)."""

QUICK = RetryPolicy(attempts=2, backoff=0.01)


@pytest.mark.parametrize(("layout", "strategy"), PLACEMENTS)
async def test_a_transient_error_is_retried_and_the_service_keeps_its_state(
    bus: Bus, strategy: str, layout: str
) -> None:
    fault = Fault(ship="transient")
    async with running(bus, strategy, fault, build_workflow(2.0, QUICK), layout) as (
        coordinator,
        fx,
    ):
        ids = [await coordinator.start(Order(f"k{n}")) for n in range(6)]
        results = [await coordinator.result(i, timeout=10) for i in ids]
    assert [r.outcome for r in results] == [Outcome.COMPLETED] * 6
    keys = {f"k{n}": 1 for n in range(6)}
    assert fx.final() == (keys, keys, keys, [])
    assert fx.ship_calls == 12  # each raised once and was retried once: nothing restarted


@pytest.mark.parametrize(("layout", "strategy"), PLACEMENTS)
async def test_an_error_that_outlives_the_retries_compensates_newest_first(
    bus: Bus, strategy: str, layout: str
) -> None:
    fault = Fault(ship="always")
    async with running(bus, strategy, fault, build_workflow(2.0, QUICK), layout) as (
        coordinator,
        fx,
    ):
        result = await coordinator.result(await coordinator.start(Order("k")), timeout=10)
        status = await coordinator.status(result.workflow_id)
    assert result.outcome is Outcome.COMPENSATED
    assert result.failure is not None
    assert (result.failure.step, result.failure.technical) == ("ship", True)
    assert "the carrier is down" in result.failure.reason
    assert fx.final() == ({"k": 0}, {"k": 0}, {}, ["refund", "release"])
    assert fx.ship_calls == 2
    assert status.outcome is Outcome.COMPENSATED


@pytest.mark.parametrize(("layout", "strategy"), PLACEMENTS)
async def test_a_service_that_hangs_past_the_step_timeout_fails_the_step(
    bus: Bus, strategy: str, layout: str
) -> None:
    fault = Fault(ship="hang")
    workflow = build_workflow(0.2, RetryPolicy(attempts=1))
    async with running(bus, strategy, fault, workflow, layout) as (coordinator, fx):
        result = await coordinator.result(await coordinator.start(Order("k")), timeout=10)
        assert result.outcome is Outcome.COMPENSATED
        assert result.failure is not None
        assert result.failure.step == "ship"
        assert result.failure.technical
        assert "no reply within 0.2 s" in result.failure.reason
        assert fx.final() == ({"k": 0}, {"k": 0}, {}, ["refund", "release"])


@pytest.mark.parametrize(("layout", "strategy"), PLACEMENTS)
async def test_an_answer_after_the_timeout_is_discarded_and_counted(
    bus: Bus, strategy: str, layout: str
) -> None:
    fault = Fault(ship="late")
    workflow = build_workflow(0.1, RetryPolicy(attempts=2, backoff=0.01))
    async with running(bus, strategy, fault, workflow, layout) as (coordinator, fx):
        result = await coordinator.result(await coordinator.start(Order("k")), timeout=10)
        assert result.outcome is Outcome.COMPENSATED
        assert result.failure is not None
        assert (result.failure.step, result.failure.technical) == ("ship", True)
        metrics = fx.counted_by.metrics
        await until(lambda: metrics.late_answers >= 1)
        await until(lambda: fx.shipped == {"k": 1})  # the late effect happened, once
    assert fx.final() == ({"k": 0}, {"k": 0}, {"k": 1}, ["refund", "release"])


@pytest.mark.parametrize(("layout", "strategy"), PLACEMENTS)
async def test_a_compensation_that_keeps_failing_needs_attention_and_the_rest_is_undone(
    bus: Bus, strategy: str, layout: str
) -> None:
    fault = Fault(ship="reject", refund_fails=True)
    async with running(bus, strategy, fault, build_workflow(2.0, QUICK), layout) as (
        coordinator,
        fx,
    ):
        result = await coordinator.result(await coordinator.start(Order("k")), timeout=10)
    assert result.outcome is Outcome.NEEDS_ATTENTION
    assert result.failure is not None
    assert (result.failure.step, result.failure.reason) == ("ship", "nothing left to ship")
    assert len(result.attention) == 1
    assert result.attention[0].startswith("charge: ")
    assert "refund API is down" in result.attention[0]
    assert fx.final() == ({"k": 0}, {"k": 1}, {}, ["release"])
    assert fx.refund_calls == 2  # its retry policy: two attempts


@pytest.mark.parametrize(("layout", "strategy"), PLACEMENTS)
async def test_a_cancel_during_a_step_names_that_step_and_undoes_it_all(
    bus: Bus, strategy: str, layout: str
) -> None:
    fault = Fault(ship="gate")
    async with running(bus, strategy, fault, build_workflow(5.0, QUICK), layout) as (
        coordinator,
        fx,
    ):
        workflow_id = await coordinator.start(Order("k"))
        with anyio.fail_after(5):
            await fault.entered.wait()
        assert await coordinator.cancel(workflow_id, by="ops")
        fault.gate.set()
        result = await coordinator.result(workflow_id, timeout=10)
    assert result.outcome is Outcome.CANCELLED
    assert result.failure is not None
    assert (result.failure.step, result.failure.reason) == ("ship", "cancelled")
    assert fx.final() == ({"k": 0}, {"k": 0}, {"k": 1}, ["refund", "release"])
