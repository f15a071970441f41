"""Base classes for the messages actors exchange."""

from __future__ import annotations

from typing import Generic, TypeVar

import msgspec

__all__ = ("Message", "Request")

R = TypeVar("R")


class Message(msgspec.Struct, tag=True, gc=False):
    """A message: a msgspec Struct tagged with its class name, so one subject can carry several
    message types (a tagged union).

    Messages are not tracked by Python's cyclic garbage collector (`gc=False`): they are data,
    millions of them pass through, and every tracked object that a workflow keeps makes each
    full collection longer (measured: 30% of the choreographies' throughput, and a p99 latency
    7x the median). A message must therefore never be part of a reference cycle.
    """


class Request(Message, Generic[R]):
    """A message that expects a reply of type `R`: `await ref.ask(GetBalance())` is typed `R`.

    Declare it as `class GetBalance(Request[Balance]): ...`; the handler returns a `Balance`.
    """
