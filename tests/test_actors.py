"""The actor runtime: handlers, tell and ask, queue groups, id propagation, shutdown."""

from __future__ import annotations

import asyncio

import anyio
import anyio.lowlevel
import msgspec
import pytest

from actors import (
    CORRELATION_ID,
    MESSAGE_ID,
    Actor,
    ActorNotFoundError,
    ActorStoppedError,
    ActorSystem,
    DeadLetterReason,
    DuplicateActorError,
    HandlerError,
    InvalidActorError,
    Link,
    Request,
    SupervisorPolicy,
    UnhandledMessageError,
    acting_as,
    handler,
    idempotent,
)
from brokers import Bus, Headers, InvalidHeaderError, MemoryBus, Msg

from .actors_fixtures import (
    Add,
    Block,
    Counter,
    Forward,
    GetSeen,
    GetTotal,
    Recorder,
    Relay,
    Seen,
)
from .helpers import Inbox, open_reply_inbox, until

pytestmark = pytest.mark.anyio


async def test_tell_then_ask_returns_the_typed_reply(bus: Bus) -> None:
    async with ActorSystem(bus) as system:
        counter = await system.spawn(Counter, name="counter")
        for amount in range(1, 11):
            await counter.tell(Add(amount=amount))
        total = await counter.ask(GetTotal())
        assert total == 55
        assert type(total) is int


class Point(msgspec.Struct):
    x: int
    y: int


class GetPoint(Request[Point]):
    pass


class Geometry(Actor):
    async def point(self, msg: GetPoint) -> Point:
        return Point(1, 2)


async def test_ask_decodes_struct_replies(bus: Bus) -> None:
    async with ActorSystem(bus) as system:
        geometry = await system.spawn(Geometry)
        assert await geometry.ask(GetPoint()) == Point(1, 2)


async def test_one_subject_carries_several_message_types(bus: Bus) -> None:
    async with ActorSystem(bus) as system:
        counter = await system.spawn(Counter, name="c")
        monitor = Inbox()
        await bus.subscribe(counter.subject, monitor)
        await counter.tell(Add(amount=1))
        await counter.ask(GetTotal())
        await monitor.wait_for(2)
        assert [msgspec.msgpack.decode(m.data)["type"] for m in monitor.messages] == [
            "Add",
            "GetTotal",
        ]


async def test_on_start_runs_before_the_first_message_and_on_stop_at_shutdown(bus: Bus) -> None:
    events: list[str] = []

    class Hooked(Actor):
        async def on_start(self) -> None:
            events.append(f"start {self.name}")

        async def on_stop(self) -> None:
            events.append("stop")

        async def add(self, msg: Add) -> None:
            events.append(f"add {msg.amount}")

    async with ActorSystem(bus) as system:
        ref = await system.spawn(Hooked, name="h")
        assert events == ["start h"]
        await ref.tell(Add(amount=1))
    assert events == ["start h", "add 1", "stop"]


async def test_unhandled_message_type_fails_at_once(bus: Bus) -> None:
    class Other(Request[int]):
        pass

    async with ActorSystem(bus) as system:
        counter = await system.spawn(Counter)
        with pytest.raises(UnhandledMessageError, match="no handler for Other"):
            await counter.ask(Other())
        with pytest.raises(UnhandledMessageError):
            await counter.tell(Other())
        assert bus.stats.published == 0


async def test_asking_a_stopped_actor_fails_at_once(bus: Bus) -> None:
    async with ActorSystem(bus) as system:
        counter = await system.spawn(Counter)
        await system.stop(counter)
        assert counter.stopped
        published = bus.stats.published
        with anyio.fail_after(0.5):
            with pytest.raises(ActorStoppedError):
                await counter.ask(GetTotal(), timeout=30)
            with pytest.raises(ActorStoppedError):
                await counter.tell(Add(amount=1))
        assert bus.stats.published == published


async def test_asking_an_actor_nobody_runs_fails_at_once(bus: Bus) -> None:
    async with ActorSystem(bus) as system:
        ghost = system.ref(Counter, "ghost")
        with anyio.fail_after(0.5), pytest.raises(ActorNotFoundError):
            await ghost.ask(GetTotal(), timeout=30)


