"""SqliteEventStore: the event-sourced log in an SQLite file, for an EventSourced strategy whose
log must outlive its process on one machine (no server to run).

One row per event, in the order appended, in a WAL database with `synchronous=NORMAL`: an
appended event survives the process being killed; a power loss can lose the last few. A new
EventSourced on the same file answers `status` and `result` for the instances logged before.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import msgspec

from ..choreography._events import WorkflowEvent
from ._event_store import LogCache
from ._sqlite import connect

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
        self._db = connect(self.path, _SCHEMA)
        self._cache = LogCache(cached)

    def close(self) -> None:
        self._db.close()

    async def append(self, workflow_id: str, event: msgspec.Struct) -> None:
        self._db.execute(
            "INSERT INTO corps_events (workflow_id, event) VALUES (?, ?)",
            (workflow_id, _encode(event)),
        )
        self._cache.appended(workflow_id, event)

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
            self._cache.keep(workflow_id, log)
        return tuple(log)
