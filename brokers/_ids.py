"""Unique, cheap identifiers for messages and reply inboxes.

An id is a random prefix (96 bits, fixed per generator) followed by a counter, in the manner of
NATS NUIDs: unique across processes without a lookup, and one string format per call.
"""

from __future__ import annotations

import itertools
import secrets

__all__ = ("IdGenerator", "new_id")


class IdGenerator:
    """Hands out ids `<prefix><counter>`; the prefix is random per generator."""

    __slots__ = ("_counter", "prefix")

    def __init__(self) -> None:
        self.prefix = secrets.token_hex(12)
        self._counter = itertools.count(1)

    def next_id(self) -> str:
        """A new id (call the bound method: cheaper than `__call__` on the hot path)."""
        return self.prefix + str(next(self._counter))

    __call__ = next_id


new_id = IdGenerator().next_id
"""A new id from the process-wide generator."""
