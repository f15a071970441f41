"""JetStream mode: at-least-once delivery with explicit acks, redelivery, dead letters, dedup."""

from __future__ import annotations

import asyncio
import itertools

import anyio
import pytest

from actors import ActorSystem
from brokers import (
    DeadLetterNotice,
    JetStreamError,
    Msg,
    NatsBus,
    NatsServer,
)
from coordination import StampCoupled
from coordination.scenarios.order_placement import order_workflow

from .helpers import Inbox, until
from .service_host import open_shop as open_order_services

pytestmark = [pytest.mark.anyio, pytest.mark.nats]

_names = itertools.count()


@pytest.fixture
def stream() -> str:
    """A fresh stream name; its subjects are `<name>.>`."""
    return f"S{next(_names)}"


async def test_durable_delivery_and_dedup_by_message_id(
    nats_server: NatsServer, stream: str
) -> None:
    async with NatsBus(nats_server.url) as bus:
        js = bus.jetstream
        await js.ensure_stream(stream, [f"{stream}.>"])
        inbox = Inbox()
        sub = await js.subscribe(f"{stream}.orders", inbox, durable="billing")
        first = await js.publish(f"{stream}.orders", b"a", headers={"Nats-Msg-Id": "order-1"})
        again = await js.publish(f"{stream}.orders", b"a", headers={"Nats-Msg-Id": "order-1"})
        other = await js.publish(f"{stream}.orders", b"b", headers={"Nats-Msg-Id": "order-2"})
        assert (first.stream, first.duplicate) == (stream, False)
        assert again.duplicate
        assert again.sequence == first.sequence  # stored once
        assert other.sequence == first.sequence + 1
        await inbox.wait_for(2)
        await anyio.sleep(0.1)
        assert inbox.data == [b"a", b"b"]
        assert inbox.messages[0].headers == {"Nats-Msg-Id": "order-1"}
        await until(lambda: sub.acked == 2)


async def test_a_failing_callback_gets_the_message_again(
    nats_server: NatsServer, stream: str
) -> None:
    attempts: list[bytes] = []

    async def flaky(msg: Msg) -> None:
        attempts.append(msg.data)
        if len(attempts) == 1:
            raise RuntimeError("database briefly down")

    async with NatsBus(nats_server.url) as bus:
        await bus.jetstream.ensure_stream(stream, [f"{stream}.>"])
        sub = await bus.jetstream.subscribe(f"{stream}.x", flaky, durable="d", max_deliver=3)
        await bus.jetstream.publish(f"{stream}.x", b"charge")
        await until(lambda: sub.acked == 1)
        assert attempts == [b"charge", b"charge"]
        assert sub.redelivered == 1
        assert sub.dead_lettered == 0


async def test_poison_message_goes_to_dead_letters_after_max_deliveries(
    nats_server: NatsServer, stream: str
) -> None:
    attempts = 0
    notices: list[DeadLetterNotice] = []

    async def poison(msg: Msg) -> None:
        nonlocal attempts
        attempts += 1
        raise ValueError("cannot parse")

    async with NatsBus(nats_server.url) as bus:
        dead = Inbox()
        await bus.subscribe("corps.dead-letters.parser", dead)
        await bus.jetstream.ensure_stream(stream, [f"{stream}.>"])
        sub = await bus.jetstream.subscribe(
            f"{stream}.in", poison, durable="parser", max_deliver=3, on_dead_letter=notices.append
        )
        await bus.jetstream.publish(f"{stream}.in", b"\xff", headers={"Nats-Msg-Id": "m1"})
        (letter,) = await dead.wait_for(1)
        assert letter.data == b"\xff"
        assert letter.headers is not None
        assert letter.headers["Corps-Dead-Subject"] == f"{stream}.in"
        assert letter.headers["Corps-Dead-Deliveries"] == "3"
        assert letter.headers["Corps-Dead-Error"] == "ValueError: cannot parse"
        assert [n.deliveries for n in notices] == [3]
        await anyio.sleep(0.3)
        assert attempts == 3  # terminated: never delivered again
        assert sub.dead_lettered == 1


