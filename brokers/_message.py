"""The message a bus delivers: bytes and string headers, as on NATS."""

from __future__ import annotations

__all__ = ("Headers", "Msg")

Headers = dict[str, str]


class Msg:
    """A message delivered by a bus.

    `headers` is shared by every subscriber that receives the same publish: treat it as
    read-only.
    """

    __slots__ = ("data", "headers", "reply", "subject")

    def __init__(
        self, subject: str, data: bytes, headers: Headers | None = None, reply: str | None = None
    ) -> None:
        self.subject = subject
        self.data = data
        self.headers = headers
        self.reply = reply

    def __repr__(self) -> str:
        return (
            f"Msg(subject={self.subject!r}, data=<{len(self.data)} bytes>, "
            f"headers={self.headers!r}, reply={self.reply!r})"
        )
