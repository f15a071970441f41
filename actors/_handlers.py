"""Finding an actor class's handlers, one per message type, and the codecs they imply.

A handler is an `async def` method taking one message argument. It is found either by the
`@handler` decorator or, for any public method, by the type hint of its argument: a tagged
msgspec Struct (or a union of them). Its return hint is the reply type an ask decodes.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec

from ._errors import InvalidActorError

__all__ = ("HandlerTable", "extended", "handler", "handler_table", "reduced")

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

_HANDLER_MARK = "__corps_handler__"
_HOOKS = frozenset({"on_start", "on_stop"})


def handler(method: F) -> F:
    """Mark `method` as a message handler (optional when its argument is type-hinted)."""
    setattr(method, _HANDLER_MARK, True)
    return method


@dataclass(frozen=True, slots=True)
class HandlerTable:
    """Everything the runtime needs to dispatch to one actor class."""

    handlers: dict[type, Callable[[Any, Any], Awaitable[Any]]]
    """Message type to unbound handler method."""
    reply_decoders: dict[type, msgspec.msgpack.Decoder[Any]]
    """Message type to the decoder of its handler's reply."""
    decoder: msgspec.msgpack.Decoder[Any]
    """Decodes any message type the actor handles (a tagged union)."""


def handler_table(actor_class: type) -> HandlerTable:
    """The handler table of `actor_class`, built once and cached on the class."""
    table = actor_class.__dict__.get("_corps_handler_table")
    if table is None:
        table = _build(actor_class)
        type.__setattr__(actor_class, "_corps_handler_table", table)
    return typing.cast(HandlerTable, table)


def _is_message_type(candidate: object) -> bool:
    return (
        isinstance(candidate, type)
        and issubclass(candidate, msgspec.Struct)
        and candidate.__struct_config__.tag is not None
    )


def _message_types(annotation: object) -> list[type]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = typing.get_args(annotation)
    else:
        members = (annotation,)
    found = [member for member in members if _is_message_type(member)]
    return found if len(found) == len(members) else []


def _build(actor_class: type) -> HandlerTable:
    handlers: dict[type, Callable[[Any, Any], Awaitable[Any]]] = {}
    reply_types: dict[type, Any] = {}
    seen: set[str] = set()
    for klass in actor_class.__mro__:
        for name, method in vars(klass).items():
            if name in seen or name in _HOOKS or not inspect.iscoroutinefunction(method):
                continue
            seen.add(name)
            marked = getattr(method, _HANDLER_MARK, False)
            if name.startswith("_") and not marked:
                continue
            params = list(inspect.signature(method).parameters.values())[1:]
            try:
                hints = typing.get_type_hints(method)
            except Exception as exc:
                if marked:
                    raise InvalidActorError(
                        f"{actor_class.__name__}.{name}: cannot resolve its type hints: {exc}"
                    ) from exc
                continue
            message_types = _message_types(hints.get(params[0].name)) if len(params) == 1 else []
            if not message_types:
                if marked:
                    raise InvalidActorError(
                        f"{actor_class.__name__}.{name}: a handler takes one argument hinted "
                        "with a tagged msgspec Struct (subclass actors.Message)"
                    )
                continue
            for message_type in message_types:
                if message_type in handlers:
                    raise InvalidActorError(
                        f"{actor_class.__name__} has two handlers for {message_type.__name__}"
                    )
                handlers[message_type] = method
                reply_types[message_type] = hints.get("return", Any)
    if not handlers:
        raise InvalidActorError(f"{actor_class.__name__} has no message handler")
    try:
        decoder = _union_decoder(tuple(handlers))
        reply_decoders = {
            message_type: msgspec.msgpack.Decoder(reply_type)
            for message_type, reply_type in reply_types.items()
        }
    except TypeError as exc:
        raise InvalidActorError(f"{actor_class.__name__}: {exc}") from exc
    return HandlerTable(handlers, reply_decoders, decoder)


def extended(
    table: HandlerTable, extra: dict[type, Callable[[Any, Any], Awaitable[Any]]]
) -> HandlerTable:
    """`table` with the handlers in `extra` added (message type to `handler(actor, msg)`)."""
    clash = [t.__name__ for t in extra if t in table.handlers]
    if clash:
        raise InvalidActorError(f"the actor already handles {', '.join(clash)}")
    handlers = {**table.handlers, **extra}
    reply_decoders = dict(table.reply_decoders)
    for message_type in extra:
        reply_decoders[message_type] = msgspec.msgpack.Decoder(type(None))
    return _with_decoder(handlers, reply_decoders)


def reduced(table: HandlerTable, types: list[type]) -> HandlerTable:
    """`table` without the handlers of `types`."""
    handlers = {t: h for t, h in table.handlers.items() if t not in types}
    reply_decoders = {t: d for t, d in table.reply_decoders.items() if t not in types}
    return _with_decoder(handlers, reply_decoders)


def _with_decoder(
    handlers: dict[type, Callable[[Any, Any], Awaitable[Any]]],
    reply_decoders: dict[type, msgspec.msgpack.Decoder[Any]],
) -> HandlerTable:
    try:
        decoder = _union_decoder(tuple(handlers))
    except TypeError as exc:  # two message types with one tag
        raise InvalidActorError(f"cannot tell the messages apart: {exc}") from exc
    return HandlerTable(handlers, reply_decoders, decoder)


def _union_decoder(message_types: tuple[type, ...]) -> msgspec.msgpack.Decoder[Any]:
    """A decoder for any of `message_types` (a tagged union); TypeError when msgspec cannot
    tell them apart."""
    if len(message_types) == 1:
        return msgspec.msgpack.Decoder(message_types[0])
    return msgspec.msgpack.Decoder(typing.Union[message_types])  # noqa: UP007