async def test_remote_style_ref_reaches_an_actor_by_name(bus: Bus) -> None:
    async with ActorSystem(bus) as server:
        await server.spawn(Counter, name="shared")
        async with ActorSystem(bus) as client:
            ref = client.ref(Counter, "shared")
            await ref.tell(Add(amount=7))
            assert await ref.ask(GetTotal()) == 7


async def test_a_private_actor_gets_the_messages_for_its_own_system_only(bus: Bus) -> None:
    """Two processes each running an actor of one name share its messages (a queue group),
    unless it is private: then each gets what was sent to its own system's node."""
    async with ActorSystem(bus) as one, ActorSystem(bus) as two:
        assert one.node != two.node
        await one.spawn(Counter, name="results", private=True)
        await two.spawn(Counter, name="results", private=True)
        for _ in range(20):
            await two.ref(Counter, "results", node=one.node).tell(Add(amount=1))
        await one.ref(Counter, "results", node=two.node).tell(Add(amount=5))
        assert await two.ref(Counter, "results", node=one.node).ask(GetTotal()) == 20
        assert await one.ref(Counter, "results", node=two.node).ask(GetTotal()) == 5
        assert await one.ref(Counter, "results").ask(GetTotal()) == 20  # its own, by name
        shared = one.ref(Counter, "results")
        assert shared.subject == f"{one.prefix}.results.@{one.node}"
        with anyio.fail_after(1), pytest.raises(ActorNotFoundError):  # none on the shared one
            await two.ref(Counter, "elsewhere").ask(GetTotal())


async def test_duplicate_names_are_refused() -> None:
    async with ActorSystem() as system:
        await system.spawn(Counter, name="once")
        with pytest.raises(DuplicateActorError):
            await system.spawn(Counter, name="once")


async def test_invalid_names_are_refused() -> None:
    async with ActorSystem() as system:
        with pytest.raises(ValueError, match="whitespace"):
            await system.spawn(Counter, name="has space")


async def test_instances_share_the_load_as_a_queue_group(bus: Bus) -> None:
    made: list[Counter] = []

    def make() -> Counter:
        counter = Counter()
        made.append(counter)
        return counter

    async with ActorSystem(bus) as system:
        counters = await system.spawn(make, name="pool", instances=3)
        for _ in range(300):
            await counters.tell(Add(amount=1))
        await until(lambda: sum(c.total for c in made) == 300)
        assert len(made) == 3
        assert all(c.total > 0 for c in made)


async def test_an_actor_handles_one_message_at_a_time(bus: Bus) -> None:
    class Careful(Actor):
        def __init__(self) -> None:
            self.inside = 0
            self.most = 0
            self.done = 0

        async def add(self, msg: Add) -> None:
            self.inside += 1
            self.most = max(self.most, self.inside)
            await anyio.lowlevel.checkpoint()
            self.inside -= 1
            self.done += 1

    careful = Careful()
    async with ActorSystem(bus) as system:
        ref = await system.spawn(lambda: careful)
        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(ref.tell, Add(amount=1))
        await until(lambda: careful.done == 20)
    assert careful.most == 1


async def test_ids_propagate_from_the_handled_message_to_the_ones_it_sends(bus: Bus) -> None:
    async with ActorSystem(bus) as system:
        recorder = await system.spawn(Recorder, name="recorder")
        relay = await system.spawn(Relay, name="relay")
        sent = Inbox()
        await bus.subscribe(relay.subject, sent)
        await relay.tell(Forward(label="f"), correlation_id="order-42")
        await recorder.tell(Seen(label="direct"))
        (forward_msg,) = await sent.wait_for(1)
        assert forward_msg.headers is not None
        forward_id = forward_msg.headers[MESSAGE_ID]
        assert forward_msg.headers[CORRELATION_ID] == "order-42"
        await until(lambda: len(recorder_seen(system)) == 2)
        seen = await recorder.ask(GetSeen())
        by_label = {label.split(":")[0]: rest for label, *rest in seen}
        message_id, correlation_id, causation_id = by_label["f"]
        assert correlation_id == "order-42"  # inherited, not passed by the relay
        assert causation_id == forward_id  # caused by the message the relay handled
        assert message_id not in (None, forward_id)
        direct_id, direct_correlation, direct_cause = by_label["direct"]
        assert direct_correlation == direct_id  # a root message starts its own conversation
        assert direct_cause is None


