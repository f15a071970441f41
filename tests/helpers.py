"""Small test tools: a subscriber callback that records messages and can be awaited."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import anyio

from brokers import Bus, Msg, NoRespondersError


class Inbox:
    """A subscription callback that keeps every message; `await inbox.wait_for(n)` blocks until
    `n` messages arrived (failing the test after `timeout` seconds rather than hanging)."""

    def __init__(self) -> None:
        self.messages: list[Msg] = []
        self._changed = anyio.Event()

    async def __call__(self, msg: Msg) -> None:
        self.messages.append(msg)
        self._changed.set()

    @property
    def data(self) -> list[bytes]:
        return [m.data for m in self.messages]

    async def wait_for(self, count: int, timeout: float = 5.0) -> list[Msg]:
        with anyio.fail_after(timeout):
            while len(self.messages) < count:
                self._changed = anyio.Event()
                await self._changed.wait()
        return self.messages


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until `condition()` holds, letting other tasks run; fail after `timeout` s."""
    with anyio.fail_after(timeout):
        while not condition():  # noqa: ASYNC110 - polls state that has no event of its own
            await anyio.sleep(0.001)


async def open_reply_inbox(bus: Bus) -> None:
    """Make the bus create its request inbox now: it lives as long as the bus, so a test
    that counts the tasks an ActorSystem leaves behind takes its snapshot after it exists."""
    with contextlib.suppress(NoRespondersError):
        await bus.request("corps.test.inbox-warm-up", b"", timeout=5)
