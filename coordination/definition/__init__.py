"""A workflow, declared once as data: its steps, compensations, retries, timeouts and
failure path, checked when it is built."""

from ._workflow import (
    Branch,
    Compute,
    Failure,
    Notify,
    Rejected,
    RetryPolicy,
    Sleep,
    Step,
    WaitFor,
    Workflow,
    WorkflowContext,
)

__all__ = (
    "Branch",
    "Compute",
    "Failure",
    "Notify",
    "Rejected",
    "RetryPolicy",
    "Sleep",
    "Step",
    "WaitFor",
    "Workflow",
    "WorkflowContext",
)
