"""A MemoryBus subscription: a bounded pending queue drained by one delivery task.

Idle subscriptions cost no task and no queue: both are created on the first message. The queue
is the subscriber's mailbox; its bound and overflow policy decide what a publisher meets when it
is full.
"""

from __future__ import annotations

import asyncio
import contextvars
import enum
import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from ._bus import MessageCallback, Overflow
from ._errors import SlowConsumerError
from ._message import Msg

if TYPE_CHECKING:
    from ._memory import MemoryBus

__all__ = ("DirectSubscription", "MemorySubscription")

logger = logging.getLogger("brokers")

_FAIRNESS_BUDGET = 128
"""Messages a delivery task handles in a row before it lets other tasks run."""


class _State(enum.Enum):
    ACTIVE = "active"
    DRAINING = "draining"
    CLOSED = "closed"


class MemorySubscription:
    """Delivers matching messages to an async callback, one at a time, in arrival order."""

    __slots__ = (
        "_bus",
        "_callback",
        "_on_drop",
        "_pending",
        "_space",
        "_state",
        "_task",
        "_waiter",
        "delivered",
        "dropped",
        "limit",
        "overflow",
        "queue",
        "subject",
    )

    def __init__(
        self,
        bus: MemoryBus,
        subject: str,
        queue: str | None,
        callback: MessageCallback,
        limit: int,
        overflow: Overflow,
        on_drop: Callable[[Msg], None] | None,
    ) -> None:
        self._bus = bus
        self.subject = subject
        self.queue = queue
        self._callback = callback
        self.limit = limit
        self.overflow = overflow
        self._on_drop = on_drop
        self._pending: deque[Msg] | None = None
        self._task: asyncio.Task[None] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._space: deque[asyncio.Future[None]] | None = None
        self._state = _State.ACTIVE
        self.delivered = 0
        """Messages whose callback has returned (or raised)."""
        self.dropped = 0
        """Messages discarded: queue full under Overflow.DROP, or still pending at unsubscribe."""

    def __repr__(self) -> str:
        return (
            f"<MemorySubscription {self.subject!r} queue={self.queue!r} "
            f"pending={self.pending} {self._state.value}>"
        )

    @property
    def pending(self) -> int:
        """Messages waiting for the callback."""
        return len(self._pending) if self._pending is not None else 0

    @property
    def active(self) -> bool:
        """True until the subscription is drained or unsubscribed."""
        return self._state is _State.ACTIVE

    def offer(self, msg: Msg) -> bool:
        """Queue `msg` without waiting; False means the queue is full and the publisher must wait.

        Raises SlowConsumerError under Overflow.REJECT, or when blocking would deadlock.
        """
        pending = self._pending
        if pending is None or self._state is _State.CLOSED:
            if self._state is not _State.ACTIVE:
                self._drop(msg)
                return True
            pending = self._pending = deque()
            # A context of its own: the task is created by whichever publisher comes first,
            # and must not inherit that publisher's context variables (as a NATS
            # subscription, which never sees the publisher, does not).
            self._task = asyncio.get_running_loop().create_task(
                self._deliver(pending),
                name=f"corps-subscription:{self.subject}",
                context=contextvars.Context(),
            )
        if len(pending) >= self.limit:
            if self.overflow is Overflow.DROP:
                self._drop(msg)
                return True
            if self.overflow is Overflow.REJECT:
                raise SlowConsumerError(
                    f"subscription {self.subject!r} has {len(pending)} pending messages "
                    f"(limit {self.limit})"
                )
            if asyncio.current_task() is self._task:
                raise SlowConsumerError(
                    f"subscription {self.subject!r} is full and its own callback publishes to it: "
                    "waiting for room would deadlock"
                )
            return False
        pending.append(msg)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)
        return True

    async def put(self, msg: Msg) -> None:
        """Queue `msg`, waiting for room while the queue is full (Overflow.BLOCK)."""
        loop = asyncio.get_running_loop()
        while not self.offer(msg):
            if self._space is None:
                self._space = deque()
            room = loop.create_future()
            self._space.append(room)
            try:
                await room
            finally:
                if not room.done():
                    room.cancel()

    async def unsubscribe(self) -> None:
        """Stop at once: pending messages are dropped, a running callback is cancelled."""
        if self._state is not _State.CLOSED:
            self._state = _State.CLOSED
            self._bus._forget(self)
            if self._pending:
                for msg in self._pending:
                    self._drop(msg)
                self._pending.clear()
            self._wake_all_publishers()
            if self._task is not None and self._task is not asyncio.current_task():
                # From its own callback, the task just stops when the callback returns.
                self._task.cancel()
        await self._join()

    async def drain(self) -> None:
        """Stop taking new messages and return once the pending ones have been delivered.

        Called from the subscription's own callback, it returns at once and the subscription
        stops after the pending messages.
        """
        if self._state is _State.ACTIVE:
            self._state = _State.DRAINING
            self._bus._forget(self)
            waiter = self._waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        await self._join()

    async def _join(self) -> None:
        task = self._task
        if task is not None and task is not asyncio.current_task() and not task.done():
            await asyncio.wait((task,))

    def _drop(self, msg: Msg) -> None:
        self.dropped += 1
        self._bus.stats.dropped += 1
        if self._on_drop is not None:
            self._on_drop(msg)

    def _wake_all_publishers(self) -> None:
        space = self._space
        while space:
            room = space.popleft()
            if not room.done():
                room.set_result(None)

    async def _deliver(self, pending: deque[Msg]) -> None:
        loop = asyncio.get_running_loop()
        callback = self._callback
        stats = self._bus.stats
        budget = _FAIRNESS_BUDGET
        while True:
            if pending:
                budget -= 1
                if not budget:
                    # Callbacks that never suspend would otherwise keep the loop to this
                    # subscription for as long as messages keep coming.
                    budget = _FAIRNESS_BUDGET
                    await asyncio.sleep(0)
                    continue
                msg = pending.popleft()
                space = self._space
                if space:
                    room = space.popleft()
                    if not room.done():
                        room.set_result(None)
                stats.delivered += 1
                stats.delivered_bytes += len(msg.data)
                try:
                    await callback(msg)
                except Exception:
                    stats.callback_errors += 1
                    logger.exception("subscription %r: callback failed on %r", self.subject, msg)
                self.delivered += 1
                continue
            if self._space:
                self._wake_all_publishers()
            if self._state is not _State.ACTIVE:
                return
            waiter = self._waiter = loop.create_future()
            await waiter


class DirectSubscription:
    """A subscription whose synchronous handler runs inside publish: used for reply inboxes,
    where a handler only resolves a future and a queue hop would double the latency."""

    __slots__ = ("_bus", "_handler", "queue", "subject")

    def __init__(self, bus: MemoryBus, subject: str, handler: Callable[[Msg], None]) -> None:
        self._bus = bus
        self.subject = subject
        self.queue: str | None = None
        self._handler = handler

    def offer(self, msg: Msg) -> bool:
        self._handler(msg)
        return True

    async def put(self, msg: Msg) -> None:
        self._handler(msg)

    async def unsubscribe(self) -> None:
        self._bus._forget(self)

    async def drain(self) -> None:
        self._bus._forget(self)
