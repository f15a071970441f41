"""Raw-asyncio baselines: the floor no framework can beat, measured in the same process."""

from __future__ import annotations

import asyncio
import time

__all__ = ("raw_ping_pong", "raw_queue_one_way")


async def raw_queue_one_way(messages: int, maxsize: int = 1000) -> float:
    """Messages per second through one bounded asyncio.Queue, producer to consumer task."""
    queue: asyncio.Queue[object] = asyncio.Queue(maxsize)
    item = object()

    async def consume() -> None:
        get = queue.get
        for _ in range(messages):
            await get()

    consumer = asyncio.create_task(consume())
    started = time.perf_counter()
    put = queue.put
    for _ in range(messages):
        await put(item)
    await consumer
    return messages / (time.perf_counter() - started)


async def raw_ping_pong(round_trips: int) -> float:
    """Round trips per second between two tasks over two asyncio.Queues."""
    requests: asyncio.Queue[int] = asyncio.Queue()
    replies: asyncio.Queue[int] = asyncio.Queue()

    async def pong() -> None:
        for _ in range(round_trips):
            replies.put_nowait(await requests.get())

    responder = asyncio.create_task(pong())
    started = time.perf_counter()
    for number in range(round_trips):
        requests.put_nowait(number)
        await replies.get()
    await responder
    return round_trips / (time.perf_counter() - started)
