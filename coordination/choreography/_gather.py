"""Asking every process that listens on a subject, when nobody knows how many there are.

A question goes out with a reply subject of its own, and the answers are taken as they come:
up to `timeout` seconds for the first, then until none has come for `quiet` seconds, or until
the asker has `enough` (it knows what it waits for: no quiet to wait out). Query-all
gathers the records of every copy of a service this way, and a choreography whose adapters run
in the services' hosts has each host confirm a cancel or a pause before it returns.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from brokers import Bus, Msg

__all__ = ("gather",)


def _anything(msg: Msg) -> bool:
    return True


async def gather(
    bus: Bus,
    subject: str,
    data: bytes,
    inbox: str,
    *,
    timeout: float,
    quiet: float,
    accept: Callable[[Msg], bool] = _anything,
    enough: Callable[[], bool] | None = None,
) -> list[Msg]:
    """Publish `data` on `subject`, answers to `inbox` (a subject of the caller's own), and
    return the answers `accept` takes, gathered as the module says (never past `timeout`)."""
    replies: list[Msg] = []
    came = asyncio.Event()

    async def collect(msg: Msg) -> None:
        if accept(msg):
            replies.append(msg)
            came.set()

    subscription = await bus.subscribe(inbox, collect)
    try:
        await bus.publish(subject, data, reply=inbox)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        wait = timeout
        while wait > 0:
            if enough is not None and replies and enough():
                break
            came.clear()
            try:
                await asyncio.wait_for(came.wait(), wait)
            except TimeoutError:
                break
            wait = min(quiet, deadline - loop.time())
    finally:
        await subscription.unsubscribe()
    return replies
