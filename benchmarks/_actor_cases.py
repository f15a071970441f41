"""corps actors on MemoryBus: tell throughput, ask round trips, memory per idle actor."""

from __future__ import annotations

import asyncio
import gc
import time
import tracemalloc
from dataclasses import dataclass

from actors import Actor, ActorSystem, Message, Request

__all__ = ("IdleActorCost", "actor_ask", "actor_tell", "idle_actor_cost")


class Ping(Message):
    number: int


class Echo(Request[int]):
    number: int


class Sink(Actor):
    """Counts pings and answers echoes."""

    def __init__(self, expected: int = 0) -> None:
        self.expected = expected
        self.received = 0
        self.done = asyncio.Event()

    async def ping(self, msg: Ping) -> None:
        self.received += 1
        if self.received == self.expected:
            self.done.set()

    async def echo(self, msg: Echo) -> int:
        return msg.number


class Idle(Actor):
    async def ping(self, msg: Ping) -> None:
        pass


async def actor_tell(messages: int, mailbox_size: int = 1000) -> float:
    """Messages per second told by one task to one actor, until the actor has handled all."""
    sink = Sink(messages)
    async with ActorSystem(mailbox_size=mailbox_size) as system:
        ref = await system.spawn(lambda: sink)
        started = time.perf_counter()
        for number in range(messages):
            await ref.tell(Ping(number))
        await sink.done.wait()
        return messages / (time.perf_counter() - started)


async def actor_ask(round_trips: int) -> float:
    """Sequential asks per second from one task to one actor."""
    async with ActorSystem() as system:
        ref = await system.spawn(Sink)
        started = time.perf_counter()
        for number in range(round_trips):
            await ref.ask(Echo(number))
        return round_trips / (time.perf_counter() - started)


@dataclass(frozen=True, slots=True)
class IdleActorCost:
    actors: int
    bytes_per_actor: float
    """Python heap growth per spawned idle actor (tracemalloc), bus subscription included."""
    tasks_created: int
    """Tasks that exist because of the idle actors: idle actors should need none."""


async def idle_actor_cost(actors: int) -> IdleActorCost:
    """Spawn `actors` idle actors and measure what they hold."""
    async with ActorSystem() as system:
        await system.spawn(Idle)  # warm every cache before measuring
        tasks_before = len(asyncio.all_tasks())
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for _ in range(actors):
                await system.spawn(Idle)
            gc.collect()
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        tasks = len(asyncio.all_tasks()) - tasks_before
    return IdleActorCost(actors, grown / actors, tasks)
