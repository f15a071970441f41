"""Exceptions raised by the buses. Every corps exception derives from `CorpsError`."""

from __future__ import annotations

__all__ = (
    "BusClosedError",
    "BusError",
    "BusTimeoutError",
    "CorpsError",
    "InvalidHeaderError",
    "InvalidSubjectError",
    "MaxPayloadError",
    "NoRespondersError",
    "PermissionDeniedError",
    "SlowConsumerError",
)


class CorpsError(Exception):
    """Root of every exception corps raises on purpose."""


class BusError(CorpsError):
    """Root of the errors raised by a bus."""


class InvalidSubjectError(BusError, ValueError):
    """Raised when a subject, pattern or queue group name breaks the NATS subject rules."""


class InvalidHeaderError(BusError, ValueError):
    """Raised when a header name or value cannot travel on NATS (empty name, `:`, whitespace
    in a name, a line break in a value)."""


class MaxPayloadError(BusError, ValueError):
    """Raised when a payload is larger than the bus accepts."""


class NoRespondersError(BusError, LookupError):
    """Raised at once by a request when no subscriber listens on its subject."""


class BusTimeoutError(BusError, TimeoutError):
    """Raised when a request gets no reply within its timeout."""


class SlowConsumerError(BusError):
    """Raised when a subscription's pending queue is full and its policy refuses the message.

    Also raised instead of blocking forever when a subscription's own callback publishes to
    itself while its queue is full: the callback is the only task that could make room.
    """


class BusClosedError(BusError, RuntimeError):
    """Raised when a closed bus is used."""


class PermissionDeniedError(BusError, PermissionError):
    """Raised when the server refuses this connection a subject: a publish, or a subscription.

    NATS reports a violation asynchronously, after the publish has returned. NatsBus turns
    the report into this error where someone can still receive it: the requests waiting on the
    subject fail with it at once, later publishes to the subject raise it before sending (until
    the connection is re-established, when permissions may have changed), and `subscribe`
    raises it once the server has answered.
    """

    def __init__(self, action: str, subject: str, queue: str | None = None) -> None:
        self.action = action
        """`publish` or `subscribe`."""
        self.subject = subject
        self.queue = queue
        group = f" in queue group {queue!r}" if queue else ""
        super().__init__(f"the NATS server denies this connection {action} on {subject!r}{group}")
