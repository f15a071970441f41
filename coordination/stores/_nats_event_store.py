"""NatsEventStore: the event-sourced log in a JetStream stream, for an EventSourced strategy
whose log must outlive its process and be read from more than one machine.

Each event is one stream message on `<prefix>.<workflow id>`; an append returns once the
stream has stored it. Reading a log the process has not cached walks the workflow's subject
in the stream, one direct get per event. The latest `cached` logs are kept in memory.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
import nats.js.errors

from brokers import NatsBus, validate_subject

from ..choreography._events import WorkflowEvent
from ._event_store import LogCache

__all__ = ("NatsEventStore",)

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(WorkflowEvent).decode


class NatsEventStore:
    """The logs of every workflow in the JetStream stream `stream` (created on first use),
    one subject per workflow under `prefix`."""

    def __init__(
        self,
        bus: NatsBus,
        *,
        stream: str = "CORPS_EVENTS",
        prefix: str = "corps.events",
        cached: int = 10_000,
    ) -> None:
        validate_subject(prefix)
        self.bus = bus
        self.stream = stream
        self.prefix = prefix
        self._cache = LogCache(cached)
        self._ready = False

    async def append(self, workflow_id: str, event: msgspec.Struct) -> None:
        if not self._ready:
            await self._open()
        await self.bus.jetstream.publish(f"{self.prefix}.{workflow_id}", _encode(event))
        self._cache.appended(workflow_id, event)

    async def load(self, workflow_id: str) -> Sequence[msgspec.Struct]:
        log = self._cache.get(workflow_id)
        if log is None:
            if not self._ready:
                await self._open()
            log = await self._read(workflow_id)
            if not log:
                return ()
            self._cache.keep(workflow_id, log)
        return tuple(log)

    async def _read(self, workflow_id: str) -> list[msgspec.Struct]:
        subject = f"{self.prefix}.{workflow_id}"
        try:
            validate_subject(subject)
        except ValueError:
            return []  # no id that is not a subject token was ever appended
        js = self.bus.jetstream.context()
        log: list[msgspec.Struct] = []
        seq = 1
        while True:
            try:
                raw = await js.get_msg(self.stream, seq=seq, subject=subject, next=True)
            except nats.js.errors.NotFoundError:
                return log
            if raw.data is not None:
                log.append(_decode(raw.data))
            if raw.seq is None:
                return log
            seq = raw.seq + 1

    async def _open(self) -> None:
        await self.bus.jetstream.ensure_stream(self.stream, [f"{self.prefix}.>"])
        self._ready = True
