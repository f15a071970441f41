"""Acknowledging a choreography's events, in batches.

On a bus that can lose a message, a choreography tells each event that carries an instance
forward with `ack` set to a subject of its sender's, and keeps sending it until the receiver
acknowledges it (`CommandPort.send_event`). The receiver acknowledges once it has handled the
event. A reply per event would double the messages on the bus, so acknowledgements are
gathered per sender and published together, one message per sender every `ACK_TICK` seconds
(a list of message ids): under load that is one message for many events, and an
acknowledgement comes at most a tick late, far inside any resend timeout.
"""

from __future__ import annotations

import asyncio
import logging
import weakref

import msgspec

from actors import ActorSystem, current_message_id
from brokers import Bus

__all__ = ("ACK_TICK", "ack_subject", "acknowledge", "decode_acks", "flush_acks")

logger = logging.getLogger("coordination")

ACK_TICK = 0.005

_encode = msgspec.msgpack.Encoder().encode
decode_acks = msgspec.msgpack.Decoder(list[str]).decode


def ack_subject(system: ActorSystem, route: str, unique: str) -> str:
    """The subject a choreography `route` takes its acknowledgements on."""
    return f"{system.prefix}.{route}.acks.{unique}"


class _Batcher:
    """The acknowledgements one system owes, by sender subject, until the next tick."""

    def __init__(self, system: ActorSystem) -> None:
        self.bus: Bus = system.bus
        self.prefix = system.prefix
        self.allowed: dict[str, str] = {}
        """Route to the start every acknowledgement subject of that route has."""
        self.owed: dict[str, list[str]] = {}
        self.flushing: asyncio.Task[None] | None = None

    def add(self, route: str, subject: str, message_id: str) -> None:
        allowed = self.allowed.get(route)
        if allowed is None:
            allowed = self.allowed[route] = f"{self.prefix}.{route}.acks."
        if not subject.startswith(allowed):
            return  # a forged event: nothing is published for it
        owed = self.owed.get(subject)
        if owed is None:
            owed = self.owed[subject] = []
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


_batchers: weakref.WeakKeyDictionary[ActorSystem, _Batcher] = weakref.WeakKeyDictionary()


def acknowledge(system: ActorSystem, route: str, ack: str) -> None:
    """Acknowledge the event being handled, if its sender asked to (`ack`), once the handler
    that calls this is done with it. Only a subject of `route`'s is acknowledged to: a
    forged event cannot make a service publish elsewhere."""
    if not ack:
        return
    message_id = current_message_id()
    if message_id is None:
        return
    batcher = _batchers.get(system)
    if batcher is None:
        batcher = _batchers[system] = _Batcher(system)
    batcher.add(route, ack, message_id)


async def flush_acks(system: ActorSystem) -> None:
    """Send what `system` owes now (a choreography that stops leaves nothing behind)."""
    batcher = _batchers.get(system)
    if batcher is None:
        return
    flushing = batcher.flushing
    if flushing is not None:
        flushing.cancel()
        await asyncio.gather(flushing, return_exceptions=True)
    await batcher.flush()
