"""Where `@idempotent` handlers remember the replies they gave, when memory is not enough.

By default an idempotent handler remembers the message ids it handled in the actor instance:
gone when the instance is replaced after a crash or the process restarts. A service whose
effects outlive it (a database, a payment provider) gives its instances an `IdempotencyStore`
(`actor.idempotency = store`): then a command resent after a restart is still answered with
its first reply, without acting again.

A reply is remembered after the handler returns: a process killed between the effect and the
`remember` can still act twice on a resend. Closing that gap takes the effect and the record
in one transaction, which only the service's own database can give.
"""

from __future__ import annotations

import sqlite3
from collections import OrderedDict
from pathlib import Path
from typing import Protocol

__all__ = ("IdempotencyStore", "MemoryIdempotencyStore", "SqliteIdempotencyStore")


class IdempotencyStore(Protocol):
    async def recall(self, key: str) -> bytes | None:
        """The reply remembered for `key` (msgpack), or None."""

    async def remember(self, key: str, reply: bytes) -> None:
        """Remember `reply` for `key`."""


class MemoryIdempotencyStore:
    """The latest `keep` replies in a dict: outlives an actor instance (share the store between
    the instances a factory makes), not the process."""

    def __init__(self, keep: int = 10_000) -> None:
        self.keep = keep
        self._replies: OrderedDict[str, bytes] = OrderedDict()

    async def recall(self, key: str) -> bytes | None:
        return self._replies.get(key)

    async def remember(self, key: str, reply: bytes) -> None:
        self._replies[key] = reply
        if len(self._replies) > self.keep:
            self._replies.popitem(last=False)

    def __len__(self) -> int:
        return len(self._replies)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS corps_replies (
    actor TEXT NOT NULL,
    key TEXT NOT NULL,
    reply BLOB NOT NULL,
    PRIMARY KEY (actor, key)
)
"""


class SqliteIdempotencyStore:
    """Replies in the SQLite file at `path` (created if need be), under `actor` (several actors
    may share one file). WAL with `synchronous=NORMAL`: a reply remembered survives the process
    being killed. Nothing is forgotten; delete old rows yourself if the file must stay small."""

    def __init__(self, path: str | Path, actor: str) -> None:
        self.path = Path(path)
        self.actor = actor
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    async def recall(self, key: str) -> bytes | None:
        row = self._db.execute(
            "SELECT reply FROM corps_replies WHERE actor = ? AND key = ?", (self.actor, key)
        ).fetchone()
        return None if row is None else bytes(row[0])

    async def remember(self, key: str, reply: bytes) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO corps_replies VALUES (?, ?, ?)", (self.actor, key, reply)
        )
