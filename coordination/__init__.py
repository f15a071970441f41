"""Workflow coordination: one workflow definition, interchangeable strategies.

Declare a `Workflow` once (steps, compensations, retries, timeouts, failure path) and run it
with a strategy: `Mediator` (orchestration) so far; the choreographies follow.
"""

from ._definition import (
    Failure,
    Notify,
    Rejected,
    RetryPolicy,
    Step,
    Workflow,
    WorkflowContext,
)
from ._errors import CoordinationError, InvalidWorkflowError, UnknownWorkflowError
from ._mediator import Mediator
from ._status import Outcome, WorkflowResult, WorkflowStatus
from ._store import InstanceState, MemoryStateStore, StateStore
from ._strategy import Strategy

__all__ = (
    "CoordinationError",
    "Failure",
    "InstanceState",
    "InvalidWorkflowError",
    "Mediator",
    "MemoryStateStore",
    "Notify",
    "Outcome",
    "Rejected",
    "RetryPolicy",
    "StateStore",
    "Step",
    "Strategy",
    "UnknownWorkflowError",
    "Workflow",
    "WorkflowContext",
    "WorkflowResult",
    "WorkflowStatus",
)
