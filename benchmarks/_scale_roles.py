"""The processes of the scale-out benchmark (`python -m benchmarks scale`): hosts and
starters, for corps and for the same steps hand-written on raw nats-py.

    python -m benchmarks._scale_roles raw-host URL
    python -m benchmarks._scale_roles start URL STRATEGY CLIENTS SECONDS
    python -m benchmarks._scale_roles raw-start URL CLIENTS SECONDS

A corps host is `corps serve benchmarks._scale_roles:host`: the order-placement services,
taking part in order placement under every choreography (the adapters beside the services).
A host says "ready" (corps serve: its readiness line) once it listens; a starter says
"ready", waits for a line on stdin, runs a closed loop of CLIENTS concurrent clients for
SECONDS, and prints `{"completed": n, "seconds": s}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import nats
from nats.aio.msg import Msg

from actors import ActorSystem
from brokers import NatsBus
from coordination import (
    EventSourced,
    FrontController,
    Mediator,
    QueryAll,
    StampCoupled,
    Strategy,
)
from coordination.scenarios.order_placement import (
    EmailService,
    FulfillmentService,
    OrderService,
    PaymentService,
    PlaceOrder,
    order_workflow,
)

__all__ = ("CHOREOGRAPHIES", "RAW_STEPS", "STRATEGIES", "host")

CHOREOGRAPHIES: dict[str, Callable[..., Strategy[PlaceOrder]]] = {
    "event_sourced": EventSourced,
    "front_controller": FrontController,
    "query_all": QueryAll,
    "stamp_coupled": StampCoupled,
}
STRATEGIES = ("mediator", *CHOREOGRAPHIES)

RAW_STEPS = (("order", True), ("payment", True), ("fulfillment", True), ("email", False))
"""The raw floor's hops, as order placement's: three answered requests and the told ones
(the confirmation and the mark, told to the same two services, counted as one told hop
each to email and order)."""


async def host(system: ActorSystem) -> contextlib.AsyncExitStack:
    """A corps host: the order services, taking part in order placement (`corps serve`)."""
    await system.spawn(OrderService, name="order")
    await system.spawn(PaymentService, name="payment")
    await system.spawn(lambda: FulfillmentService(stock={"book": 10**12}), name="fulfillment")
    await system.spawn(EmailService, name="email")
    taking_part = contextlib.AsyncExitStack()
    for strategy in CHOREOGRAPHIES.values():
        await taking_part.enter_async_context(
            strategy(system, order_workflow, remote_sidecars=True)
        )
    return taking_part


def _strategy(system: ActorSystem, name: str) -> Strategy[PlaceOrder]:
    if name == "mediator":
        return Mediator(system, order_workflow)
    return CHOREOGRAPHIES[name](system, order_workflow, remote_sidecars=True)


async def _closed_loop(clients: int, seconds: float, one: Callable[[int], Awaitable[None]]) -> None:
    """Say ready, wait for the go, run `clients` loops of `one` for `seconds`, print."""
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    completed = 0
    began = time.perf_counter()
    deadline = began + seconds

    async def client(number: int) -> None:
        nonlocal completed
        clock = time.perf_counter
        order = number * 10**9
        while clock() < deadline:
            order += 1
            await one(order)
            completed += 1

    await asyncio.gather(*(client(n) for n in range(clients)))
    print(json.dumps({"completed": completed, "seconds": time.perf_counter() - began}), flush=True)


async def start(url: str, strategy: str, clients: int, seconds: float) -> None:
    """A corps starter: orders under `strategy`, each awaited to its end."""
    async with (
        NatsBus(url) as bus,
        ActorSystem(bus) as system,
        _strategy(system, strategy) as coordinator,
    ):

        async def one(number: int) -> None:
            placed = PlaceOrder(f"o{number}", "ann", "book", 1, 1000)
            result = await coordinator.result(await coordinator.start(placed), timeout=30)
            if result.outcome.value != "completed":
                raise RuntimeError(f"an order ended {result.outcome.value}: {result.failure}")

        await _closed_loop(clients, seconds, one)


class _Hop(msgspec.Struct, array_like=True):
    order: int
    step: int


async def raw_host(url: str) -> None:
    """The raw floor's services: one nats-py queue subscription per hop, msgpack each way."""
    nc = await nats.connect(url)
    encode, decode = msgspec.msgpack.encode, msgspec.msgpack.Decoder(_Hop).decode

    async def answer(msg: Msg) -> None:
        hop = decode(msg.data)
        if msg.reply:
            await msg.respond(encode(_Hop(hop.order, hop.step + 1)))

    for service, _ in RAW_STEPS:
        await nc.subscribe(f"bench.scale.{service}", queue=service, cb=answer)
    await nc.flush()
    print("ready", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await nc.drain()


async def raw_start(url: str, clients: int, seconds: float) -> None:
    """The raw floor's starter: the hops of one order in a row, requests and tells."""
    nc = await nats.connect(url)
    encode, decode = msgspec.msgpack.encode, msgspec.msgpack.Decoder(_Hop).decode

    async def one(number: int) -> None:
        for step, (service, answered) in enumerate(RAW_STEPS):
            data = encode(_Hop(number, step))
            if answered:
                decode((await nc.request(f"bench.scale.{service}", data, timeout=30)).data)
            else:
                await nc.publish(f"bench.scale.{service}", data)
                await nc.publish("bench.scale.order", data)  # the mark, told too

    try:
        await _closed_loop(clients, seconds, one)
    finally:
        await nc.close()


def main(argv: list[str]) -> None:
    role, url, *rest = argv
    runs: dict[str, Callable[[], Any]] = {
        "raw-host": lambda: raw_host(url),
        "start": lambda: start(url, rest[0], int(rest[1]), float(rest[2])),
        "raw-start": lambda: raw_start(url, int(rest[0]), float(rest[1])),
    }
    asyncio.run(runs[role]())


if __name__ == "__main__":
    main(sys.argv[1:])
