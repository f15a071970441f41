"""One definition, the same outcome under every fault, whatever coordinates it.

Services that raise once, raise always, hang past the step's timeout, answer late, or fail
while compensating; an operator's cancel while a step is under way. Every strategy (the
choreographies with sidecars and without) on both buses must give the same outcome, the same
`Failure.step`, the same compensation order and the same final state of every service.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import anyio
import msgspec
import pytest

from actors import Actor, ActorSystem, Message, Request, idempotent
from brokers import Bus
from coordination import Outcome, Rejected, RetryPolicy, Step, Strategy, Workflow

from .helpers import until
from .test_strategies import STRATEGIES

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


@contextlib.asynccontextmanager
async def running(
    bus: Bus, strategy: str, fault: Fault, workflow: Workflow[Order]
) -> AsyncIterator[tuple[Strategy[Order], Effects]]:
    effects = Effects()
    async with ActorSystem(bus, shutdown_timeout=1.0) as system:
        services: dict[str, Actor] = {
            "stock": Stock(effects),
            "bank": Bank(effects, fault),
            "shipper": Shipper(effects, fault),
        }
        for name, service in services.items():
            await system.spawn(lambda service=service: service, name=name)
        try:
            async with STRATEGIES[strategy](system, workflow) as coordinator:  # type: ignore[arg-type]
                yield coordinator, effects  # type: ignore[misc]
        finally:
            fault.gate.set()  # a hung handler lets go, so the system can stop


STRATEGY_NAMES = sorted(STRATEGIES)

QUICK = RetryPolicy(attempts=2, backoff=0.01)


@pytest.mark.parametrize("strategy", STRATEGY_NAMES)
async def test_a_transient_error_is_retried_and_the_service_keeps_its_state(
    bus: Bus, strategy: str
) -> None:
    fault = Fault(ship="transient")
    async with running(bus, strategy, fault, build_workflow(2.0, QUICK)) as (coordinator, fx):
        ids = [await coordinator.start(Order(f"k{n}")) for n in range(6)]
        results = [await coordinator.result(i, timeout=10) for i in ids]
    assert [r.outcome for r in results] == [Outcome.COMPLETED] * 6
    keys = {f"k{n}": 1 for n in range(6)}
    assert fx.final() == (keys, keys, keys, [])
    assert fx.ship_calls == 12  # each raised once and was retried once: nothing restarted


@pytest.mark.parametrize("strategy", STRATEGY_NAMES)
async def test_an_error_that_outlives_the_retries_compensates_newest_first(
    bus: Bus, strategy: str
) -> None:
    fault = Fault(ship="always")
    async with running(bus, strategy, fault, build_workflow(2.0, QUICK)) as (coordinator, fx):
        result = await coordinator.result(await coordinator.start(Order("k")), timeout=10)
        status = await coordinator.status(result.workflow_id)
    assert result.outcome is Outcome.COMPENSATED
    assert result.failure is not None
    assert (result.failure.step, result.failure.technical) == ("ship", True)
    assert "the carrier is down" in result.failure.reason
    assert fx.final() == ({"k": 0}, {"k": 0}, {}, ["refund", "release"])
    assert fx.ship_calls == 2
    assert status.outcome is Outcome.COMPENSATED


@pytest.mark.parametrize("strategy", STRATEGY_NAMES)
async def test_a_service_that_hangs_past_the_step_timeout_fails_the_step(
    bus: Bus, strategy: str
) -> None:
    fault = Fault(ship="hang")
    workflow = build_workflow(0.2, RetryPolicy(attempts=1))
    async with running(bus, strategy, fault, workflow) as (coordinator, fx):
        result = await coordinator.result(await coordinator.start(Order("k")), timeout=10)
        assert result.outcome is Outcome.COMPENSATED
        assert result.failure is not None
        assert result.failure.step == "ship"
        assert result.failure.technical
        assert "no reply within 0.2 s" in result.failure.reason
        assert fx.final() == ({"k": 0}, {"k": 0}, {}, ["refund", "release"])


@pytest.mark.parametrize("strategy", STRATEGY_NAMES)
async def test_an_answer_after_the_timeout_is_discarded_and_counted(
    bus: Bus, strategy: str
) -> None:
    fault = Fault(ship="late")
    workflow = build_workflow(0.1, RetryPolicy(attempts=2, backoff=0.01))
    async with running(bus, strategy, fault, workflow) as (coordinator, fx):
        result = await coordinator.result(await coordinator.start(Order("k")), timeout=10)
        assert result.outcome is Outcome.COMPENSATED
        assert result.failure is not None
        assert (result.failure.step, result.failure.technical) == ("ship", True)
        metrics = coordinator.metrics  # type: ignore[attr-defined]
        await until(lambda: metrics.late_answers >= 1)
        await until(lambda: fx.shipped == {"k": 1})  # the late effect happened, once
    assert fx.final() == ({"k": 0}, {"k": 0}, {"k": 1}, ["refund", "release"])


@pytest.mark.parametrize("strategy", STRATEGY_NAMES)
async def test_a_compensation_that_keeps_failing_needs_attention_and_the_rest_is_undone(
    bus: Bus, strategy: str
) -> None:
    fault = Fault(ship="reject", refund_fails=True)
    async with running(bus, strategy, fault, build_workflow(2.0, QUICK)) as (coordinator, fx):
        result = await coordinator.result(await coordinator.start(Order("k")), timeout=10)
    assert result.outcome is Outcome.NEEDS_ATTENTION
    assert result.failure is not None
    assert (result.failure.step, result.failure.reason) == ("ship", "nothing left to ship")
    assert len(result.attention) == 1
    assert result.attention[0].startswith("charge: ")
    assert "refund API is down" in result.attention[0]
    assert fx.final() == ({"k": 0}, {"k": 1}, {}, ["release"])
    assert fx.refund_calls == 2  # its retry policy: two attempts


@pytest.mark.parametrize("strategy", STRATEGY_NAMES)
async def test_a_cancel_during_a_step_names_that_step_and_undoes_it_all(
    bus: Bus, strategy: str
) -> None:
    fault = Fault(ship="gate")
    async with running(bus, strategy, fault, build_workflow(5.0, QUICK)) as (coordinator, fx):
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