@pytest.mark.parametrize("bad", ["line\nbreak", "carriage\rreturn", 42])
async def test_ids_that_cannot_be_headers_are_refused_before_sending(bus: Bus, bad: object) -> None:
    # The in-memory bus trusts the headers the actor layer builds, so the ids a caller gives
    # must be checked where they come in, on every way a message leaves.
    async with ActorSystem(bus) as system:
        counter = await system.spawn(Counter, name="c")
        sent = Inbox()
        await bus.subscribe(counter.subject, sent)
        for given in ({"message_id": bad}, {"correlation_id": bad}):
            with pytest.raises(InvalidHeaderError):
                await counter.tell(Add(1), **given)  # type: ignore[arg-type]
            with pytest.raises(InvalidHeaderError):
                await counter.send(GetTotal(), "replies.here", **given)  # type: ignore[arg-type]
            with pytest.raises(InvalidHeaderError):
                await counter.ask(GetTotal(), **given)  # type: ignore[call-overload]
        await counter.tell(Add(2), message_id="fine", correlation_id="also-fine")
        (msg,) = await sent.wait_for(1)
        assert msg.headers is not None
        assert msg.headers[MESSAGE_ID] == "fine"
        assert msg.headers[CORRELATION_ID] == "also-fine"
        assert await counter.ask(GetTotal()) == 2


async def test_a_bus_that_overrides_publish_sees_every_message_actors_send() -> None:
    class Spy(MemoryBus):
        def __init__(self) -> None:
            super().__init__()
            self.published: list[str] = []

        async def publish(
            self,
            subject: str,
            data: bytes,
            headers: Headers | None = None,
            reply: str | None = None,
        ) -> None:
            self.published.append(subject)
            await super().publish(subject, data, headers, reply)

    spy = Spy()
    async with spy, ActorSystem(spy) as system:
        counter = await system.spawn(Counter, name="c")
        await counter.tell(Add(1))
        await counter.send(GetTotal(), "totals")
        await until(lambda: len(spy.published) == 3)
    assert spy.published == [counter.subject, counter.subject, "totals"]


def recorder_seen(system: ActorSystem) -> list[object]:
    group = system._groups["recorder"]
    actor = group.cells[0].actor
    assert isinstance(actor, Recorder)
    return list(actor.seen)


async def test_replies_carry_the_correlation_of_the_request(bus: Bus) -> None:
    async with ActorSystem(bus) as system:
        counter = await system.spawn(Counter, name="c")
        replies = Inbox()
        await bus.subscribe("_INBOX.>", replies)
        await counter.ask(GetTotal(), correlation_id="wf-1")
        (reply,) = await replies.wait_for(1)
        assert reply.headers is not None
        assert reply.headers[CORRELATION_ID] == "wf-1"


async def test_shutdown_drains_mailboxes_and_leaves_no_task(bus: Bus) -> None:
    before = asyncio.all_tasks()
    handled: list[int] = []

    class Slow(Actor):
        async def add(self, msg: Add) -> None:
            await anyio.lowlevel.checkpoint()
            handled.append(msg.amount)

    async with ActorSystem(bus) as system:
        ref = await system.spawn(Slow)
        for number in range(200):
            await ref.tell(Add(amount=number))
    assert handled == list(range(200))
    assert asyncio.all_tasks() <= before


