"""The least any strategy on corps can cost: the floors' hops as corps messages, with no
coordination logic at all.

Between a raw-asyncio floor and a strategy sit two costs: corps' messages (ids in headers,
routing, a bounded mailbox, handler dispatch, the actor metrics) and the strategy's own work
(state, store, retries, timeouts, compensation, the workflow metrics). These chains measure
the first alone, under the floors' load, so that a report can say which of the two a gap is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from actors import CAUSATION_ID, Actor, ActorRef, ActorSystem, Message
from brokers import MemoryBus, Msg

from ._workflow_cases import Work, Worker, closed_loop

__all__ = ("corps_choreography_chain", "corps_mediator_chain")


async def corps_mediator_chain(
    workflows: int | None, steps: int = 4, clients: int = 100, duration: float | None = None
) -> float:
    """The raw mediator's hops on corps: for each step, a request sent to the step's actor
    with `ActorRef.send` and its reply taken on one subscription, matched by causation id
    (as the Mediator does), then the next step's request."""
    bus = MemoryBus()
    async with bus, ActorSystem(bus) as system:
        refs = [await system.spawn(Worker, name=f"worker{n}") for n in range(steps)]
        decode = refs[0].reply_decoder(Work).decode
        waiting: dict[int, asyncio.Future[None]] = {}
        pending: dict[str, tuple[int, int]] = {}  # message id -> (workflow, step)
        replies = "bound.replies"

        async def send(workflow: int, step: int) -> None:
            message_id = f"{workflow}.{step}"
            pending[message_id] = (workflow, step)
            await refs[step].send(Work(workflow), replies, message_id=message_id)

        async def on_reply(msg: Msg) -> None:
            assert msg.headers is not None
            workflow, step = pending.pop(msg.headers[CAUSATION_ID])
            decode(msg.data)
            if step + 1 < steps:
                await send(workflow, step + 1)
            else:
                waiting.pop(workflow).set_result(None)

        await bus.subscribe(replies, on_reply)

        def begin(workflow: int, number: int) -> Awaitable[None]:
            return send(workflow, 0)

        return await closed_loop(workflows, duration, clients, [], waiting, begin)


class Hop(Message):
    workflow: int


class _Relay(Actor):
    """Tells the next relay, or, the last, ends the workflow."""

    def __init__(
        self, following: ActorRef[_Relay] | None, waiting: dict[int, asyncio.Future[None]]
    ) -> None:
        self.following = following
        self.waiting = waiting

    async def hop(self, msg: Hop) -> None:
        if self.following is not None:
            await self.following.tell(Hop(msg.workflow))
        else:
            self.waiting.pop(msg.workflow).set_result(None)


async def corps_choreography_chain(
    workflows: int | None, steps: int = 4, clients: int = 100, duration: float | None = None
) -> float:
    """The raw choreography's hops on corps: each step's actor tells the next one's, the
    last ends the workflow."""
    bus = MemoryBus()
    async with bus, ActorSystem(bus) as system:
        waiting: dict[int, asyncio.Future[None]] = {}

        def relay(following: ActorRef[_Relay] | None) -> Callable[[], _Relay]:
            return lambda: _Relay(following, waiting)

        following: ActorRef[_Relay] | None = None
        for n in reversed(range(steps)):
            following = await system.spawn(relay(following), name=f"relay{n}")
        assert following is not None
        first = following

        def begin(workflow: int, number: int) -> Awaitable[None]:
            return first.tell(Hop(workflow))

        return await closed_loop(workflows, duration, clients, [], waiting, begin)
