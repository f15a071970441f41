"""Workflows per second: corps strategies against a hand-written raw-asyncio mediator.

The workload is a chain of `steps` request/reply steps, each to its own service, driven by a
closed loop of `clients` that each start a workflow and wait for its end before the next.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable

import msgspec

from actors import Actor, Message, Request
from coordination import Step, Workflow, WorkflowContext

from ._budget import Budget

__all__ = (
    "Job",
    "Worker",
    "chain_workflow",
    "closed_loop",
    "raw_choreography_chain",
    "raw_mediator_chain",
)


class Job(msgspec.Struct, frozen=True):
    number: int


class Done(Message):
    number: int


class Work(Request[Done]):
    number: int


class Worker(Actor):
    async def work(self, msg: Work) -> Done:
        return Done(msg.number)


def _work(context: WorkflowContext[Job]) -> Work:
    return Work(context.input.number)


def chain_workflow(steps: int) -> Workflow[Job]:
    return Workflow(
        f"chain{steps}",
        Job,
        [Step(f"s{n}", f"worker{n}", _work, nothing_to_undo=True) for n in range(steps)],
        services={f"worker{n}": Worker for n in range(steps)},
    )


class _Command(msgspec.Struct, frozen=True, array_like=True):
    workflow: int
    number: int


async def raw_mediator_chain(
    workflows: int | None, steps: int = 4, clients: int = 100, duration: float | None = None
) -> float:
    """The floor: one mediator task driving a state machine, a task per service, asyncio
    queues between them and msgpack on every hop."""
    encode = msgspec.msgpack.encode
    decode = msgspec.msgpack.Decoder(_Command).decode
    inbox: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue()  # (step or -1 for a start, body)
    services: list[asyncio.Queue[bytes]] = [asyncio.Queue() for _ in range(steps)]
    waiting: dict[int, asyncio.Future[None]] = {}

    async def service(index: int) -> None:
        queue = services[index]
        while True:
            command = decode(await queue.get())
            inbox.put_nowait((index, encode(_Command(command.workflow, command.number))))

    async def mediator() -> None:
        while True:
            step, body = await inbox.get()
            command = decode(body)
            following = step + 1
            if following < steps:
                services[following].put_nowait(encode(command))
            else:
                waiting.pop(command.workflow).set_result(None)

    tasks = [asyncio.create_task(service(n)) for n in range(steps)]
    tasks.append(asyncio.create_task(mediator()))

    def begin(workflow: int, number: int) -> None:
        inbox.put_nowait((-1, encode(_Command(workflow, number))))

    return await closed_loop(workflows, duration, clients, tasks, waiting, begin)


async def raw_choreography_chain(
    workflows: int | None, steps: int = 4, clients: int = 100, duration: float | None = None
) -> float:
    """The floor of choreography: a task per service, each one's queue feeding the next
    one's, msgpack on every hop; the last service resolves the client's future."""
    encode = msgspec.msgpack.encode
    decode = msgspec.msgpack.Decoder(_Command).decode
    queues: list[asyncio.Queue[bytes]] = [asyncio.Queue() for _ in range(steps)]
    waiting: dict[int, asyncio.Future[None]] = {}

    async def service(index: int) -> None:
        queue = queues[index]
        following = queues[index + 1] if index + 1 < steps else None
        while True:
            event = decode(await queue.get())
            if following is not None:
                following.put_nowait(encode(_Command(event.workflow, event.number)))
            else:
                waiting.pop(event.workflow).set_result(None)

    tasks = [asyncio.create_task(service(n)) for n in range(steps)]

    def begin(workflow: int, number: int) -> None:
        queues[0].put_nowait(encode(_Command(workflow, number)))

    return await closed_loop(workflows, duration, clients, tasks, waiting, begin)


async def closed_loop(
    workflows: int | None,
    duration: float | None,
    clients: int,
    tasks: list[asyncio.Task[None]],
    waiting: dict[int, asyncio.Future[None]],
    begin: Callable[[int, int], Awaitable[None] | None],
) -> float:
    """Workflows per second of `clients` that each `begin` a workflow (awaited when it
    returns an awaitable) and wait for the services to resolve it in `waiting`, for
    `workflows` in all or for `duration` seconds; `tasks` are cancelled at the end."""
    loop = asyncio.get_running_loop()
    ids = itertools.count()
    done = [0]
    started = time.perf_counter()
    budget = Budget(workflows, duration)

    async def client() -> None:
        while budget.take():
            workflow = next(ids)
            finished = waiting[workflow] = loop.create_future()
            sending = begin(workflow, workflow)
            if sending is not None:
                await sending
            await finished
            done[0] += 1

    try:
        await asyncio.gather(*(client() for _ in range(clients)))
        return done[0] / (time.perf_counter() - started)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
