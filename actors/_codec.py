"""msgspec msgpack encoding of messages and replies, with bounded, typed decoding."""

from __future__ import annotations

from typing import Any

import msgspec

from ._errors import MessageDecodeError

__all__ = ("ErrorReply", "decode", "encode", "oversized", "undecodable")

_encoder = msgspec.msgpack.Encoder()
encode = _encoder.encode
"""Encode a message or a reply to msgpack bytes (one shared Encoder)."""


class ErrorReply(msgspec.Struct, frozen=True):
    """The body of a reply that reports an error instead of a result."""

    error_type: str
    message: str


def oversized(size: int, limit: int) -> MessageDecodeError:
    return MessageDecodeError(f"message of {size} bytes exceeds the limit of {limit}")


def undecodable(error: Exception) -> MessageDecodeError:
    return MessageDecodeError(f"cannot decode message: {error}")


def decode(decoder: msgspec.msgpack.Decoder[Any], data: bytes, limit: int) -> Any:
    """Decode `data`, checking its size first.

    Every failure becomes MessageDecodeError: a msgspec error, but also what a hostile payload
    makes the decoder raise otherwise (RecursionError for deeply nested input).
    """
    if len(data) > limit:
        raise oversized(len(data), limit)
    try:
        return decoder.decode(data)
    except Exception as exc:
        raise undecodable(exc) from exc
