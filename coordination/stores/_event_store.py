"""Where event sourcing keeps its log of workflow events. Memory is the default; durable logs
plug in behind the same protocol."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Protocol

import msgspec

__all__ = ("EventStore", "LogCache", "MemoryEventStore")


class EventStore(Protocol):
    async def append(self, workflow_id: str, event: msgspec.Struct) -> None:
        """Add `event` to the end of `workflow_id`'s log."""

    async def load(self, workflow_id: str) -> Sequence[msgspec.Struct]:
        """`workflow_id`'s log, oldest first (empty when it has none)."""


class MemoryEventStore:
    """Logs in a dict of lists: fast, and gone with the process. The logs of the latest
    `keep` workflows are kept."""

    def __init__(self, keep: int = 100_000) -> None:
        self.keep = keep
        self._logs: OrderedDict[str, list[msgspec.Struct]] = OrderedDict()

    async def append(self, workflow_id: str, event: msgspec.Struct) -> None:
        log = self._logs.get(workflow_id)
        if log is not None:
            log.append(event)
            return
        self._logs[workflow_id] = [event]
        if len(self._logs) > self.keep:
            self._logs.popitem(last=False)

    async def load(self, workflow_id: str) -> Sequence[msgspec.Struct]:
        return tuple(self._logs.get(workflow_id, ()))

    def __len__(self) -> int:
        return len(self._logs)


class LogCache:
    """The latest `size` logs a durable event store has read, so that replaying a running
    instance's status reads nothing from disk or the server."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._logs: OrderedDict[str, list[msgspec.Struct]] = OrderedDict()

    def get(self, workflow_id: str) -> list[msgspec.Struct] | None:
        return self._logs.get(workflow_id)

    def appended(self, workflow_id: str, event: msgspec.Struct) -> None:
        """Keep a cached log up to date (one not cached is read in full when next asked)."""
        log = self._logs.get(workflow_id)
        if log is not None:
            log.append(event)

    def keep(self, workflow_id: str, log: list[msgspec.Struct]) -> None:
        self._logs[workflow_id] = log
        if len(self._logs) > self.size:
            self._logs.popitem(last=False)
