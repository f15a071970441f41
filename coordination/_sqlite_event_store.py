"""SqliteEventStore: the event-sourced log in an SQLite file, for an EventSourced strategy whose
log must outlive its process on one machine (no server to run).

One row per event, in the order appended, in a WAL database with `synchronous=NORMAL`: an
appended event survives the process being killed; a power loss can lose the last few. A new
EventSourced on the same file answers `status` and `result` for the instances logged before.
"""

from __future__ import annotations

import sqlite3
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import msgspec

from ._events import WorkflowEvent

__all__ = ("SqliteEventStore",)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS corps_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    workflow_id TEXT NOT NULL,
    event BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS corps_events_by_workflow ON corps_events (workflow_id, seq);
"""

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(WorkflowEvent).decode


class SqliteEventStore:
    """The logs of every workflow in the SQLite file at `path` (created if need be).

    The latest `cached` logs are also kept in memory, so that replaying a running instance's
    status reads no disk.
    """

    def __init__(self, path: str | Path, *, cached: int = 10_000) -> None:
        self.path = Path(path)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._cached = cached
        self._cache: OrderedDict[str, list[msgspec.Struct]] = OrderedDict()

    def close(self) -> None:
        self._db.close()

    async def append(self, workflow_id: str, event: msgspec.Struct) -> None:
        self._db.execute(
            "INSERT INTO corps_events (workflow_id, event) VALUES (?, ?)",
            (workflow_id, _encode(event)),
        )
        log = self._cache.get(workflow_id)
        if log is not None:
            log.append(event)

    async def load(self, workflow_id: str) -> Sequence[msgspec.Struct]:
        log = self._cache.get(workflow_id)
        if log is None:
            rows = self._db.execute(
                "SELECT event FROM corps_events WHERE workflow_id = ? ORDER BY seq",
                (workflow_id,),
            ).fetchall()
            log = [_decode(row[0]) for row in rows]
            if not log:
                return ()
            self._cache[workflow_id] = log
            if len(self._cache) > self._cached:
                self._cache.popitem(last=False)
        return tuple(log)
