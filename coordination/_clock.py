"""The time a strategy's timers read: the system's, or one a test moves by hand.

A `Sleep` of a day, or a wait's timeout of a week, is a timer due at a point in time
(seconds since the epoch). The strategies ask their clock what time it is and to wake them
at a point in time; `ManualClock.advance` moves time on at once, so that a test of a one-day
sleep runs in milliseconds (the time-skipping a Temporal test environment offers).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

__all__ = ("Clock", "ManualClock", "SystemClock", "Timers")


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch."""

    async def sleep_until(self, when: float) -> None:
        """Return once it is `when` (at once, if it is past)."""


class SystemClock:
    """The system's time."""

    def now(self) -> float:
        return time.time()

    async def sleep_until(self, when: float) -> None:
        await asyncio.sleep(max(0.0, when - time.time()))


class ManualClock:
    """Time that moves only when told: `advance(seconds)` wakes every sleeper due by then."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def now(self) -> float:
        return self._now

    async def sleep_until(self, when: float) -> None:
        if when <= self._now:
            return
        woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (when, next(self._order), woken))
        await woken

    async def advance(self, seconds: float) -> None:
        """Move time on by `seconds`, waking the sleepers due by then, in order, and let
        what they do run before returning."""
        if seconds < 0:
            raise ValueError("time does not go back")
        self._now += seconds
        sleepers = self._sleepers
        while sleepers and sleepers[0][0] <= self._now:
            _, _, woken = heapq.heappop(sleepers)
            if not woken.done():
                woken.set_result(None)
        for _ in range(10):  # the woken timers' tasks run their callbacks
            await asyncio.sleep(0)


class Timers:
    """A strategy's timers, by key: `arm(key, due, fire)` calls `fire()` once `clock` says
    it is `due` (arming a key again replaces its timer); `close()` cancels them all."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def arm(self, key: str, due: float, fire: Callable[[], Awaitable[None]]) -> None:
        self.cancel(key)
        task = asyncio.get_running_loop().create_task(self._wait(key, due, fire))
        self._tasks[key] = task

    async def _wait(self, key: str, due: float, fire: Callable[[], Awaitable[None]]) -> None:
        await self.clock.sleep_until(due)
        self._tasks.pop(key, None)
        await fire()

    def cancel(self, key: str) -> None:
        task = self._tasks.pop(key, None)
        if task is not None:
            task.cancel()

    async def close(self) -> None:
        tasks, self._tasks = self._tasks, {}
        for task in tasks.values():
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks.values(), return_exceptions=True)
