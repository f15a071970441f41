"""What the `corps serve` tests host: the order-placement services, and a service whose
handler takes a while, to see shutdown drain it."""

from __future__ import annotations

import asyncio
import contextlib

from actors import Actor, ActorSystem, Message, Request
from benchmarks._scale_roles import CHOREOGRAPHIES
from coordination.scenarios.order_placement import (
    FraudService,
    order_workflow,
    screened_order_workflow,
)

from .service_host import open_shop

__all__ = (
    "CHOREOGRAPHIES",
    "Begun",
    "Nap",
    "Sleeper",
    "Witness",
    "broken",
    "build",
    "take_part",
    "take_part_durably",
    "take_part_screened",
    "take_part_slowly",
)


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


async def take_part(
    system: ActorSystem, *, durable_events: bool = False, payment_delay: float = 0.0
) -> contextlib.AsyncExitStack:
    """The order services, taking part in order placement under every choreography: their
    adapters run here, beside them, for the starters that say `remote_sidecars=True` (and
    `durable_events`, as this host does when told so)."""
    await open_shop(system, payment_delay=payment_delay)
    strategies = contextlib.AsyncExitStack()
    for strategy in CHOREOGRAPHIES.values():
        await strategies.enter_async_context(
            strategy(system, order_workflow, remote_sidecars=True, durable_events=durable_events)
        )
    return strategies


async def take_part_screened(system: ActorSystem) -> contextlib.AsyncExitStack:
    """The order services and the fraud screen, taking part in the screened order placement
    (a branch, then the charge and the reservation in parallel) under every choreography,
    their adapters beside them."""
    await open_shop(system)
    await system.spawn(FraudService, name="fraud")
    strategies = contextlib.AsyncExitStack()
    for strategy in CHOREOGRAPHIES.values():
        await strategies.enter_async_context(
            strategy(system, screened_order_workflow, remote_sidecars=True)
        )
    return strategies


async def take_part_durably(system: ActorSystem) -> contextlib.AsyncExitStack:
    """`take_part`, the events kept in JetStream until a host has handled them; each
    charge takes 20 ms, so that a host killed mid-run has many orders in hand."""
    return await take_part(system, durable_events=True, payment_delay=SLOW_PAYMENT)


SLOW_PAYMENT = 0.02


async def broken(system: ActorSystem) -> None:
    """A build function that fails, as one whose database is down would."""
    raise RuntimeError("no stock database")


NOT_A_FUNCTION = 3
"""For the test of a target that cannot be called."""


async def take_part_slowly(system: ActorSystem) -> contextlib.AsyncExitStack:
    return await take_part(system, payment_delay=SLOW_PAYMENT)
