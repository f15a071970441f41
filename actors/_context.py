"""Message ids, correlation and causation, propagated from the message being handled.

Every message carries three headers: its own id (`Nats-Msg-Id`, which JetStream also uses to
deduplicate), the correlation id (the conversation or workflow it belongs to) and the causation
id (the message whose handler sent it). While a handler runs, the message it handles is the
current message of its context, so the messages it sends inherit its correlation id and name it
as their cause without the user passing anything.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

from brokers import Headers, InvalidHeaderError, Msg, new_id

__all__ = (
    "CAUSATION_ID",
    "CORRELATION_ID",
    "ERROR_KIND",
    "MESSAGE_ID",
    "ErrorKind",
    "MessageContext",
    "current_message",
    "current_message_id",
    "outgoing_headers",
)

MESSAGE_ID = "Nats-Msg-Id"
CORRELATION_ID = "Corps-Correlation-Id"
CAUSATION_ID = "Corps-Causation-Id"
ERROR_KIND = "Corps-Error"
"""Set on a reply that carries an error instead of a result."""


class ErrorKind:
    """Values of the Corps-Error reply header."""

    HANDLER = "handler"
    DECODE = "decode"
    STOPPED = "stopped"
    MAILBOX_FULL = "mailbox_full"


_current: ContextVar[Msg | None] = ContextVar("corps_current_message", default=None)


@dataclass(frozen=True, slots=True)
class MessageContext:
    """The ids of the message a handler is handling."""

    subject: str
    message_id: str | None
    correlation_id: str | None
    causation_id: str | None


def current_message_id() -> str | None:
    """The id of the message being handled in this context (cheaper than `current_message`
    when the id is all you need), None outside a handler."""
    msg = _current.get()
    if msg is None or msg.headers is None:
        return None
    return msg.headers.get(MESSAGE_ID)


def current_message() -> MessageContext | None:
    """The ids of the message being handled in this context, None outside a handler."""
    msg = _current.get()
    if msg is None:
        return None
    headers = msg.headers or {}
    return MessageContext(
        msg.subject,
        headers.get(MESSAGE_ID),
        headers.get(CORRELATION_ID),
        headers.get(CAUSATION_ID),
    )


def check_id(value: str, what: str) -> None:
    """Raise InvalidHeaderError unless `value` can be a header value: a str without line
    breaks (what NATS can carry)."""
    if type(value) is not str or "\n" in value or "\r" in value:
        raise InvalidHeaderError(f"invalid {what} {value!r}: it must be a str without line breaks")


def outgoing_headers(correlation_id: str | None = None, message_id: str | None = None) -> Headers:
    """Headers for a new message sent from the current context.

    `message_id` defaults to a new id; pass a stable one to have a resent message recognised
    as the same (idempotent handlers, JetStream dedup).
    """
    # The ids a caller gives are checked here, so that a bus need not check headers built
    # from them again (the in-memory bus does not); the rest are ours or came in checked.
    if not message_id:
        message_id = new_id()
    else:
        check_id(message_id, "message id")
    if correlation_id is not None:
        check_id(correlation_id, "correlation id")
    cause = _current.get()
    if cause is None or cause.headers is None:
        return {MESSAGE_ID: message_id, CORRELATION_ID: correlation_id or message_id}
    headers = cause.headers
    return {
        MESSAGE_ID: message_id,
        CORRELATION_ID: correlation_id or headers.get(CORRELATION_ID) or message_id,
        CAUSATION_ID: headers.get(MESSAGE_ID, message_id),
    }


def reply_headers(request: Msg) -> Headers:
    """Headers for the reply to `request`: same correlation, caused by the request."""
    message_id = new_id()
    headers = request.headers
    if headers is None:
        return {MESSAGE_ID: message_id, CORRELATION_ID: message_id}
    return {
        MESSAGE_ID: message_id,
        CORRELATION_ID: headers.get(CORRELATION_ID, message_id),
        CAUSATION_ID: headers.get(MESSAGE_ID, message_id),
    }
