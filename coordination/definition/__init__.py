"""A workflow, declared once as data: its steps, compensations, retries, timeouts and
failure path, checked when it is built."""

from ._workflow import (
    ALL,
    ANY,
    Branch,
    Compute,
    Failure,
    ForEach,
    Join,
    Notify,
    Parallel,
    Rejected,
    RetryPolicy,
    Sleep,
    Step,
    SubWorkflow,
    WaitFor,
    Workflow,
    WorkflowContext,
    at_least,
)

__all__ = (
    "ALL",
    "ANY",
    "Branch",
    "Compute",
    "Failure",
    "ForEach",
    "Join",
    "Notify",
    "Parallel",
    "Rejected",
    "RetryPolicy",
    "Sleep",
    "Step",
    "SubWorkflow",
    "WaitFor",
    "Workflow",
    "WorkflowContext",
    "at_least",
)
