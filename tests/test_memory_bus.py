"""MemoryBus: NATS core semantics, bounded queues, overflow policies, clean shutdown."""

from __future__ import annotations

import asyncio

import anyio
import anyio.lowlevel
import pytest

from brokers import (
    Bus,
    BusClosedError,
    BusTimeoutError,
    InvalidHeaderError,
    InvalidSubjectError,
    MaxPayloadError,
    MemoryBus,
    Msg,
    NoRespondersError,
    Overflow,
    SlowConsumerError,
)

from .helpers import Inbox, until

pytestmark = pytest.mark.anyio


async def test_is_a_bus() -> None:
    async with MemoryBus() as bus:
        assert isinstance(bus, Bus)


async def test_wildcards_and_fan_out() -> None:
    async with MemoryBus() as bus:
        exact, star, tail, other = Inbox(), Inbox(), Inbox(), Inbox()
        await bus.subscribe("orders.created", exact)
        await bus.subscribe("orders.*", star)
        await bus.subscribe("orders.>", tail)
        await bus.subscribe("payments.>", other)
        await bus.publish("orders.created", b"1")
        await bus.publish("orders.eu.created", b"2")
        await exact.wait_for(1)
        await star.wait_for(1)
        await tail.wait_for(2)
        assert exact.data == [b"1"]
        assert star.data == [b"1"]
        assert tail.data == [b"1", b"2"]
        assert other.messages == []


async def test_queue_group_delivers_each_message_to_exactly_one_member() -> None:
    async with MemoryBus() as bus:
        members = [Inbox() for _ in range(3)]
        plain = Inbox()
        for inbox in members:
            await bus.subscribe("work", inbox, queue="workers")
        await bus.subscribe("work", plain)
        for number in range(30):
            await bus.publish("work", str(number).encode())
        await plain.wait_for(30)
        await until(lambda: sum(len(m.messages) for m in members) == 30)
        received = sorted(int(d) for m in members for d in m.data)
        assert received == list(range(30))  # each exactly once
        assert all(m.messages for m in members)  # the load is shared


async def test_two_queue_groups_each_get_the_message() -> None:
    async with MemoryBus() as bus:
        a1, a2, b1 = Inbox(), Inbox(), Inbox()
        await bus.subscribe("jobs", a1, queue="a")
        await bus.subscribe("jobs", a2, queue="a")
        await bus.subscribe("jobs.*", b1, queue="b")
        await bus.subscribe("jobs", b1, queue="b")
        await bus.publish("jobs", b"x")
        await b1.wait_for(1)
        await until(lambda: len(a1.messages) + len(a2.messages) >= 1)
        await anyio.sleep(0.01)
        assert len(a1.messages) + len(a2.messages) == 1
        assert len(b1.messages) == 1


async def test_headers_and_reply_round_trip() -> None:
    async with MemoryBus() as bus:
        inbox = Inbox()
        await bus.subscribe("h", inbox)
        await bus.publish("h", b"x", headers={"Trace": "abc", "K": ""}, reply="answers.here")
        (msg,) = await inbox.wait_for(1)
        assert msg.headers == {"Trace": "abc", "K": ""}
        assert msg.reply == "answers.here"
        assert msg.subject == "h"


@pytest.mark.parametrize(
    "headers", [{"": "x"}, {"a:b": "x"}, {"a b": "x"}, {"k": "line\nbreak"}, {"k": 1}]
)
async def test_invalid_headers_are_refused(headers: dict[str, str]) -> None:
    async with MemoryBus() as bus:
        with pytest.raises((InvalidHeaderError, TypeError)):
            await bus.publish("h", b"x", headers=headers)


async def test_request_reply() -> None:
    async with MemoryBus() as bus:

        async def echo(msg: Msg) -> None:
            assert msg.reply is not None
            await bus.publish(msg.reply, msg.data.upper(), headers=msg.headers)

        await bus.subscribe("echo", echo, queue="svc")
        reply = await bus.request("echo", b"hi", timeout=1, headers={"X": "1"})
        assert reply.data == b"HI"
        assert reply.headers == {"X": "1"}


async def test_request_without_responders_fails_at_once() -> None:
    async with MemoryBus() as bus:
        with anyio.fail_after(0.5):
            with pytest.raises(NoRespondersError, match="nobody"):
                await bus.request("nobody", b"", timeout=30)
        assert bus.stats.no_responders == 1
        await bus.publish("nobody", b"")
        assert bus.stats.unrouted == 2


async def test_request_timeout_and_late_reply_is_discarded() -> None:
    async with MemoryBus() as bus:
        held: list[Msg] = []

        async def hold(msg: Msg) -> None:
            held.append(msg)

        await bus.subscribe("slow", hold)
        with pytest.raises(BusTimeoutError) as raised:
            await bus.request("slow", b"1", timeout=0.05)
        assert isinstance(raised.value, TimeoutError)

        async def answer(msg: Msg) -> None:
            assert msg.reply is not None
            await bus.publish(msg.reply, b"fresh")

        await bus.subscribe("fast", answer)
        assert held[0].reply is not None
        await bus.publish(held[0].reply, b"stale")  # the first request's reply, too late
        assert (await bus.request("fast", b"2", timeout=1)).data == b"fresh"
        assert bus.stats.late_replies == 1
        assert bus.stats.timeouts == 1


