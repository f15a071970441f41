"""The SQLite connection the durable stores use."""

from __future__ import annotations

import sqlite3
from pathlib import Path

__all__ = ("connect",)


def connect(path: Path, schema: str) -> sqlite3.Connection:
    """A connection to the file at `path` in autocommit, WAL mode with `synchronous=NORMAL`:
    a committed write survives the process being killed, and a power loss can lose the last
    few. `schema` is run once (CREATE ... IF NOT EXISTS)."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(schema)
    return db
