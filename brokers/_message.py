"""The message a bus delivers: bytes and string headers, as on NATS."""

from __future__ import annotations

import msgspec

__all__ = ("Headers", "Msg")

Headers = dict[str, str]


class Msg(msgspec.Struct):
    """A message delivered by a bus.

    A msgspec Struct because one is built per publish and its constructor is C. `headers` is
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