async def test_shutdown_cancels_what_outlives_the_deadline(bus: Bus) -> None:
    await open_reply_inbox(bus)
    before = asyncio.all_tasks()
    published = bus.stats.published
    outcome: list[BaseException] = []
    with anyio.fail_after(2):
        async with ActorSystem(bus, shutdown_timeout=0.05) as system:
            counter = await system.spawn(Counter)
            await counter.tell(Block())  # its handler waits for a gate nobody opens
            await counter.tell(Add(amount=1))

            async def ask_total() -> None:
                try:
                    await counter.ask(GetTotal(), timeout=30)
                except ActorStoppedError as exc:
                    outcome.append(exc)

            async with anyio.create_task_group() as tg:
                tg.start_soon(ask_total)
                await until(lambda: bus.stats.published == published + 3)
                await system.shutdown()
    reasons = [letter.reason for letter in system.dead_letters]
    assert reasons == [DeadLetterReason.ACTOR_STOPPED] * 2
    assert len(outcome) == 1  # the asker was told, not left to time out
    assert asyncio.all_tasks() <= before


async def test_cancelled_system_stops_at_once(bus: Bus) -> None:
    before = asyncio.all_tasks()
    with anyio.move_on_after(0.05):
        async with ActorSystem(bus, shutdown_timeout=30) as system:
            counter = await system.spawn(Counter)
            await counter.tell(Block())
            await anyio.sleep_forever()
    assert asyncio.all_tasks() <= before


async def test_handler_discovery_by_decorator_and_by_hint(bus: Bus) -> None:
    class Both(Actor):
        @handler
        async def _private(self, msg: Add) -> None:
            pass

        async def public(self, msg: GetTotal) -> int:
            return 1

        async def helper(self, value: int) -> int:  # not a message type: not a handler
            return value

    async with ActorSystem(bus) as system:
        ref = await system.spawn(Both)
        await ref.tell(Add(amount=1))
        assert await ref.ask(GetTotal()) == 1


def test_invalid_actor_classes_are_refused() -> None:
    from actors._handlers import handler_table

    class TwoForOne(Actor):
        async def a(self, msg: Add) -> None: ...
        async def b(self, msg: Add) -> None: ...

    class Nothing(Actor):
        pass

    class BadDecorated(Actor):
        @handler
        async def on_plain(self, msg: Untagged) -> None: ...

    for bad, text in [
        (TwoForOne, "two handlers for Add"),
        (Nothing, "no message handler"),
        (BadDecorated, "tagged msgspec Struct"),
    ]:
        with pytest.raises(InvalidActorError, match=text):
            handler_table(bad)


async def test_spawn_needs_a_running_system() -> None:
    system = ActorSystem()
    with pytest.raises(Exception, match="running system"):
        await system.spawn(Counter)


async def test_bus_subjects_are_plain_nats_subjects(bus: Bus) -> None:
    """Any bus client can talk to an actor: the wire format is msgpack of the tagged Struct."""
    async with ActorSystem(bus) as system:
        counter = await system.spawn(Counter, name="wire")
        await bus.publish("corps.actors.wire", msgspec.msgpack.encode(Add(amount=5)))
        reply: Msg = await bus.request("corps.actors.wire", msgspec.msgpack.encode(GetTotal()))
        assert msgspec.msgpack.decode(reply.data) == 5
        assert counter.subject == "corps.actors.wire"


class Untagged(msgspec.Struct):
    x: int


class Quit(Request[str]):
    pass


class Quitter(Actor):
    async def quit(self, msg: Quit) -> str:
        await self.system.stop(self.ref)
        await (
            anyio.lowlevel.checkpoint()
        )  # still running: stopping itself did not cancel this handler
        return "bye"

    async def add(self, msg: Add) -> None: ...


async def test_an_actor_can_stop_itself_from_a_handler(bus: Bus) -> None:
    async with ActorSystem(bus) as system:
        quitter = await system.spawn(Quitter)
        results: list[str] = []

        async def ask_quit() -> None:
            try:
                results.append(await quitter.ask(Quit(), timeout=30))
            except ActorStoppedError:
                results.append("refused")

        with anyio.fail_after(2):
            async with anyio.create_task_group() as tg:
                tg.start_soon(ask_quit)
                tg.start_soon(ask_quit)  # queued behind the first: refused, not left hanging
        assert results == ["bye", "refused"]
        assert quitter.stopped
        with pytest.raises(ActorStoppedError):
            await quitter.tell(Add(amount=1))


