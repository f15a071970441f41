"""Idempotent handlers: a message handled once is not handled again when it comes back.

A message comes back when a sender retries after a timeout (with the same message id), or
when JetStream redelivers it. The handler's first result is kept and answered again without
running the handler: per actor instance and bounded by default, or in the actor's
`idempotency` store when it has one (see `IdempotencyStore`), which outlives the instance.
"""

from __future__ import annotations

import functools
import typing
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec

from ._context import MESSAGE_ID, _current
from ._idempotency_store import IdempotencyStore

__all__ = ("idempotent",)

A = TypeVar("A")
M = TypeVar("M")
R = TypeVar("R")

DEFAULT_REMEMBERED = 10_000


def idempotent(
    handler: Callable[[A, M], Awaitable[R]] | None = None, *, remember: int = DEFAULT_REMEMBERED
) -> Any:
    """Decorate a handler so that a message id it has seen returns the first result.

    Use as `@idempotent` or `@idempotent(remember=N)`: the latest N message ids are kept.
    A handler that raised is not remembered, so a retry runs it again. An actor whose
    `idempotency` attribute holds an IdempotencyStore keeps the replies there instead (encoded
    with msgpack and decoded as the handler's return annotation says).
    """

    def decorate(method: Callable[[A, M], Awaitable[R]]) -> Callable[[A, M], Awaitable[R]]:
        attribute = f"_corps_seen_{method.__name__}"
        name = method.__name__
        decoders: list[msgspec.msgpack.Decoder[Any]] = []

        def decode(data: bytes) -> Any:
            if not decoders:  # annotations resolve once the module is fully imported
                returns = typing.get_type_hints(method).get("return", Any)
                decoders.append(msgspec.msgpack.Decoder(returns))
            return decoders[0].decode(data)

        async def durable(self: A, msg: M, store: IdempotencyStore, message_id: str) -> R:
            key = f"{name}:{message_id}"
            data = await store.recall(key)
            if data is not None:
                return typing.cast(R, decode(data))
            result = await method(self, msg)
            await store.remember(key, msgspec.msgpack.encode(result))
            return result

        @functools.wraps(method)
        async def wrapper(self: A, msg: M) -> R:
            current = _current.get()
            message_id = None
            if current is not None and current.headers is not None:
                message_id = current.headers.get(MESSAGE_ID)
            if message_id is None:
                return await method(self, msg)
            store: IdempotencyStore | None = getattr(self, "idempotency", None)
            if store is not None:
                return await durable(self, msg, store, message_id)
            seen: OrderedDict[str, R] | None = getattr(self, attribute, None)
            if seen is None:
                seen = OrderedDict()
                setattr(self, attribute, seen)
            if message_id in seen:
                seen.move_to_end(message_id)
                return seen[message_id]
            result = await method(self, msg)
            seen[message_id] = result
            if len(seen) > remember:
                seen.popitem(last=False)
            return result

        return wrapper

    return decorate if handler is None else decorate(handler)
