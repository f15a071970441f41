"""Bad input and failures: each gives a clear error, and the actor keeps serving."""

from __future__ import annotations

import anyio
import msgspec
import pytest

from actors import (
    Actor,
    ActorStoppedError,
    ActorSystem,
    AskTimeoutError,
    DeadLetterReason,
    Directive,
    HandlerError,
    MailboxFullError,
    MessageDecodeError,
    Request,
    SupervisorPolicy,
)
from actors._supervision import RestartTracker
from brokers import Bus, MaxPayloadError, MemoryBus, NatsBus, NatsServer, Overflow

from .actors_fixtures import Add, Block, Counter, Fail, GetTotal
from .helpers import until

pytestmark = pytest.mark.anyio

NO_BACKOFF = SupervisorPolicy(
    Directive.RESTART, max_restarts=3, within=60, backoff_initial=0, backoff_max=0
)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xc1garbage", DeadLetterReason.UNDECODABLE),  # 0xc1 is never valid msgpack
        (msgspec.msgpack.encode({"type": "Add", "amount": "ten"}), DeadLetterReason.UNDECODABLE),
        (msgspec.msgpack.encode({"type": "Unknown"}), DeadLetterReason.UNDECODABLE),
        (msgspec.msgpack.encode([1, 2, 3]), DeadLetterReason.UNDECODABLE),
        (b"\x91" * 5000 + b"\xc0", DeadLetterReason.UNDECODABLE),  # 5,000-deep nesting
        (b"", DeadLetterReason.UNDECODABLE),
    ],
    ids=["malformed", "wrong-field-type", "unknown-type", "not-a-map", "deep-nesting", "empty"],
)
async def test_bad_bytes_are_dead_lettered_and_the_actor_keeps_serving(
    payload: bytes, reason: DeadLetterReason, bus: Bus
) -> None:
    async with ActorSystem(bus) as system:
        counter = await system.spawn(Counter, name="c")
        await bus.publish(counter.subject, payload)  # a tell: no one to answer
        reply = await bus.request(counter.subject, payload, timeout=2)  # an ask: told why
        assert reply.headers is not None
        assert reply.headers["Corps-Error"] == "decode"
        letters = list(system.dead_letters)
        assert [letter.reason for letter in letters] == [reason, reason]
        assert letters[0].actor == "c"
        assert letters[0].error is not None
        assert letters[0].error.startswith("MessageDecodeError")
        await counter.tell(Add(amount=2))
        assert await counter.ask(GetTotal()) == 2
        assert system.failures == type(system.failures)()  # no restart, no escalation


class DriftedAdd(Request[None], tag="Add"):
    """A client's outdated idea of `Add`: same tag, another field type."""

    amount: str


class DriftedCounter(Actor):
    async def add(self, msg: DriftedAdd) -> None: ...


async def test_schema_drift_reaches_the_asker_as_a_decode_error(bus: Bus) -> None:
    async with ActorSystem(bus) as system, ActorSystem(bus) as client:
        counter = await system.spawn(Counter, name="c")
        drifted = client.ref(DriftedCounter, "c")
        with pytest.raises(MessageDecodeError, match="Expected `int`, got `str`"):
            await drifted.ask(DriftedAdd(amount="ten"))
        assert await counter.ask(GetTotal()) == 0


async def test_oversized_message_is_refused_before_decoding(bus: Bus) -> None:
    async with ActorSystem(bus, max_message_size=1024) as system:
        counter = await system.spawn(Counter, name="c")
        big = msgspec.msgpack.encode({"type": "Add", "amount": 1, "pad": "x" * 8192})
        reply = await bus.request(counter.subject, big, timeout=2)
        assert reply.headers is not None
        assert reply.headers["Corps-Error"] == "decode"
        (letter,) = system.dead_letters
        assert letter.reason is DeadLetterReason.OVERSIZED
        assert letter.size == len(big)
        assert len(letter.data) == 4096  # the dead letter store stays bounded
        assert await counter.ask(GetTotal()) == 0


async def test_payload_over_the_bus_limit_fails_at_the_sender() -> None:
    small, large = Add(amount=1), Add(amount=2**62)
    assert len(msgspec.msgpack.encode(small)) <= 20 < len(msgspec.msgpack.encode(large))
    async with MemoryBus(max_payload=20) as bus, ActorSystem(bus) as system:
        counter = await system.spawn(Counter)
        await counter.tell(small)
        with pytest.raises(MaxPayloadError, match="exceeds the bus limit of 20"):
            await counter.tell(large)
        assert await counter.ask(GetTotal()) == 1


async def test_handler_error_reaches_the_asker_and_restarts_with_fresh_state(bus: Bus) -> None:
    async with ActorSystem(bus, supervision=NO_BACKOFF) as system:
        counter = await system.spawn(Counter, name="c")
        await counter.tell(Add(amount=5))
        with anyio.fail_after(1), pytest.raises(HandlerError) as raised:
            await counter.ask(Fail(reason="card declined"), timeout=30)
        assert raised.value.error_type == "ValueError"
        assert raised.value.error_message == "card declined"
        assert await counter.ask(GetTotal()) == 0  # a fresh instance
        (letter,) = system.dead_letters
        assert letter.reason is DeadLetterReason.HANDLER_ERROR
        assert letter.error == "ValueError: card declined"