async def test_a_message_not_acked_within_ack_wait_is_redelivered(
    nats_server: NatsServer, stream: str
) -> None:
    deliveries: list[int] = []

    async def slow(msg: Msg) -> None:
        deliveries.append(len(deliveries) + 1)
        if len(deliveries) == 1:
            await anyio.sleep(1.5)  # past ack_wait: the server sends it again

    async with NatsBus(nats_server.url) as bus:
        await bus.jetstream.ensure_stream(stream, [f"{stream}.>"])
        sub = await bus.jetstream.subscribe(f"{stream}.slow", slow, durable="d", ack_wait=1.0)
        await bus.jetstream.publish(f"{stream}.slow", b"x")
        await until(lambda: len(deliveries) >= 2, timeout=10)
        assert sub.redelivered >= 1


async def test_durable_consumer_survives_a_server_restart(stream: str) -> None:
    with NatsServer() as server:
        async with NatsBus(server.url) as bus:
            inbox = Inbox()
            await bus.jetstream.ensure_stream(stream, [f"{stream}.>"])
            await bus.jetstream.subscribe(f"{stream}.e", inbox, durable="d")
            for number in range(5):
                await bus.jetstream.publish(f"{stream}.e", b"%d" % number)
            await inbox.wait_for(5)
            server.restart()
            await until(lambda: bus.stats.reconnects == 1, timeout=10)
            for number in range(5, 10):
                await bus.jetstream.publish(f"{stream}.e", b"%d" % number, timeout=10)
            await inbox.wait_for(10, timeout=10)
            assert sorted(int(d) for d in inbox.data) == list(range(10))


async def test_a_durable_resumes_where_it_stopped(nats_server: NatsServer, stream: str) -> None:
    async with NatsBus(nats_server.url) as bus:
        await bus.jetstream.ensure_stream(stream, [f"{stream}.>"])
        first = Inbox()
        sub = await bus.jetstream.subscribe(f"{stream}.r", first, durable="resumable")
        await bus.jetstream.publish(f"{stream}.r", b"1")
        await first.wait_for(1)
        await until(lambda: sub.acked == 1)
        await sub.unsubscribe()
        await bus.jetstream.publish(f"{stream}.r", b"2")  # stored while nobody consumes
        second = Inbox()
        sub = await bus.jetstream.subscribe(f"{stream}.r", second, durable="resumable")
        await second.wait_for(1)
        await anyio.sleep(0.1)
        assert second.data == [b"2"]
        await sub.delete()


async def test_instances_of_a_durable_share_the_messages(
    nats_server: NatsServer, stream: str
) -> None:
    async with NatsBus(nats_server.url) as bus:
        await bus.jetstream.ensure_stream(stream, [f"{stream}.>"])
        a, b = Inbox(), Inbox()
        await bus.jetstream.subscribe(f"{stream}.w", a, durable="pool", queue="pool")
        await bus.jetstream.subscribe(f"{stream}.w", b, durable="pool", queue="pool")
        for number in range(40):
            await bus.jetstream.publish(f"{stream}.w", b"%d" % number)
        await until(lambda: len(a.messages) + len(b.messages) == 40)
        await anyio.sleep(0.1)
        assert sorted(int(d) for d in a.data + b.data) == list(range(40))
        assert a.messages
        assert b.messages


async def test_subjects_without_a_stream_are_refused(nats_server: NatsServer) -> None:
    async with NatsBus(nats_server.url) as bus:
        with pytest.raises(JetStreamError, match="no stream"):
            await bus.jetstream.publish("nowhere.at.all", b"")
        with pytest.raises(JetStreamError, match="no stream"):
            await bus.jetstream.subscribe("nowhere.at.all", Inbox(), durable="d")


