"""NatsStateStore: workflow instances in a JetStream key-value bucket, for coordinators that
must outlive their process and may run on more than one machine.

Each instance is one key, `s.<workflow id>`, holding its whole state (msgpack, as the SQLite
store writes it). A running instance also has a marker key, `r.<workflow id>`, deleted when it
ends, so that a coordinator starting up lists what to resume without reading every instance.
A save returns once JetStream has stored it (one round trip to the server); with file storage
and the server's `sync_interval: always` it survives the server being killed, and with
`replicas=3` on a cluster the loss of a node.
"""

from __future__ import annotations

import re
from typing import Any

import nats.js.errors
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KeyValue

from brokers import NatsBus

from .._status import Outcome
from ..definition._workflow import Workflow
from ._state_codec import StateCodec
from ._store import InstanceState

__all__ = ("NatsStateStore",)

_BUCKET = re.compile(r"^[A-Za-z0-9_-]+$")
_KEY = re.compile(r"^[-/_=.A-Za-z0-9]+$")


class NatsStateStore:
    """The instances of `workflow` in the JetStream key-value bucket `bucket` (created if need
    be; `corps-states-<workflow name>` by default) on `bus`'s server."""

    def __init__(
        self,
        bus: NatsBus,
        workflow: Workflow[Any],
        *,
        bucket: str | None = None,
        replicas: int = 1,
    ) -> None:
        self.bus = bus
        self.bucket = bucket or f"corps-states-{workflow.name}"
        if not _BUCKET.match(self.bucket):
            raise ValueError(
                f"bucket {self.bucket!r}: a key-value bucket name takes letters, digits, "
                "'-' and '_' only; pass bucket= for this workflow"
            )
        self.replicas = replicas
        self._codec = StateCodec(workflow)
        self._kv: KeyValue | None = None
        self._marked: set[str] = set()
        """The running markers this store knows exist."""

    async def save(self, state: InstanceState) -> None:
        kv = self._kv or await self._open()
        workflow_id = _key(state.workflow_id)
        await kv.put(f"s.{workflow_id}", self._codec.encode(state))
        if state.outcome is Outcome.RUNNING:
            if workflow_id not in self._marked:
                await kv.put(f"r.{workflow_id}", b"")
                self._marked.add(workflow_id)
        elif workflow_id in self._marked:
            await kv.delete(f"r.{workflow_id}")
            self._marked.discard(workflow_id)

    async def load(self, workflow_id: str) -> InstanceState | None:
        kv = self._kv or await self._open()
        if not _KEY.match(workflow_id):
            return None
        try:
            entry = await kv.get(f"s.{workflow_id}")
        except nats.js.errors.KeyNotFoundError:
            return None
        return None if entry.value is None else self._codec.decode(workflow_id, entry.value)

    async def running(self) -> list[InstanceState]:
        kv = self._kv or await self._open()
        # A watch on the markers alone: nats-py's keys(filters=...) reads every key and
        # filters by substring.
        watcher = await kv.watch("r.>", ignore_deletes=True, meta_only=True)
        keys = []
        try:
            async for entry in watcher:
                if entry is None:  # the end of what is stored now
                    break
                keys.append(entry.key)
        finally:
            await watcher.stop()  # type: ignore[no-untyped-call]  # nats-py leaves it untyped
        states = []
        for key in keys:
            workflow_id = key[2:]
            self._marked.add(workflow_id)
            state = await self.load(workflow_id)
            if state is not None and state.outcome is Outcome.RUNNING:
                states.append(state)
        return states

    async def _open(self) -> KeyValue:
        js = self.bus.jetstream.context()
        try:
            self._kv = await js.key_value(self.bucket)
        except nats.js.errors.BucketNotFoundError:
            config = KeyValueConfig(
                bucket=self.bucket,
                history=1,
                storage=StorageType.FILE,
                replicas=self.replicas,
                description="corps workflow instances",
            )
            self._kv = await js.create_key_value(config)
        return self._kv


def _key(workflow_id: str) -> str:
    if not _KEY.match(workflow_id):
        raise ValueError(f"workflow id {workflow_id!r} cannot be a key-value key")
    return workflow_id