async def test_a_failing_tell_is_dead_lettered_too(bus: Bus) -> None:
    async with ActorSystem(bus, supervision=NO_BACKOFF) as system:
        counter = await system.spawn(Counter)
        await counter.tell(Fail())
        await until(lambda: len(system.dead_letters) == 1)
        assert await counter.ask(GetTotal()) == 0


async def test_restart_intensity_boundary(bus: Bus) -> None:
    """Exactly max_restarts failures within the window restart; one more escalates."""
    async with ActorSystem(bus, supervision=NO_BACKOFF) as system:
        counter = await system.spawn(Counter, name="c")
        cell = system._groups["c"].cells[0]
        for attempt in range(1, 4):
            with pytest.raises(HandlerError):
                await counter.ask(Fail())
            await counter.tell(Add(amount=1))
            assert await counter.ask(GetTotal()) == 1  # serving, with fresh state
            assert cell.restarts == attempt
        assert not system.failures
        with pytest.raises(HandlerError):
            await counter.ask(Fail())
        assert counter.stopped
        (failure,) = system.failures
        assert failure.actor == "c"
        assert isinstance(failure.error, ValueError)
        with anyio.fail_after(0.5), pytest.raises(ActorStoppedError):
            await counter.ask(GetTotal(), timeout=30)


def test_restart_window_forgets_old_failures() -> None:
    tracker = RestartTracker(SupervisorPolicy(max_restarts=2, within=5.0))
    assert tracker.allow_restart(0.0)
    assert tracker.allow_restart(1.0)
    assert not tracker.allow_restart(2.0)  # third within 5 s
    tracker = RestartTracker(SupervisorPolicy(max_restarts=2, within=5.0))
    assert tracker.allow_restart(0.0)
    assert tracker.allow_restart(1.0)
    assert tracker.allow_restart(5.5)  # the failure at 0.0 left the window
    assert not tracker.allow_restart(5.9)


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    policy = SupervisorPolicy(max_restarts=10, backoff_initial=0.1, backoff_max=0.5, jitter=0.2)
    tracker = RestartTracker(policy)
    delays = []
    for now in range(5):
        tracker.allow_restart(float(now))
        delays.append(tracker.backoff())
    assert 0.08 <= delays[0] <= 0.12
    assert 0.16 <= delays[1] <= 0.24
    assert all(delay <= 0.6 for delay in delays)
    with pytest.raises(ValueError, match="jitter"):
        SupervisorPolicy(jitter=1.5)


async def test_escalation_refuses_the_rest_of_the_mailbox(bus: Bus) -> None:
    policy = SupervisorPolicy(Directive.RESTART, max_restarts=0, within=60)
    async with ActorSystem(bus, supervision=policy) as system:
        counter = await system.spawn(Counter, name="c")
        await counter.tell(Block())  # hold the actor while the mailbox fills
        await counter.tell(Fail())
        results: list[BaseException] = []

        async def ask_total() -> None:
            try:
                await counter.ask(GetTotal(), timeout=5)
            except Exception as exc:
                results.append(exc)

        sub = system._groups["c"].cells[0].subscription
        assert sub is not None
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(ask_total)
            await until(lambda: sub.pending == 4)  # type: ignore[attr-defined]
            gate(system).set()
        assert len(results) == 3
        assert all(isinstance(error, ActorStoppedError) for error in results)
        reasons = [letter.reason for letter in system.dead_letters]
        assert reasons.count(DeadLetterReason.ACTOR_STOPPED) == 3
        assert len(system.failures) == 1


def gate(system: ActorSystem, name: str = "c") -> anyio.Event:
    actor = system._groups[name].cells[0].actor
    assert isinstance(actor, Counter)
    return actor.gate


def blocked(system: ActorSystem, name: str = "c") -> anyio.Event:
    """Set once the actor is inside its Block handler."""
    actor = system._groups[name].cells[0].actor
    assert isinstance(actor, Counter)
    return actor.blocked


def mailbox(system: ActorSystem, name: str = "c") -> int:
    sub = system._groups[name].cells[0].subscription
    return sub.pending  # type: ignore[union-attr, attr-defined, no-any-return]


async def test_stuck_handler_times_out_its_asker_and_the_late_reply_is_discarded(bus: Bus) -> None:
    async with ActorSystem(bus) as system:
        counter = await system.spawn(Counter, name="c")
        with pytest.raises(AskTimeoutError) as raised:
            await counter.ask(Block(), timeout=0.05)
        assert isinstance(raised.value, TimeoutError)
        gate(system).set()  # the handler finally answers, to an ask that gave up
        await counter.tell(Add(amount=3))
        assert await counter.ask(GetTotal()) == 3  # not "opened": the stale reply is dropped
        assert bus.stats.late_replies == 1


