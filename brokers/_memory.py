"""MemoryBus: NATS semantics inside one process, the embedded default and the fast path."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Protocol, Self

from ._bus import Bus, MessageCallback, Overflow
from ._errors import BusClosedError, MaxPayloadError
from ._headers import HeaderCheck
from ._memory_subscription import DirectSubscription, MemorySubscription
from ._message import Headers, Msg, as_bytes
from ._replies import NO_RESPONDERS, Replies
from ._stats import BusStats
from ._subject_index import SubjectIndex
from ._subjects import validate_queue, validate_subject

__all__ = ("DEFAULT_MAX_PAYLOAD", "DEFAULT_PENDING_LIMIT", "MemoryBus", "prechecked_publish")

DEFAULT_MAX_PAYLOAD = 1024 * 1024
"""1 MiB, nats-server's default max_payload."""

DEFAULT_PENDING_LIMIT = 65536
"""Pending messages per subscription, nats-py's default."""


_Member = MemorySubscription | DirectSubscription


class MemoryBus:
    """An in-process bus with the semantics of NATS core.

    - Subjects are `.`-separated tokens; `*` matches one token, `>` one or more trailing
      tokens. Invalid subjects raise InvalidSubjectError.
    - Every plain subscriber gets each message; each queue group gets it once.
    - `request` uses a unique inbox subject, fails at once with NoRespondersError when nobody
      listens and with BusTimeoutError (a TimeoutError) when no reply comes in time.
    - Payloads above `max_payload` raise MaxPayloadError.
    - Each subscription has a bounded pending queue (`pending_limit`) and an `overflow` policy.

    Use it as `async with MemoryBus() as bus:`; closing drains the subscriptions for up to
    `drain_timeout` seconds, then cancels what is left, so no delivery task outlives the bus.
    """

    def __init__(
        self,
        *,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        pending_limit: int = DEFAULT_PENDING_LIMIT,
        overflow: Overflow = Overflow.BLOCK,
        drain_timeout: float = 5.0,
    ) -> None:
        if max_payload <= 0:
            raise ValueError("max_payload must be positive")
        if pending_limit <= 0:
            raise ValueError("pending_limit must be positive")
        self.max_payload = max_payload
        self.pending_limit = pending_limit
        self.overflow = overflow
        self.drain_timeout = drain_timeout
        self.stats = BusStats()
        self._index: SubjectIndex[_Member] = SubjectIndex()
        self._subscriptions: set[_Member] = set()
        self._closed = False
        self._check_headers = HeaderCheck()
        self._replies = Replies(self.stats)
        self._inbox_prefix = self._replies.prefix
        self._valid_reply = ""
        """The reply subject validated last: a coordinator sends many requests with the same
        one, and checking it costs more than the rest of the routing."""
        self._inbox: DirectSubscription | None = None
        self._inbox_watchers = 0
        """Subscriptions, other than the request inbox, whose pattern can match inbox subjects."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def subscription_count(self) -> int:
        """Live subscriptions, the request inbox excluded."""
        return len(self._subscriptions) - (self._inbox is not None)

    @property
    def subjects(self) -> list[str]:
        """The subjects and patterns subscribed now (the request inbox excluded), sorted."""
        inbox = self._inbox
        return sorted({sub.subject for sub in self._subscriptions if sub is not inbox})

    async def publish(
        self,
        subject: str,
        data: bytes,
        headers: Headers | None = None,
        reply: str | None = None,
    ) -> None:
        """Deliver `data` to the subscribers of `subject`.

        Waits only when a subscriber's queue is full under Overflow.BLOCK.
        """
        waiting = self._send(subject, data, headers, reply)
        if waiting is not None:
            await _wait_for_room(waiting)

    async def _publish_prechecked(
        self,
        subject: str,
        data: bytes,
        headers: Headers | None = None,
        reply: str | None = None,
    ) -> None:
        """`publish` for the actor layer, whose headers are built from ids already checked
        (`actors.outgoing_headers` checks the ids a caller gives; the rest come from this
        bus's own messages or the id generator): not checked again. Every header dict on this
        bus was therefore checked once, where it came in."""
        waiting = self._send(subject, data, headers, reply, prechecked=True)
        if waiting is not None:
            await _wait_for_room(waiting)

    def _send(
        self,
        subject: str,
        data: bytes,
        headers: Headers | None,
        reply: str | None,
        prechecked: bool = False,
    ) -> _Waiting | None:
        """Publish without waiting; returns the message and the subscriptions that are full
        under Overflow.BLOCK, which the caller must wait for, or None."""
        if self._closed:
            raise BusClosedError("the bus is closed")
        if type(data) is not bytes:
            data = as_bytes(data)
        if len(data) > self.max_payload:
            raise MaxPayloadError(
                f"payload of {len(data)} bytes exceeds the bus limit of {self.max_payload}"
            )
        if headers is not None and not prechecked:
            self._check_headers(headers)
        stats = self.stats
        stats.published += 1
        stats.published_bytes += len(data)
        inbox = self._inbox
        if (
            inbox is not None
            and not self._inbox_watchers
            and subject.startswith(self._inbox_prefix)
        ):
            # A reply to one of our requests, and no other subscription can see inbox subjects:
            # skip routing (every reply subject is new, so it would always miss the cache).
            inbox.offer(Msg(subject, data, headers, reply))
            return None
        route = self._index.route(subject)
        if (
            reply is not None
            and reply != self._valid_reply
            and not reply.startswith(self._inbox_prefix)
        ):
            validate_subject(reply)
            self._valid_reply = reply
        msg = Msg(subject, data, headers, reply)
        if route.empty:
            self.stats.unrouted += 1
            if reply is not None:
                return self._send(reply, b"", NO_RESPONDERS, None)
            return None
        waiting: list[MemorySubscription | DirectSubscription] | None = None
        for sub in route.fixed:
            if not sub.offer(msg):
                waiting = [sub] if waiting is None else [*waiting, sub]
        for group in route.groups:
            sub = route.pick(group)
            if not sub.offer(msg):
                waiting = [sub] if waiting is None else [*waiting, sub]
        return None if waiting is None else (msg, waiting)

    async def subscribe(
        self,
        subject: str,
        callback: MessageCallback,
        queue: str | None = None,
        *,
        pending_limit: int | None = None,
        overflow: Overflow | None = None,
        on_drop: Callable[[Msg], None] | None = None,
    ) -> MemorySubscription:
        """Deliver messages matching the `subject` pattern to `callback`, one at a time.

        `pending_limit` and `overflow` default to the bus's; `on_drop` sees each dropped message.
        """
        if self._closed:
            raise BusClosedError("the bus is closed")
        if queue is not None:
            validate_queue(queue)
        limit = self.pending_limit if pending_limit is None else pending_limit
        if limit <= 0:
            raise ValueError("pending_limit must be positive")
        sub = MemorySubscription(
            self,
            subject,
            queue,
            callback,
            limit,
            self.overflow if overflow is None else overflow,
            on_drop,
        )
        self._index.add(subject, sub)
        self._subscriptions.add(sub)
        if self._sees_inbox(subject):
            self._inbox_watchers += 1
        return sub

    async def request(
        self,
        subject: str,
        data: bytes,
        timeout: float = 5.0,
        headers: Headers | None = None,
    ) -> Msg:
        """Publish with a unique reply subject and return the first reply.

        Raises NoRespondersError at once when nobody listens on `subject`, BusTimeoutError
        when no reply comes within `timeout` seconds (waiting for room in a full queue
        included). A reply arriving after the timeout is discarded and counted in
        `stats.late_replies`.
        """
        if self._closed:
            raise BusClosedError("the bus is closed")
        if self._inbox is None:
            self._inbox = DirectSubscription(self, self._replies.pattern, self._replies.deliver)
            self._index.add(self._inbox.subject, self._inbox)
            self._subscriptions.add(self._inbox)
        reply, future = self._replies.open()
        try:
            waiting = self._send(subject, data, headers, reply)
            if waiting is None:
                return await self._replies.wait(future, subject, timeout)
            # A subscriber's queue is full: waiting for room counts against the timeout.
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            try:
                async with asyncio.timeout_at(deadline):
                    await _wait_for_room(waiting)
            except TimeoutError:
                raise self._replies.timed_out(subject, timeout) from None
            return await self._replies.wait(future, subject, max(0.0, deadline - loop.time()))
        finally:
            self._replies.close(reply)

    async def flush(self) -> None:
        """Nothing to wait for: a publish has reached every queue when it returns."""
        if self._closed:
            raise BusClosedError("the bus is closed")

    async def close(self) -> None:
        """Refuse further use, fail pending requests, drain subscriptions, then cancel the rest."""
        if self._closed:
            return
        self._closed = True
        self._replies.fail_all()
        subscriptions = list(self._subscriptions)
        if subscriptions:
            drains = [asyncio.ensure_future(sub.drain()) for sub in subscriptions]
            _, late = await asyncio.wait(drains, timeout=self.drain_timeout)
            for drain in late:
                drain.cancel()
            for sub in subscriptions:
                await sub.unsubscribe()

    def _forget(self, sub: _Member) -> None:
        if sub in self._subscriptions:
            self._subscriptions.discard(sub)
            self._index.remove(sub.subject, sub)
            if sub is self._inbox:
                self._inbox = None
            elif self._sees_inbox(sub.subject):
                self._inbox_watchers -= 1

    def _sees_inbox(self, pattern: str) -> bool:
        """Whether `pattern` can match a subject `_INBOX.<our prefix>.<token>`."""
        inbox = self._inbox_prefix.split(".")
        for index, token in enumerate(pattern.split(".")):
            if token == ">":
                return True
            if index >= 3 or (index < 2 and token not in ("*", inbox[index])):
                return False
        return len(pattern.split(".")) == 3


_Waiting = tuple[Msg, list[MemorySubscription | DirectSubscription]]


class Publish(Protocol):
    def __call__(
        self, subject: str, data: bytes, headers: Headers | None = None, reply: str | None = None
    ) -> Awaitable[None]: ...


def prechecked_publish(bus: Bus) -> Publish:
    """How the actor layer publishes messages whose headers it built from checked ids.

    On a MemoryBus the header check is skipped (it was done where each id came in); on any
    other bus, or a MemoryBus subclass that overrides `publish` (a test double that sees every
    message), this is `bus.publish` itself.
    """
    if isinstance(bus, MemoryBus) and type(bus).publish is MemoryBus.publish:
        return bus._publish_prechecked
    return bus.publish


async def _wait_for_room(waiting: _Waiting) -> None:
    msg, subscriptions = waiting
    for sub in subscriptions:
        await sub.put(msg)
