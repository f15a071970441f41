"""Dead letters: messages that could not be delivered or handled, kept (bounded) with why."""

from __future__ import annotations

import enum
import time
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass

from brokers import Headers

__all__ = ("DeadLetter", "DeadLetterReason", "DeadLetters")

_KEPT_BYTES = 4096
"""A dead letter keeps at most this much of its payload, so the store stays bounded."""


class DeadLetterReason(enum.Enum):
    """Why a message became a dead letter."""

    UNDECODABLE = "undecodable"
    OVERSIZED = "oversized"
    UNHANDLED = "unhandled"
    HANDLER_ERROR = "handler_error"
    ACTOR_STOPPED = "actor_stopped"
    MAILBOX_FULL = "mailbox_full"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One message that was not handled, and why."""

    reason: DeadLetterReason
    actor: str
    subject: str
    data: bytes
    """The payload, cut to its first 4 KiB; `size` is the full length."""
    size: int
    headers: Headers | None
    error: str | None
    timestamp: float


class DeadLetters:
    """A bounded store of the latest dead letters, with a count per reason of all of them."""

    def __init__(self, capacity: int = 1000) -> None:
        if capacity <= 0:
            raise ValueError("capacity must be positive")
        self._letters: deque[DeadLetter] = deque(maxlen=capacity)
        self.counts: Counter[DeadLetterReason] = Counter()
        """Dead letters ever recorded, by reason (kept letters and evicted ones)."""
        self.by_actor: Counter[tuple[str, DeadLetterReason]] = Counter()
        """The same, by actor and reason."""

    def record(
        self,
        reason: DeadLetterReason,
        actor: str,
        subject: str,
        data: bytes,
        headers: Headers | None,
        error: BaseException | str | None = None,
    ) -> DeadLetter:
        letter = DeadLetter(
            reason,
            actor,
            subject,
            data[:_KEPT_BYTES],
            len(data),
            dict(headers) if headers else None,
            None if error is None else _describe(error),
            time.time(),
        )
        self._letters.append(letter)
        self.counts[reason] += 1
        self.by_actor[actor, reason] += 1
        return letter

    def __iter__(self) -> Iterator[DeadLetter]:
        return iter(tuple(self._letters))

    def __len__(self) -> int:
        return len(self._letters)

    @property
    def total(self) -> int:
        """Dead letters ever recorded."""
        return self.counts.total()

    def clear(self) -> None:
        self._letters.clear()
        self.counts.clear()
        self.by_actor.clear()


def _describe(error: BaseException | str) -> str:
    if isinstance(error, str):
        return error
    return f"{type(error).__name__}: {error}"