async def test_handler_timeout_frees_an_actor_from_a_handler_that_never_returns(bus: Bus) -> None:
    async with ActorSystem(bus, supervision=NO_BACKOFF) as system:
        counter = await system.spawn(Counter, name="c", handler_timeout=0.1)
        with pytest.raises(AskTimeoutError):
            await counter.ask(Block(), timeout=0.02)
        await counter.tell(Add(amount=1))
        assert await counter.ask(GetTotal(), timeout=2) == 1  # restarted, serving again
        (letter,) = system.dead_letters
        assert letter.reason is DeadLetterReason.HANDLER_ERROR
        assert letter.error is not None
        assert "HandlerTimeoutError" in letter.error
        assert bus.stats.late_replies == 1  # the error reply came after the ask gave up


async def test_full_mailbox_blocks_the_sender_by_default() -> None:
    async with ActorSystem(mailbox_size=2) as system:
        counter = await system.spawn(Counter, name="c")
        await counter.tell(Block())
        told = 0

        async def tell_many() -> None:
            nonlocal told
            for _ in range(5):
                await counter.tell(Add(amount=1))
                told += 1

        async with anyio.create_task_group() as tg:
            tg.start_soon(tell_many)
            await until(lambda: told == 2)
            await anyio.sleep(0.02)
            assert told == 2  # waiting for room: backpressure, nothing lost
            gate(system).set()
        assert await counter.ask(GetTotal()) == 5


async def test_ask_into_a_full_blocking_mailbox_times_out_instead_of_hanging() -> None:
    async with ActorSystem(mailbox_size=1) as system:
        counter = await system.spawn(Counter, name="c")
        await counter.tell(Block())
        await blocked(system).wait()
        await counter.tell(Add(amount=1))  # the mailbox is full now
        with anyio.fail_after(1), pytest.raises(AskTimeoutError):
            await counter.ask(GetTotal(), timeout=0.05)
        gate(system).set()
        assert await counter.ask(GetTotal()) == 1


async def test_full_mailbox_with_reject_policy_fails_the_sender() -> None:
    async with ActorSystem(mailbox_size=1, overflow=Overflow.REJECT) as system:
        counter = await system.spawn(Counter, name="c")
        await counter.tell(Block())
        await blocked(system).wait()  # the actor holds Block
        await counter.tell(Add(amount=1))
        with pytest.raises(MailboxFullError):
            await counter.tell(Add(amount=1))
        with pytest.raises(MailboxFullError):
            await counter.ask(GetTotal())
        gate(system).set()
        await until(lambda: mailbox(system) == 0)
        assert await counter.ask(GetTotal()) == 1


async def test_full_mailbox_with_drop_policy_dead_letters_the_overflow(bus: Bus) -> None:
    async with ActorSystem(bus) as system:
        counter = await system.spawn(Counter, name="c", mailbox_size=2, overflow=Overflow.DROP)
        await counter.tell(Block())
        await blocked(system).wait()
        for _ in range(5):
            await counter.tell(Add(amount=1))
        with anyio.fail_after(1), pytest.raises(MailboxFullError):
            await counter.ask(GetTotal(), timeout=30)  # a dropped ask is answered at once
        reasons = [letter.reason for letter in system.dead_letters]
        assert reasons == [DeadLetterReason.MAILBOX_FULL] * 4
        gate(system).set()
        await until(lambda: mailbox(system) == 0)
        assert await counter.ask(GetTotal()) == 2


async def test_dead_letters_are_bounded_but_counted(bus: Bus) -> None:
    async with ActorSystem(bus, dead_letter_capacity=5) as system:
        counter = await system.spawn(Counter, name="c")
        for _ in range(20):
            await bus.publish(counter.subject, b"\xc1")
        await counter.ask(GetTotal())
        assert len(system.dead_letters) == 5
        assert system.dead_letters.total == 20
        assert system.dead_letters.counts[DeadLetterReason.UNDECODABLE] == 20


@pytest.mark.nats
async def test_full_mailbox_on_nats_drops_even_under_block_and_tells_the_asker(
    nats_server: NatsServer,
) -> None:
    """A genuine difference: NATS cannot make a remote sender wait, so a full mailbox drops
    (dead letter, MailboxFullError to an asker) even under the default Overflow.BLOCK."""
    async with NatsBus(nats_server.url) as bus, ActorSystem(bus, mailbox_size=2) as system:
        counter = await system.spawn(Counter, name="c")
        await counter.tell(Block())
        await blocked(system).wait()
        for _ in range(4):
            await counter.tell(Add(amount=1))
        with anyio.fail_after(2), pytest.raises(MailboxFullError):
            await counter.ask(GetTotal(), timeout=30)
        reasons = [letter.reason for letter in system.dead_letters]
        assert reasons == [DeadLetterReason.MAILBOX_FULL] * 3
        gate(system).set()
        await until(lambda: mailbox(system) == 0)
        assert await counter.ask(GetTotal()) == 2
