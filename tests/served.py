"""What the `corps serve` tests host: the order-placement services, and a service whose
handler takes a while, to see shutdown drain it."""

from __future__ import annotations

import asyncio

from actors import Actor, ActorSystem, Message, Request

from .service_host import open_shop


class Nap(Request[str]):
    seconds: float


class Begun(Message):
    pass


class Witness(Actor):
    """Lives in the test: told when a nap begins."""

    def __init__(self) -> None:
        self.begun = asyncio.Event()

    async def on_begun(self, msg: Begun) -> None:
        self.begun.set()


class Sleeper(Actor):
    def __init__(self, system: ActorSystem) -> None:
        self.witness = system.ref(Witness, "witness")

    async def nap(self, msg: Nap) -> str:
        await self.witness.tell(Begun())
        await asyncio.sleep(msg.seconds)
        return "rested"


async def build(system: ActorSystem) -> None:
    await open_shop(system)
    await system.spawn(lambda: Sleeper(system), name="sleeper")


NOT_A_FUNCTION = 3
"""For the test of a target that cannot be called."""
