"""Orchestration: one mediator runs every step, retry, timeout and compensation of a
workflow, keeping the core's state of each instance in its store."""

from ._mediator import Mediator

__all__ = ("Mediator",)
