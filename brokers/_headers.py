"""Header checks shared by the buses: what NATS cannot carry is refused before it is sent."""

from __future__ import annotations

import re

from ._errors import InvalidHeaderError
from ._message import Headers

__all__ = ("HeaderCheck",)

_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
"""An HTTP token: what nats-py accepts as a header name."""
_NAMES_KEPT = 1024
"""Header names already validated are remembered, up to this many."""


class HeaderCheck:
    """Validates headers; names seen before cost one C-level set test."""

    __slots__ = ("_names",)

    def __init__(self) -> None:
        self._names: set[str] = set()

    def __call__(self, headers: Headers) -> None:
        """Raise InvalidHeaderError for a name that is not an HTTP token (empty, or with `:`,
        whitespace or other separators), a value that is not a str or holds a line break."""
        if not self._names.issuperset(headers):
            self._check_names(headers)
        try:
            for value in headers.values():
                if "\n" in value or "\r" in value:
                    raise InvalidHeaderError(f"header value {value!r} has a line break")
        except TypeError:
            raise InvalidHeaderError("header values must be str") from None

    def _check_names(self, headers: Headers) -> None:
        for name in headers:
            if type(name) is not str or not _NAME.fullmatch(name):
                raise InvalidHeaderError(f"invalid header name {name!r}")
            if len(self._names) < _NAMES_KEPT:
                self._names.add(name)