async def test_a_failing_on_start_fails_the_spawn_and_leaves_nothing(bus: Bus) -> None:
    class Broken(Actor):
        async def on_start(self) -> None:
            raise RuntimeError("no database")

        async def add(self, msg: Add) -> None: ...

    async with ActorSystem(bus) as system:
        with pytest.raises(RuntimeError, match="no database"):
            await system.spawn(Broken, name="broken")
        assert "broken" not in system.actors
        assert bus.subscription_count == 0
        await system.spawn(Counter, name="broken")  # the name is free again


class Big(Request[bytes]):
    size: int


class Blob(Actor):
    async def big(self, msg: Big) -> bytes:
        return b"x" * msg.size


async def test_a_reply_too_large_for_the_bus_reaches_the_asker_as_an_error() -> None:
    async with MemoryBus(max_payload=1024) as bus, ActorSystem(bus) as system:
        blob = await system.spawn(Blob)
        assert await blob.ask(Big(size=10)) == b"x" * 10
        with anyio.fail_after(1), pytest.raises(HandlerError, match="MaxPayloadError"):
            await blob.ask(Big(size=4096), timeout=30)


class Charge(Request[int]):
    amount: int


class Ledger(Actor):
    def __init__(self) -> None:
        self.charged = 0
        self.fail_next = False

    @idempotent
    async def charge(self, msg: Charge) -> int:
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("card service unreachable")
        self.charged += msg.amount
        return self.charged


async def test_idempotent_handlers_answer_a_repeated_message_id_without_rerunning(
    bus: Bus,
) -> None:
    ledger = Ledger()
    async with ActorSystem(bus, supervision=SupervisorPolicy(backoff_initial=0)) as system:
        ref = await system.spawn(lambda: ledger)
        assert await ref.ask(Charge(amount=10), message_id="order-1.pay") == 10
        assert await ref.ask(Charge(amount=10), message_id="order-1.pay") == 10  # a retry
        assert ledger.charged == 10
        assert await ref.ask(Charge(amount=5), message_id="order-2.pay") == 15
        ledger.fail_next = True
        with pytest.raises(HandlerError):
            await ref.ask(Charge(amount=1), message_id="order-3.pay")
    assert ledger.charged == 15


async def test_a_failed_attempt_is_not_remembered(bus: Bus) -> None:
    made: list[Ledger] = []

    def make() -> Ledger:
        made.append(Ledger())
        made[-1].fail_next = len(made) == 1
        return made[-1]

    async with ActorSystem(bus, supervision=SupervisorPolicy(backoff_initial=0)) as system:
        ref = await system.spawn(make)
        with pytest.raises(HandlerError):
            await ref.ask(Charge(amount=3), message_id="retry-me")
        assert await ref.ask(Charge(amount=3), message_id="retry-me") == 3  # runs again


async def test_links_record_who_sent_what_to_whom(bus: Bus) -> None:
    async with ActorSystem(bus, record_links=True) as system:
        recorder = await system.spawn(Recorder, name="recorder")
        relay = await system.spawn(Relay, name="relay")
        await relay.tell(Forward(label="x"), correlation_id="conv-1")
        await until(lambda: len(recorder_seen(system)) == 1)
        await recorder.ask(GetSeen())
        with acting_as("auditor"):
            await recorder.tell(Seen(label="audit"), correlation_id="conv-2")
        assert system.links is not None
        assert system.links.links == {
            Link("client", "relay", "Forward", request=False),
            Link("relay", "recorder", "Seen", request=False),
            Link("client", "recorder", "GetSeen", request=True),
            Link("auditor", "recorder", "Seen", request=False),
        }
        assert system.links.sequence("conv-1") == [
            Link("client", "relay", "Forward", request=False),
            Link("relay", "recorder", "Seen", request=False),
        ]
        flowchart = system.links.flowchart()
        assert flowchart.startswith("flowchart LR")
        assert "    relay -.->|Seen| recorder" in flowchart
        assert "    client -->|GetSeen| recorder" in flowchart
        assert system.links.sequence_diagram("conv-1").splitlines() == [
            "sequenceDiagram",
            "    client-)relay: Forward",
            "    relay-)recorder: Seen",
        ]


async def test_links_are_off_by_default(bus: Bus) -> None:
    async with ActorSystem(bus) as system:
        assert system.links is None
