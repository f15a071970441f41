"""The message a bus delivers: bytes and string headers, as on NATS."""

from __future__ import annotations

import msgspec

__all__ = ("Headers", "Msg", "as_bytes")

Headers = dict[str, str]


class Msg(msgspec.Struct, gc=False):
    """A message delivered by a bus.

    A msgspec Struct because one is built per publish and its constructor is C; not tracked by
    the cyclic garbage collector, which it can never be part of a cycle for. `headers` is
    shared by every subscriber that receives the same publish: treat it as read-only.
    """

    subject: str
    data: bytes
    headers: Headers | None = None
    reply: str | None = None

    def __repr__(self) -> str:
        return (
            f"Msg(subject={self.subject!r}, data=<{len(self.data)} bytes>, "
            f"headers={self.headers!r}, reply={self.reply!r})"
        )


def as_bytes(data: object) -> bytes:
    """`data` as bytes: bytearray and memoryview are copied, anything else is refused."""
    if isinstance(data, bytearray | memoryview):
        return bytes(data)
    raise TypeError(f"data must be bytes, not {type(data).__name__}")
