"""Supervision directives: a failed handler fails its message; the directive decides what
becomes of the actor, the same for a message its mailbox delivered and one a sidecar
dispatched in place."""

from __future__ import annotations

import contextlib

import pytest

from actors import (
    Actor,
    ActorStoppedError,
    ActorSystem,
    DeadLetterReason,
    Directive,
    HandlerError,
    Message,
    SupervisorPolicy,
)
from actors._dispatch import dispatch
from brokers import Bus

from .actors_fixtures import Add, Block, Counter, Fail, GetTotal

pytestmark = pytest.mark.anyio


async def test_by_default_a_failed_handler_keeps_the_actor_and_its_state(bus: Bus) -> None:
    async with ActorSystem(bus) as system:
        counter = await system.spawn(Counter, name="c")
        await counter.tell(Add(amount=5))
        for _ in range(20):  # far beyond any restart intensity: a service keeps serving
            with pytest.raises(HandlerError, match="boom"):
                await counter.ask(Fail())
        assert await counter.ask(GetTotal()) == 5
        assert not system.failures
        assert system.dead_letters.total == 20


async def test_restart_gives_a_fresh_instance_within_the_intensity(bus: Bus) -> None:
    policy = SupervisorPolicy(Directive.RESTART, max_restarts=2, within=60, backoff_initial=0)
    async with ActorSystem(bus, supervision=policy) as system:
        counter = await system.spawn(Counter, name="c")
        await counter.tell(Add(amount=5))
        with pytest.raises(HandlerError):
            await counter.ask(Fail())
        assert await counter.ask(GetTotal()) == 0  # fresh state
        with pytest.raises(HandlerError):
            await counter.ask(Fail())
        with pytest.raises(HandlerError):
            await counter.ask(Fail())  # the third within the window: stopped
        with pytest.raises(ActorStoppedError):
            await counter.ask(GetTotal())
        assert [failure.actor for failure in system.failures] == ["c"]


async def test_stop_stops_at_the_first_failure(bus: Bus) -> None:
    async with ActorSystem(bus) as system:
        counter = await system.spawn(
            Counter, name="c", supervision=SupervisorPolicy(Directive.STOP)
        )
        with pytest.raises(HandlerError):
            await counter.ask(Fail())
        with pytest.raises(ActorStoppedError):
            await counter.ask(GetTotal())
        (failure,) = system.failures
        assert isinstance(failure.error, ValueError)


async def test_a_decider_chooses_per_exception(bus: Bus) -> None:
    def decide(error: Exception) -> Directive:
        return Directive.RESTART if str(error) == "corrupted" else Directive.RESUME

    policy = SupervisorPolicy(decide, backoff_initial=0)
    async with ActorSystem(bus, supervision=policy) as system:
        counter = await system.spawn(Counter, name="c")
        await counter.tell(Add(amount=3))
        with pytest.raises(HandlerError):
            await counter.ask(Fail(reason="downstream timeout"))
        assert await counter.ask(GetTotal()) == 3
        with pytest.raises(HandlerError):
            await counter.ask(Fail(reason="corrupted"))
        assert await counter.ask(GetTotal()) == 0


def test_a_policy_refuses_what_is_not_a_directive() -> None:
    with pytest.raises(TypeError, match="Directive"):
        SupervisorPolicy("restart")  # type: ignore[arg-type]
    policy = SupervisorPolicy(lambda error: "resume")  # type: ignore[arg-type, return-value]
    with pytest.raises(TypeError, match="not a Directive"):
        policy.decide(ValueError())


class FailInPlace(Message):
    """A sidecar's message: dispatches `Fail` to the service in place."""


async def failing_sidecar(service: Actor, message: FailInPlace) -> None:
    # The sidecar handles the failure; the directive has been applied already.
    with contextlib.suppress(ValueError):
        await dispatch(service, Fail(), message_id="m", correlation_id="c")


@pytest.mark.parametrize(
    ("directive", "total_after", "stopped"),
    [(Directive.RESUME, 4, False), (Directive.RESTART, 0, False), (Directive.STOP, None, True)],
)
async def test_a_sidecar_dispatch_obeys_the_same_directive(
    bus: Bus, directive: Directive, total_after: int | None, stopped: bool
) -> None:
    policy = SupervisorPolicy(directive, backoff_initial=0)
    async with ActorSystem(bus, supervision=policy) as system:
        await system.spawn(Counter, name="c")
        counter = system.add_handlers("c", {FailInPlace: failing_sidecar})
        await counter.tell(Add(amount=4))
        await counter.tell(FailInPlace())
        if stopped:
            with pytest.raises(ActorStoppedError):
                await counter.ask(GetTotal())
            assert len(system.failures) == 1
        else:
            assert await counter.ask(GetTotal()) == total_after
            assert not system.failures
        reasons = [letter.reason for letter in system.dead_letters]
        assert reasons.count(DeadLetterReason.HANDLER_ERROR) == 1


async def test_idle_waits_until_every_mailbox_is_handled(bus: Bus) -> None:
    async with ActorSystem(bus) as system:
        counter = await system.spawn(Counter, name="c")
        await counter.tell(Block())
        for _ in range(3):
            await counter.tell(Add(amount=1))
        with pytest.raises(TimeoutError, match="still busy"):
            await system.idle(timeout=0.05)
        actor = system._groups["c"].cells[0].actor
        assert isinstance(actor, Counter)
        actor.gate.set()
        await system.idle()
        assert actor.total == 3  # handled, without asking
