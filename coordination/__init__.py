"""Workflow coordination: one workflow definition, interchangeable strategies.

Sub-packages a reader can navigate: `definition` (Workflow, Step, validation), `core` (the
one interpreter every strategy drives), `mediator` (orchestration), `choreography` (the
engine, its adapters and events, and the four choreographed strategies), `stores` (memory,
SQLite, NATS) and `testing` (the history checker). The names a user needs are here.

Declare a `Workflow` once (steps, compensations, retries, timeouts, failure path) and run it
with any strategy: `Mediator` (orchestration), or one of the choreographies, `FrontController`,
`StampCoupled`, `QueryAll` and `EventSourced`. They share one API (`start`, `status`,
`result`, `cancel`) and differ in cost and in what `status` can see. A `Hybrid` runs the
core of a workflow under one strategy and the rest under another.
"""

from ._clock import Clock, ManualClock, SystemClock
from ._errors import (
    CoordinationError,
    InvalidWorkflowError,
    UnknownWorkflowError,
    WorkflowEndedError,
)
from ._hybrid import Hybrid
from ._status import Outcome, WorkflowResult, WorkflowStatus
from ._strategy import Strategy
from .choreography import EventSourced, FrontController, QueryAll, StampCoupled
from .definition import (
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
from .mediator import Mediator
from .stores import (
    EventStore,
    MemoryEventStore,
    MemoryStateStore,
    NatsEventStore,
    NatsStateStore,
    SqliteEventStore,
    SqliteStateStore,
    StateStore,
)
from .testing import History, HistoryRules, HistoryVerdict

__all__ = (
    "ALL",
    "ANY",
    "Branch",
    "Clock",
    "Compute",
    "CoordinationError",
    "EventSourced",
    "EventStore",
    "Failure",
    "ForEach",
    "FrontController",
    "History",
    "HistoryRules",
    "HistoryVerdict",
    "Hybrid",
    "InvalidWorkflowError",
    "Join",
    "ManualClock",
    "Mediator",
    "MemoryEventStore",
    "MemoryStateStore",
    "NatsEventStore",
    "NatsStateStore",
    "Notify",
    "Outcome",
    "Parallel",
    "QueryAll",
    "Rejected",
    "RetryPolicy",
    "Sleep",
    "SqliteEventStore",
    "SqliteStateStore",
    "StampCoupled",
    "StateStore",
    "Step",
    "Strategy",
    "SubWorkflow",
    "SystemClock",
    "UnknownWorkflowError",
    "WaitFor",
    "Workflow",
    "WorkflowContext",
    "WorkflowEndedError",
    "WorkflowResult",
    "WorkflowStatus",
    "at_least",
)