async def test_a_message_never_acked_goes_to_dead_letters_too(
    nats_server: NatsServer, stream: str
) -> None:
    """A handler that never finishes never fails either, yet the server gives up after
    max_deliver unacked deliveries: corps dead-letters the message from the stream all the same
    (a consumer whose process died is dead-lettered the same way)."""

    async def stuck(msg: Msg) -> None:
        await anyio.sleep_forever()

    async with NatsBus(nats_server.url) as bus:
        dead = Inbox()
        await bus.subscribe("corps.dead-letters.stuck", dead)
        await bus.jetstream.ensure_stream(stream, [f"{stream}.>"])
        sub = await bus.jetstream.subscribe(
            f"{stream}.s", stuck, durable="stuck", max_deliver=2, ack_wait=1.0
        )
        await bus.jetstream.publish(f"{stream}.s", b"slow job")
        (letter,) = await dead.wait_for(1, timeout=15)
        assert letter.data == b"slow job"
        assert letter.headers is not None
        assert letter.headers["Corps-Dead-Deliveries"] == "2"
        assert "not acknowledged" in letter.headers["Corps-Dead-Error"]
        await sub.unsubscribe()


async def test_a_work_queue_consumer_handles_several_at_once_and_keeps_only_the_unacked(
    nats_server: NatsServer, stream: str
) -> None:
    """With `concurrency`, messages are handled at once (each waits here until all four
    have begun, which one at a time would never see); a work queue holds only what is not
    acked yet, and a failure comes back after `retry_delay`."""
    all_begun = anyio.Event()
    begun: list[bytes] = []
    failed_once: list[bytes] = []

    async def slow(msg: Msg) -> None:
        if msg.data == b"flaky" and not failed_once:
            failed_once.append(msg.data)
            raise RuntimeError("briefly down")
        begun.append(msg.data)
        if len(begun) == 4:
            all_begun.set()
        await all_begun.wait()

    async with NatsBus(nats_server.url) as bus:
        js = bus.jetstream
        await js.ensure_stream(stream, [f"{stream}.>"], work_queue=True, max_msgs=10)
        sub = await js.subscribe(f"{stream}.w", slow, durable="w", concurrency=4, retry_delay=0.05)
        for data in (b"a", b"b", b"c", b"flaky"):
            await js.publish(f"{stream}.w", data)
        with anyio.fail_after(10):
            await all_begun.wait()
            await until(lambda: sub.acked == 4)
        assert sorted(begun) == [b"a", b"b", b"c", b"flaky"]
        assert sub.redelivered == 1
        info = await js.context().stream_info(stream)
        assert info.state.messages == 0  # acked work leaves the queue
        for number in range(10):
            await js.publish(f"{stream}.full", b"%d" % number)
        with pytest.raises(JetStreamError):  # full: refused, nothing old dropped
            await js.publish(f"{stream}.full", b"one too many")
        await sub.delete()


async def test_a_server_without_jetstream_is_named_as_the_cause() -> None:
    """A choreography whose events are to be kept in JetStream, on a server that does not
    run it, refuses to start and says what to change."""
    with NatsServer(jetstream=False) as plain:
        async with NatsBus(plain.url) as bus, ActorSystem(bus) as system:
            await open_order_services(system)
            orders = StampCoupled(system, order_workflow, durable_events=True)
            with pytest.raises(JetStreamError, match="does not run JetStream"):
                async with orders:
                    pass
            assert orders.events_stream is None


async def test_processes_that_create_a_shared_consumer_together_all_receive(
    nats_server: NatsServer, stream: str
) -> None:
    """Two processes subscribe one durable queue consumer at the same moment, and one of
    them goes: the other receives everything, whichever of them created the consumer."""
    async with NatsBus(nats_server.url) as first, NatsBus(nats_server.url) as second:
        await first.jetstream.ensure_stream(stream, [f"{stream}.>"])
        kept, gone = Inbox(), Inbox()
        together = await asyncio.gather(
            *(
                bus.jetstream.subscribe(f"{stream}.w", inbox, durable="pool", queue="pool")
                for bus, inbox in ((first, kept), (second, gone))
            )
        )
        await together[1].unsubscribe()
        for number in range(10):
            await first.jetstream.publish(f"{stream}.w", b"%d" % number)
        await kept.wait_for(10)
        assert sorted(int(d) for d in kept.data) == list(range(10))
        assert gone.messages == []
