"""The `Bus` protocol every bus implements, and the options of a subscription."""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from ._message import Headers, Msg
from ._stats import BusStats

__all__ = ("Bus", "MessageCallback", "Overflow", "Subscription")

MessageCallback = Callable[[Msg], Awaitable[None]]
"""An async callback a subscription awaits for each message, one message at a time."""


class Overflow(enum.Enum):
    """What a subscription does with a message that arrives while its pending queue is full."""

    BLOCK = "block"
    """The publisher waits until the subscriber makes room (backpressure)."""
    DROP = "drop"
    """The message is dropped and counted (NATS' slow-consumer behaviour)."""
    REJECT = "reject"
    """The publisher gets SlowConsumerError at once."""


@runtime_checkable
class Subscription(Protocol):
    """A live subscription: messages matching `subject` go to its callback."""

    @property
    def subject(self) -> str: ...

    @property
    def queue(self) -> str | None: ...

    async def unsubscribe(self) -> None:
        """Stop at once: pending messages are discarded, a running callback is cancelled."""

    async def drain(self) -> None:
        """Stop taking new messages, deliver the pending ones, then stop."""


@runtime_checkable
class Bus(Protocol):
    """Publish/subscribe and request/reply over subjects, with NATS semantics."""

    stats: BusStats

    async def publish(
        self,
        subject: str,
        data: bytes,
        headers: Headers | None = None,
        reply: str | None = None,
    ) -> None:
        """Send `data` to every subscriber of `subject` and to one member of each queue group."""

    async def subscribe(
        self,
        subject: str,
        callback: MessageCallback,
        queue: str | None = None,
        *,
        pending_limit: int | None = None,
        overflow: Overflow | None = None,
        on_drop: Callable[[Msg], None] | None = None,
    ) -> Subscription:
        """Deliver messages matching the `subject` pattern to `callback`, one at a time.

        The subscription queues at most `pending_limit` messages (the bus's default when None);
        `overflow` says what happens to more (the bus's default when None), and `on_drop`, if
        given, sees every message the subscription drops.
        """

    async def request(
        self,
        subject: str,
        data: bytes,
        timeout: float = 5.0,
        headers: Headers | None = None,
    ) -> Msg:
        """Publish with a unique reply inbox and return the first reply.

        Raises NoRespondersError at once when nobody listens, BusTimeoutError (a TimeoutError)
        when no reply comes in time.
        """

    async def flush(self) -> None:
        """Return once everything published so far has been handed to the bus."""

    async def close(self) -> None:
        """Drain the subscriptions and release the bus; further use raises BusClosedError."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
