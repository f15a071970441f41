"""Exceptions raised by workflow definitions and strategies."""

from __future__ import annotations

from brokers import CorpsError

__all__ = (
    "CoordinationError",
    "InvalidWorkflowError",
    "UnknownWorkflowError",
    "WorkflowEndedError",
)


class CoordinationError(CorpsError):
    """Root of the errors raised by the coordination layer."""


class InvalidWorkflowError(CoordinationError, ValueError):
    """Raised when a workflow definition is built with a mistake: duplicate or empty step
    names, a service it does not declare, a missing compensation that a later failure would
    need."""


class UnknownWorkflowError(CoordinationError, LookupError):
    """Raised when a workflow id is not known to the strategy asked about it."""


class WorkflowEndedError(CoordinationError):
    """Raised when something only a running instance can take (a signal) comes for one that
    has ended."""
