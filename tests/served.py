"""What the `corps serve` tests host: the order-placement services, and a service whose
handler takes a while, to see shutdown drain it."""

from __future__ import annotations

import asyncio
import contextlib

from actors import Actor, ActorSystem, Message, Request
from benchmarks._scale_roles import CHOREOGRAPHIES
from coordination.scenarios.order_placement import order_workflow

from .service_host import open_shop

__all__ = ("CHOREOGRAPHIES", "Begun", "Nap", "Sleeper", "Witness", "build", "take_part")


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


async def take_part(system: ActorSystem) -> contextlib.AsyncExitStack:
    """The order services, taking part in order placement under every choreography: their
    adapters run here, beside them, for the starters that say `remote_sidecars=True`."""
    await open_shop(system)
    strategies = contextlib.AsyncExitStack()
    for strategy in CHOREOGRAPHIES.values():
        await strategies.enter_async_context(strategy(system, order_workflow, remote_sidecars=True))
    return strategies


NOT_A_FUNCTION = 3
"""For the test of a target that cannot be called."""
