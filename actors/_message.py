"""Base classes for the messages actors exchange."""

from __future__ import annotations

from typing import Generic, TypeVar

import msgspec

__all__ = ("Message", "Request")

R = TypeVar("R")


class Message(msgspec.Struct, tag=True):
    """A message: a msgspec Struct tagged with its class name, so one subject can carry several
    message types (a tagged union)."""


class Request(Message, Generic[R]):
    """A message that expects a reply of type `R`: `await ref.ask(GetBalance())` is typed `R`.

    Declare it as `class GetBalance(Request[Balance]): ...`; the handler returns a `Balance`.
    """
