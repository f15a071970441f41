"""MemoryBus: NATS core semantics, bounded queues, overflow policies, clean shutdown."""

from __future__ import annotations

import asyncio

import anyio
import anyio.lowlevel
import pytest

from brokers import (
    MemoryBus,
    Msg,
    Overflow,
    SlowConsumerError,
)

from .helpers import Inbox, until

pytestmark = pytest.mark.anyio


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


async def test_idle_subscriptions_cost_no_task() -> None:
    before = asyncio.all_tasks()
    async with MemoryBus() as bus:
        for number in range(1000):
            await bus.subscribe(f"idle.{number}", Inbox())
        assert asyncio.all_tasks() == before
        await bus.publish("idle.7", b"")
        assert len(asyncio.all_tasks() - before) == 1
