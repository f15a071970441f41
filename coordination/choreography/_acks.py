"""Acknowledging a choreography's events, in batches.

On a bus that can lose a message, a choreography tells each event that carries an instance
forward with `ack` set to a subject of its sender's, and keeps telling it until the receiver
acknowledges it (`EventSender`). The receiver acknowledges once it has handled the event. A
reply per event would double the messages on the bus, so acknowledgements are gathered per
sender and published together, one message per sender every `ACK_TICK` seconds (a list of
message ids): under load that is one message for many events, and an acknowledgement comes at
most a tick late, far inside any resend timeout.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from actors import ActorError, ActorRef, ActorSystem, current_message_id
from brokers import Bus

__all__ = (
    "ACK_TICK",
    "Acknowledger",
    "EventSender",
    "ack_subject",
    "acknowledger",
    "decode_acks",
    "flush_acks",
)

logger = logging.getLogger("coordination")

ACK_TICK = 0.005

_encode = msgspec.msgpack.Encoder().encode
decode_acks = msgspec.msgpack.Decoder(list[str]).decode


def ack_subject(system: ActorSystem, route: str, unique: str) -> str:
    """The subject a choreography `route` takes its acknowledgements on."""
    return f"{system.prefix}.{route}.acks.{unique}"


class Acknowledger:
    """The acknowledgements one system owes, by sender subject, until the next tick."""

    def __init__(self, system: ActorSystem) -> None:
        self.bus: Bus = system.bus
        self.prefix = system.prefix
        self.allowed: dict[str, str] = {}
        """Route to the start every acknowledgement subject of that route has."""
        self.owed: dict[str, list[str]] = {}
        self.flushing: asyncio.Task[None] | None = None

    def acknowledge(self, route: str, ack: str) -> None:
        """Acknowledge the event being handled to `ack`, once the handler that calls this is
        done with it. Only a subject of `route`'s is acknowledged to: a forged event cannot
        make a service publish elsewhere."""
        allowed = self.allowed.get(route)
        if allowed is None:
            allowed = self.allowed[route] = f"{self.prefix}.{route}.acks."
        if not ack.startswith(allowed):
            return
        message_id = current_message_id()
        if message_id is None:
            return
        owed = self.owed.get(ack)
        if owed is None:
            owed = self.owed[ack] = []
        owed.append(message_id)
        if self.flushing is None:
            self.flushing = asyncio.get_running_loop().create_task(self._flush_soon())

    async def _flush_soon(self) -> None:
        try:
            await asyncio.sleep(ACK_TICK)
        finally:
            self.flushing = None
            await self.flush()

    async def flush(self) -> None:
        owed, self.owed = self.owed, {}
        for subject, message_ids in owed.items():
            try:
                await self.bus.publish(subject, _encode(message_ids))
            except Exception as exc:  # the senders will send those events again
                logger.warning("acknowledgements to %s not sent: %r", subject, exc)


def acknowledger(system: ActorSystem) -> Acknowledger:
    """The one Acknowledger of `system` (its receivers share it, whatever the sender)."""
    return system.attached(Acknowledger, lambda: Acknowledger(system))


async def flush_acks(system: ActorSystem) -> None:
    """Send what `system` owes now (a choreography that stops leaves nothing behind)."""
    found = system.attached_if(Acknowledger)
    if found is None:
        return
    flushing = found.flushing
    if flushing is not None:
        flushing.cancel()
        await asyncio.gather(flushing, return_exceptions=True)
    await found.flush()


SWEEP = 0.05
"""How often an EventSender looks for events due again: a resend comes up to this late."""


@dataclass(slots=True)
class _Unacked:
    to: ActorRef[Any]
    event: Any
    correlation_id: str
    timeout: float
    attempt: int = 1


class EventSender:
    """Tells events until they are acknowledged (`acknowledge`): an event without its
    acknowledgement `timeout` seconds after a tell is told again with the same message id, up
    to `attempts` tells; then `on_give_up(message_id, reason)`.

    Lighter than a CommandPort, since an event has no reply to decode and its resend need not
    be precise: a send is a dict entry and a list append in a coarse time bucket, an
    acknowledgement a dict pop; the buckets are swept every `SWEEP` seconds and entries found
    acknowledged meanwhile are skipped there.
    """

    def __init__(self, attempts: int, on_give_up: Callable[[str, str], None]) -> None:
        self.attempts = attempts
        self.on_give_up = on_give_up
        self._unacked: dict[str, _Unacked] = {}
        self._due: dict[int, list[tuple[str, int]]] = {}
        """Sweep number to the (message id, attempt) told then and due at that sweep."""
        self._sweeps: list[int] = []
        """The sweep numbers that have a bucket, as a heap."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sweeper: asyncio.Task[None] | None = None

    async def send(
        self, to: ActorRef[Any], event: Any, message_id: str, correlation_id: str, timeout: float
    ) -> None:
        entry = _Unacked(to, event, correlation_id, timeout)
        self._unacked[message_id] = entry
        await self._tell(message_id, entry)

    def acknowledge(self, message_ids: list[str]) -> None:
        unacked = self._unacked
        for message_id in message_ids:
            unacked.pop(message_id, None)

    async def close(self) -> None:
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None:
            sweeper.cancel()
            await asyncio.gather(sweeper, return_exceptions=True)
        self._unacked.clear()
        self._due.clear()
        self._sweeps.clear()

    async def _tell(self, message_id: str, entry: _Unacked) -> None:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        sweep = int((loop.time() + entry.timeout) / SWEEP) + 1
        bucket = self._due.get(sweep)
        if bucket is None:
            bucket = self._due[sweep] = []
            heapq.heappush(self._sweeps, sweep)
        bucket.append((message_id, entry.attempt))
        if self._sweeper is None:
            self._sweeper = loop.create_task(self._sweep())
        try:
            await entry.to.tell(
                entry.event, correlation_id=entry.correlation_id, message_id=message_id
            )
        except ActorError as exc:  # a full mailbox, a stopped actor: told again when due
            logger.warning("%s not told (%r): told again in %.1f s", message_id, exc, entry.timeout)

    async def _sweep(self) -> None:
        assert self._loop is not None
        loop, due, sweeps, unacked = self._loop, self._due, self._sweeps, self._unacked
        try:
            while unacked:
                await asyncio.sleep(SWEEP)
                now = loop.time() / SWEEP
                while sweeps and sweeps[0] <= now:
                    for message_id, attempt in due.pop(heapq.heappop(sweeps)):
                        entry = unacked.get(message_id)
                        if entry is None or entry.attempt != attempt:
                            continue  # acknowledged, or told again since
                        if attempt >= self.attempts:
                            del unacked[message_id]
                            self.on_give_up(message_id, f"no acknowledgement after {attempt} tells")
                            continue
                        entry.attempt += 1
                        await self._tell(message_id, entry)
        finally:
            self._sweeper = None
            if not unacked:
                due.clear()
                sweeps.clear()
