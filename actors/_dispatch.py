"""Running an actor's own handler from code that already runs in its mailbox (a sidecar
added with `ActorSystem.add_handlers`), as if the message had arrived with given ids."""

from __future__ import annotations

from typing import Any

import msgspec

from brokers import Msg

from ._actor import Actor
from ._codec import encode
from ._context import CAUSATION_ID, CORRELATION_ID, MESSAGE_ID, _current, check_id
from ._dead_letters import DeadLetterReason
from ._errors import UnhandledMessageError
from ._handlers import handler_table

__all__ = ("dispatch",)


async def dispatch(
    actor: Actor, message: msgspec.Struct, *, message_id: str, correlation_id: str
) -> Any:
    """Run `actor`'s handler for `message` now and return its result.

    Call it only from a handler running in `actor`'s own mailbox (added with
    `ActorSystem.add_handlers`), so that the actor still handles one message at a time. The
    handler sees `message_id` and `correlation_id` as the message's ids (`@idempotent` keys on
    the first). Raises InvalidHeaderError for an id that is not a str without line breaks,
    UnhandledMessageError when the actor has no handler for the type, and
    whatever the handler raises; as the mailbox does for a message it delivers, a handler that
    raised leaves the message in the system's dead letters, and the actor's supervisor
    directive applies (a restart replaces the instance: take it from the next message's
    handler call, not from a reference kept across messages).
    """
    handler = handler_table(type(actor)).handlers.get(type(message))
    if handler is None:
        raise UnhandledMessageError(
            f"{type(actor).__name__} has no handler for {type(message).__name__}"
        )
    check_id(message_id, "message id")
    check_id(correlation_id, "correlation id")
    outer = _current.get()
    if outer is None:
        subject = ""
        headers = {MESSAGE_ID: message_id, CORRELATION_ID: correlation_id}
    else:
        subject = outer.subject
        cause = outer.headers.get(MESSAGE_ID) if outer.headers is not None else None
        if cause is None:
            headers = {MESSAGE_ID: message_id, CORRELATION_ID: correlation_id}
        else:
            headers = {MESSAGE_ID: message_id, CORRELATION_ID: correlation_id, CAUSATION_ID: cause}
    token = _current.set(Msg(subject, b"", headers))
    try:
        return await handler(actor, message)
    except Exception as exc:
        actor.system.dead_letters.record(
            DeadLetterReason.HANDLER_ERROR, actor.name, subject, encode(message), headers, exc
        )
        await actor.system._supervise(actor, exc)
        raise
    finally:
        _current.reset(token)
