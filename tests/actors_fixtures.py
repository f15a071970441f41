"""Messages and actors shared by the actor tests."""

from __future__ import annotations

import os

import anyio

from actors import Actor, Message, MessageContext, Request, current_message, handler


class Add(Message):
    amount: int


class GetTotal(Request[int]):
    pass


class Fail(Request[None]):
    reason: str = "boom"


class Block(Request[str]):
    """Handled by waiting until the actor's gate opens."""


class Counter(Actor):
    instances_made = 0

    def __init__(self) -> None:
        Counter.instances_made += 1
        self.total = 0
        self.started = False
        self.gate = anyio.Event()
        self.blocked = anyio.Event()

    async def on_start(self) -> None:
        self.started = True

    async def add(self, msg: Add) -> None:
        self.total += msg.amount

    async def get(self, msg: GetTotal) -> int:
        return self.total

    async def fail(self, msg: Fail) -> None:
        raise ValueError(msg.reason)

    @handler
    async def _block(self, msg: Block) -> str:
        self.blocked.set()
        await self.gate.wait()
        return "opened"


class Seen(Message):
    label: str


class Forward(Message):
    label: str


class GetSeen(Request[list[tuple[str, str | None, str | None, str | None]]]):
    pass


class Recorder(Actor):
    """Records the ids of every message it handles."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None, str | None, str | None]] = []

    def _record(self, label: str) -> MessageContext:
        context = current_message()
        assert context is not None
        self.seen.append((label, context.message_id, context.correlation_id, context.causation_id))
        return context

    async def on_seen(self, msg: Seen) -> None:
        self._record(msg.label)

    async def get(self, msg: GetSeen) -> list[tuple[str, str | None, str | None, str | None]]:
        return self.seen


class Relay(Actor):
    """Forwards to a Recorder: the forwarded message must inherit correlation and cause."""

    def __init__(self) -> None:
        self.target: object = None

    async def forward(self, msg: Forward) -> None:
        context = current_message()
        assert context is not None
        recorder = self.system.ref(Recorder, "recorder")
        await recorder.tell(Seen(label=f"{msg.label}:{context.message_id}"))


class WhoServes(Request[int]):
    """Answered with the process id of the instance that handled it."""


class Worker(Actor):
    async def who(self, msg: WhoServes) -> int:
        return os.getpid()
