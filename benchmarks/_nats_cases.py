"""corps over NatsBus beside raw nats-py doing the same, on one connection each."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec
import nats

from actors import ActorSystem
from brokers import NatsBus

from ._actor_cases import Echo, Ping, Sink

__all__ = (
    "IN_FLIGHT",
    "SAME_HEADERS",
    "nats_actor_ask",
    "nats_actor_tell",
    "raw_nats_pub_sub",
    "raw_nats_request",
)

IN_FLIGHT = 100
"""Concurrent askers in the request/reply cases."""

_PAYLOAD = msgspec.msgpack.encode(Ping(1))


SAME_HEADERS = {
    "Nats-Msg-Id": "0123456789abcdef01234567123456",
    "Corps-Correlation-Id": "0123456789abcdef01234567123456",
    "Corps-Causation-Id": "0123456789abcdef01234567123455",
}
"""Headers shaped like the three ids corps puts on every message."""


async def raw_nats_pub_sub(url: str, messages: int, headers: dict[str, str] | None = None) -> float:
    """Messages per second published and received on one nats-py connection."""
    nc = await nats.connect(url)
    try:
        received = 0
        done = asyncio.Event()

        async def count(msg: object) -> None:
            nonlocal received
            received += 1
            if received == messages:
                done.set()

        await nc.subscribe("bench.raw.pub", cb=count, pending_msgs_limit=messages + 1)
        await nc.flush()
        started = time.perf_counter()
        publish = nc.publish
        for _ in range(messages):
            await publish("bench.raw.pub", _PAYLOAD, headers=headers)
        await done.wait()
        return messages / (time.perf_counter() - started)
    finally:
        await nc.close()


async def raw_nats_request(
    url: str, requests: int, headers: dict[str, str] | None = None, in_flight: int = IN_FLIGHT
) -> float:
    """Requests per second on one nats-py connection, `in_flight` askers at a time."""
    nc = await nats.connect(url)
    try:

        async def respond(msg: Any) -> None:
            await nc.publish(msg.reply, msg.data, headers=headers)

        await nc.subscribe("bench.raw.req", cb=respond)
        await nc.flush()

        async def client(count: int) -> None:
            for _ in range(count):
                await nc.request("bench.raw.req", _PAYLOAD, timeout=10, headers=headers)

        started = time.perf_counter()
        await asyncio.gather(*(client(requests // in_flight) for _ in range(in_flight)))
        return (requests // in_flight * in_flight) / (time.perf_counter() - started)
    finally:
        await nc.close()


async def nats_actor_tell(url: str, messages: int) -> float:
    """Tells per second from one task to one actor, both on one NatsBus."""
    sink = Sink(messages)
    async with NatsBus(url) as bus, ActorSystem(bus, mailbox_size=messages + 1) as system:
        ref = await system.spawn(lambda: sink)
        await bus.flush()
        started = time.perf_counter()
        for number in range(messages):
            await ref.tell(Ping(number))
        await sink.done.wait()
        return messages / (time.perf_counter() - started)


async def nats_actor_ask(url: str, requests: int, in_flight: int = IN_FLIGHT) -> float:
    """Asks per second to one actor, `in_flight` askers at a time, on one NatsBus."""
    async with NatsBus(url) as bus, ActorSystem(bus) as system:
        ref = await system.spawn(Sink)
        await bus.flush()

        async def client(count: int) -> None:
            for number in range(count):
                await ref.ask(Echo(number), timeout=10)

        started = time.perf_counter()
        await asyncio.gather(*(client(requests // in_flight) for _ in range(in_flight)))
        return (requests // in_flight * in_flight) / (time.perf_counter() - started)
