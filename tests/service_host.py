"""A second OS process hosting service actors on a NATS server, for the cross-process tests.

    python -m tests.service_host NATS_URL KIND NAME [INSTANCES]

It prints "ready" once its actors listen, and shuts down cleanly on SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from actors import Actor, ActorSystem
from brokers import NatsBus
from coordination.definition import Rejected
from coordination.scenarios.order_placement import (
    Charge,
    Charged,
    EmailService,
    FulfillmentService,
    OrderService,
    PaymentService,
)

from .actors_fixtures import Counter, Worker

SERVICES: dict[str, type[Actor]] = {"counter": Counter, "worker": Worker}


class SlowPayment(PaymentService):
    """A payment service that takes `delay` seconds over each charge."""

    def __init__(self, declined: frozenset[str], delay: float) -> None:
        super().__init__(declined)
        self.delay = delay

    async def charge(self, msg: Charge) -> Charged | Rejected:
        await asyncio.sleep(self.delay)
        return await super().charge(msg)


async def open_shop(system: ActorSystem, *, payment_delay: float = 0.0) -> None:
    """The order-placement services (kind `shop`): mallory's card is declined, and `rare`
    items are out of stock; a `payment_delay` keeps orders in flight for a while."""
    declined = frozenset({"mallory"})
    await system.spawn(OrderService, name="order")
    await system.spawn(lambda: SlowPayment(declined, payment_delay), name="payment")
    stock = {"book": 10**6, "rare": 0}
    await system.spawn(lambda: FulfillmentService(stock=stock), name="fulfillment")
    await system.spawn(EmailService, name="email")


async def serve(url: str, kind: str, name: str, instances: int) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with NatsBus(url) as bus, ActorSystem(bus) as system:
        if kind == "shop":
            await open_shop(system)
        else:
            await system.spawn(SERVICES[kind], name=name, instances=instances)
        await bus.flush()  # the server knows our subscriptions before we say we are ready
        print("ready", flush=True)
        await stop.wait()


if __name__ == "__main__":
    url, kind, name, *rest = sys.argv[1:]
    asyncio.run(serve(url, kind, name, int(rest[0]) if rest else 1))