async def test_reply_inbox_visible_to_wildcard_subscribers() -> None:
    """A monitor on `_INBOX.>` sees replies, as on NATS (the inbox shortcut steps aside)."""
    async with MemoryBus() as bus:
        monitor = Inbox()
        await bus.subscribe("_INBOX.>", monitor)

        async def answer(msg: Msg) -> None:
            assert msg.reply is not None
            await bus.publish(msg.reply, b"ok")

        await bus.subscribe("svc", answer)
        assert (await bus.request("svc", b"", timeout=1)).data == b"ok"
        await monitor.wait_for(1)
        assert monitor.data == [b"ok"]


async def test_max_payload() -> None:
    async with MemoryBus(max_payload=1024) as bus:
        inbox = Inbox()
        await bus.subscribe("big", inbox)
        await bus.publish("big", b"x" * 1024)
        with pytest.raises(MaxPayloadError, match="1025 bytes"):
            await bus.publish("big", b"x" * 1025)
        with pytest.raises(MaxPayloadError):
            await bus.request("big", b"x" * 2000)
        await inbox.wait_for(1)
        assert len(inbox.messages) == 1


async def test_default_max_payload_is_one_mebibyte() -> None:
    async with MemoryBus() as bus:
        await bus.publish("x", b"\0" * (1 << 20))
        with pytest.raises(MaxPayloadError):
            await bus.publish("x", b"\0" * ((1 << 20) + 1))


async def test_invalid_subjects() -> None:
    async with MemoryBus() as bus:
        for subject in ["", "a..b", "a b", "a.*", "a.>"]:
            with pytest.raises(InvalidSubjectError):
                await bus.publish(subject, b"")
        for pattern in ["", "a..b", "a.>.b"]:
            with pytest.raises(InvalidSubjectError):
                await bus.subscribe(pattern, Inbox())
        with pytest.raises(InvalidSubjectError):
            await bus.publish("ok", b"", reply="bad reply")
        with pytest.raises(InvalidSubjectError):
            await bus.subscribe("ok", Inbox(), queue="bad queue")
        with pytest.raises(TypeError):
            await bus.publish("ok", "text")  # type: ignore[arg-type]


async def test_order_is_kept_per_publisher() -> None:
    async with MemoryBus(pending_limit=8) as bus:
        inbox = Inbox()
        await bus.subscribe("seq", inbox)

        async def produce(name: bytes) -> None:
            for number in range(200):
                await bus.publish("seq", name + b"%d" % number)

        async with anyio.create_task_group() as tg:
            tg.start_soon(produce, b"a")
            tg.start_soon(produce, b"b")
        await inbox.wait_for(400)
        for name in (b"a", b"b"):
            seen = [int(d[1:]) for d in inbox.data if d.startswith(name)]
            assert seen == list(range(200))


async def test_subscribe_after_hot_publishing_invalidates_the_route_cache() -> None:
    async with MemoryBus() as bus:
        first, late_exact, late_wildcard = Inbox(), Inbox(), Inbox()
        sub = await bus.subscribe("hot.subject", first)
        for _ in range(3):
            await bus.publish("hot.subject", b"x")
        await bus.subscribe("hot.subject", late_exact)
        await bus.subscribe("hot.>", late_wildcard)
        await bus.publish("hot.subject", b"y")
        await first.wait_for(4)
        await sub.unsubscribe()
        await bus.publish("hot.subject", b"z")
        await late_exact.wait_for(2)
        await late_wildcard.wait_for(2)
        assert first.data == [b"x", b"x", b"x", b"y"]
        assert late_exact.data == [b"y", b"z"]


async def test_unsubscribe_stops_delivery_and_drops_pending() -> None:
    async with MemoryBus() as bus:
        gate = anyio.Event()
        seen: list[bytes] = []

        async def slow(msg: Msg) -> None:
            seen.append(msg.data)
            await gate.wait()

        sub = await bus.subscribe("s", slow)
        for number in range(5):
            await bus.publish("s", b"%d" % number)
        await anyio.lowlevel.checkpoint()
        await sub.unsubscribe()  # cancels the callback waiting on the gate
        await bus.publish("s", b"after")
        assert seen == [b"0"]
        assert sub.dropped == 4
        assert bus.subscription_count == 0


async def test_drain_delivers_pending_then_stops() -> None:
    async with MemoryBus() as bus:
        inbox = Inbox()
        sub = await bus.subscribe("d", inbox)
        for number in range(50):
            await bus.publish("d", b"%d" % number)
        await sub.drain()
        assert len(inbox.messages) == 50
        await bus.publish("d", b"late")
        await anyio.lowlevel.checkpoint()
        assert len(inbox.messages) == 50


