"""Exceptions raised by the actor runtime."""

from __future__ import annotations

from brokers import CorpsError

__all__ = (
    "ActorError",
    "ActorNotFoundError",
    "ActorStoppedError",
    "AskTimeoutError",
    "DuplicateActorError",
    "HandlerError",
    "HandlerTimeoutError",
    "InvalidActorError",
    "MailboxFullError",
    "MessageDecodeError",
    "UnhandledMessageError",
)


class ActorError(CorpsError):
    """Root of the errors raised by the actor runtime."""


class InvalidActorError(ActorError, TypeError):
    """Raised when an actor class is malformed: two handlers for one message type, a handler
    whose message type is not a tagged msgspec Struct, or message types that cannot share a
    subject."""


class DuplicateActorError(ActorError, ValueError):
    """Raised when spawning an actor under a name already taken in the system."""


class ActorStoppedError(ActorError, RuntimeError):
    """Raised when telling or asking an actor that has stopped, or whose pending ask was
    refused because it stopped."""


class ActorNotFoundError(ActorError, LookupError):
    """Raised when no instance of an actor listens on its subject (never started, stopped, or
    its process is down)."""


class UnhandledMessageError(ActorError, TypeError):
    """Raised when a message is sent to an actor that has no handler for its type."""


class MessageDecodeError(ActorError, ValueError):
    """Raised when bytes cannot be decoded into a message: malformed, wrong type, too large,
    or too deeply nested."""


class MailboxFullError(ActorError):
    """Raised when a tell meets a full mailbox whose policy refuses it."""


class AskTimeoutError(ActorError, TimeoutError):
    """Raised when an ask gets no reply within its timeout."""


class HandlerTimeoutError(ActorError, TimeoutError):
    """Raised inside an actor when a handler runs longer than its `handler_timeout`: the
    handler is cancelled and the failure is supervised like any other."""


class HandlerError(ActorError):
    """Raised to an asker when the handler raised: carries the remote error's type and text."""

    def __init__(self, actor: str, error_type: str, error_message: str) -> None:
        super().__init__(f"actor {actor!r} failed: {error_type}: {error_message}")
        self.actor = actor
        self.error_type = error_type
        self.error_message = error_message
