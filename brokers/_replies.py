"""Request/reply bookkeeping shared by the buses: one wildcard inbox per bus, one future per
request, NATS' no-responders status, timeouts, and late replies counted and discarded."""

from __future__ import annotations

import asyncio

from ._errors import BusClosedError, BusTimeoutError, NoRespondersError
from ._ids import IdGenerator
from ._message import Msg
from ._stats import BusStats

__all__ = ("NO_RESPONDERS", "Replies")

NO_RESPONDERS = {"Status": "503"}
"""The headers of NATS' no-responders status message."""


TICK = 0.01
"""Timeouts are grouped in buckets of this many seconds: one loop timer per bucket instead of
one per request (a timer heap of thousands of entries cost more than the request itself).
A request times out up to one tick late."""


class Replies:
    """The pending requests of one bus. Replies arrive on `<prefix><token>`, and the bus
    subscribes `pattern` once to feed them to `deliver`."""

    __slots__ = ("_buckets", "_futures", "_loop", "_next_token", "pattern", "prefix", "stats")

    def __init__(self, stats: BusStats) -> None:
        ids = IdGenerator()
        self.prefix = f"_INBOX.{ids.prefix}."
        self.pattern = self.prefix + "*"
        self._next_token = ids.next_id
        self._futures: dict[str, asyncio.Future[Msg]] = {}
        self._buckets: dict[int, dict[int, asyncio.Future[Msg]]] = {}
        self.stats = stats
        self._loop: asyncio.AbstractEventLoop | None = None
        """The loop of the first request until `fail_all`: on Python 3.11 asking asyncio for
        it makes a getpid() system call, too dear for every request."""

    def open(self) -> tuple[str, asyncio.Future[Msg]]:
        """A new reply subject and the future its reply resolves."""
        token = self._next_token()
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        future: asyncio.Future[Msg] = loop.create_future()
        self._futures[token] = future
        return self.prefix + token, future

    def close(self, reply_subject: str) -> None:
        """Forget a request: a reply that comes later is late."""
        del self._futures[reply_subject[len(self.prefix) :]]

    def fail(self, reply_subject: str, error: Exception) -> None:
        """Fail the request waiting on `reply_subject` with `error`, if it still waits."""
        future = self._futures.get(reply_subject[len(self.prefix) :])
        if future is not None and not future.done():
            future.set_exception(error)

    def deliver(self, msg: Msg) -> None:
        """Resolve the request `msg` answers, or count it as late."""
        future = self._futures.get(msg.subject[len(self.prefix) :])
        if future is None or future.done():
            self.stats.late_replies += 1
            return
        headers = msg.headers
        if headers is not None and headers.get("Status") == "503":
            future.set_exception(NoRespondersError("no responders"))
        else:
            future.set_result(msg)

    async def wait(self, future: asyncio.Future[Msg], subject: str, timeout: float) -> Msg:
        """The reply, or NoRespondersError, or BusTimeoutError after `timeout` seconds."""
        loop = future.get_loop()
        bucket = -int(-(loop.time() + timeout) // TICK)  # the first tick at or after the deadline
        waiting = self._buckets.get(bucket)
        if waiting is None:
            waiting = self._buckets[bucket] = {}
            loop.call_at(bucket * TICK, self._expire, bucket)
        key = id(future)
        waiting[key] = future
        try:
            return await future
        except NoRespondersError:
            self.stats.no_responders += 1
            raise NoRespondersError(f"no responders on {subject!r}") from None
        except TimeoutError:
            raise self.timed_out(subject, timeout) from None
        finally:
            waiting.pop(key, None)

    def _expire(self, bucket: int) -> None:
        for future in self._buckets.pop(bucket, {}).values():
            if not future.done():
                future.set_exception(TimeoutError())

    def timed_out(self, subject: str, timeout: float) -> BusTimeoutError:
        self.stats.timeouts += 1
        return BusTimeoutError(f"no reply on {subject!r} within {timeout} s")

    def fail_all(self) -> None:
        """Fail every pending request: the bus is closing."""
        self._loop = None
        for future in self._futures.values():
            if not future.done():
                future.set_exception(BusClosedError("the bus closed before the reply came"))
