"""SqliteStateStore: workflow instances in an SQLite file, for a coordinator that must outlive
its process on one machine (no server to run).

Each save writes the instance's whole state as one row (msgpack), in a WAL database with
`synchronous=NORMAL`: a committed save survives the process being killed, and a power loss
can lose at most the last few. Saves run on the event loop's thread; they take tens of
microseconds, which is what durability costs per step (memory stays the default for speed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .._status import Outcome
from ..definition._workflow import Workflow
from ._sqlite import connect
from ._state_codec import StateCodec
from ._store import InstanceState

__all__ = ("SqliteStateStore",)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS corps_states (
    workflow TEXT NOT NULL,
    workflow_id TEXT NOT NULL,
    running INTEGER NOT NULL,
    state BLOB NOT NULL,
    PRIMARY KEY (workflow, workflow_id)
)
"""


class SqliteStateStore:
    """The instances of `workflow` in the SQLite file at `path` (created if need be); several
    workflows may share one file."""

    def __init__(self, path: str | Path, workflow: Workflow[Any]) -> None:
        self.path = Path(path)
        self.workflow = workflow.name
        self._codec = StateCodec(workflow)
        self._db = connect(self.path, _SCHEMA)

    def close(self) -> None:
        self._db.close()

    async def save(self, state: InstanceState) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO corps_states VALUES (?, ?, ?, ?)",
            (
                self.workflow,
                state.workflow_id,
                int(state.outcome is Outcome.RUNNING),
                self._codec.encode(state),
            ),
        )

    async def load(self, workflow_id: str) -> InstanceState | None:
        row = self._db.execute(
            "SELECT state FROM corps_states WHERE workflow = ? AND workflow_id = ?",
            (self.workflow, workflow_id),
        ).fetchone()
        return None if row is None else self._codec.decode(workflow_id, row[0])

    async def running(self) -> list[InstanceState]:
        rows = self._db.execute(
            "SELECT workflow_id, state FROM corps_states WHERE workflow = ? AND running = 1",
            (self.workflow,),
        ).fetchall()
        return [self._codec.decode(workflow_id, data) for workflow_id, data in rows]