async def test_close_drains_in_flight_messages_and_leaves_no_task() -> None:
    before = asyncio.all_tasks()
    inbox = Inbox()
    bus = MemoryBus()
    await bus.subscribe("c", inbox)
    for number in range(100):
        await bus.publish("c", b"%d" % number)
    await bus.close()
    assert len(inbox.messages) == 100
    assert asyncio.all_tasks() == before
    with pytest.raises(BusClosedError):
        await bus.publish("c", b"")
    with pytest.raises(BusClosedError):
        await bus.subscribe("c", inbox)


async def test_close_cancels_callbacks_that_outlive_the_drain_timeout() -> None:
    before = asyncio.all_tasks()
    bus = MemoryBus(drain_timeout=0.05)

    async def stuck(msg: Msg) -> None:
        await anyio.sleep_forever()

    await bus.subscribe("stuck", stuck)
    await bus.publish("stuck", b"")
    with anyio.fail_after(2):
        await bus.close()
    assert asyncio.all_tasks() == before


async def test_close_fails_pending_requests() -> None:
    async with MemoryBus() as bus:
        await bus.subscribe("void", Inbox())
        async with anyio.create_task_group() as tg:

            async def ask() -> None:
                with pytest.raises(BusClosedError):
                    await bus.request("void", b"", timeout=10)

            tg.start_soon(ask)
            await anyio.sleep(0.01)
            await bus.close()


async def test_block_policy_makes_the_publisher_wait() -> None:
    async with MemoryBus(pending_limit=2, overflow=Overflow.BLOCK) as bus:
        gate = anyio.Event()
        inbox = Inbox()

        async def gated(msg: Msg) -> None:
            await gate.wait()
            await inbox(msg)

        sub = await bus.subscribe("b", gated)
        published = 0

        async def produce() -> None:
            nonlocal published
            for number in range(10):
                await bus.publish("b", b"%d" % number)
                published += 1

        async with anyio.create_task_group() as tg:
            tg.start_soon(produce)
            await anyio.sleep(0.05)
            # one message in the callback, two pending: the producer waits for room
            assert published == 3
            assert sub.pending == 2
            gate.set()
        await inbox.wait_for(10)
        assert inbox.data == [b"%d" % n for n in range(10)]
        assert sub.dropped == 0


async def test_drop_policy_counts_and_reports_drops() -> None:
    async with MemoryBus() as bus:
        gate = anyio.Event()
        dropped: list[Msg] = []

        async def gated(msg: Msg) -> None:
            await gate.wait()

        sub = await bus.subscribe(
            "d", gated, pending_limit=3, overflow=Overflow.DROP, on_drop=dropped.append
        )
        await bus.publish("d", b"first")
        await anyio.lowlevel.checkpoint()  # the callback takes the first message
        for number in range(10):
            await bus.publish("d", b"%d" % number)
        assert sub.pending == 3
        assert sub.dropped == 7
        assert [m.data for m in dropped] == [b"%d" % n for n in range(3, 10)]
        assert bus.stats.dropped == 7
        gate.set()


async def test_reject_policy_raises_at_the_publisher() -> None:
    async with MemoryBus() as bus:
        gate = anyio.Event()

        async def gated(msg: Msg) -> None:
            await gate.wait()

        await bus.subscribe("r", gated, pending_limit=1, overflow=Overflow.REJECT)
        await bus.publish("r", b"1")
        await anyio.lowlevel.checkpoint()
        await bus.publish("r", b"2")
        with pytest.raises(SlowConsumerError, match="limit 1"):
            await bus.publish("r", b"3")
        gate.set()


async def test_blocking_on_its_own_full_queue_is_an_error_not_a_deadlock() -> None:
    async with MemoryBus(pending_limit=1) as bus:
        errors: list[Exception] = []

        async def loop_back(msg: Msg) -> None:
            try:
                await bus.publish("self", b"again")
                await bus.publish("self", b"again")
            except SlowConsumerError as exc:
                errors.append(exc)

        await bus.subscribe("self", loop_back)
        await bus.publish("self", b"go")
        await until(lambda: bool(errors))
        assert "deadlock" in str(errors[0])


async def test_callback_errors_are_counted_and_delivery_goes_on() -> None:
    async with MemoryBus() as bus:
        inbox = Inbox()

        async def flaky(msg: Msg) -> None:
            if msg.data == b"bad":
                raise RuntimeError("boom")
            await inbox(msg)

        await bus.subscribe("f", flaky)
        await bus.publish("f", b"bad")
        await bus.publish("f", b"good")
        await inbox.wait_for(1)
        assert bus.stats.callback_errors == 1


async def test_idle_subscriptions_cost_no_task() -> None:
    before = asyncio.all_tasks()
    async with MemoryBus() as bus:
        for number in range(1000):
            await bus.subscribe(f"idle.{number}", Inbox())
        assert asyncio.all_tasks() == before
        await bus.publish("idle.7", b"")
        assert len(asyncio.all_tasks() - before) == 1
