"""Workflow coordination: one workflow definition, interchangeable strategies.

Declare a `Workflow` once (steps, compensations, retries, timeouts, failure path) and run it
with any strategy: `Mediator` (orchestration), or one of the choreographies, `FrontController`,
`StampCoupled`, `QueryAll` and `EventSourced`. They share one API (`start`, `status`,
`result`, `cancel`) and differ in cost and in what `status` can see. A `Hybrid` runs the
core of a workflow under one strategy and the rest under another.
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
from ._event_sourced import EventSourced
from ._event_store import EventStore, MemoryEventStore
from ._front_controller import FrontController
from ._history import History, HistoryRules, HistoryVerdict
from ._hybrid import Hybrid
from ._mediator import Mediator
from ._nats_event_store import NatsEventStore
from ._nats_state_store import NatsStateStore
from ._query_all import QueryAll
from ._sqlite_event_store import SqliteEventStore
from ._sqlite_store import SqliteStateStore
from ._stamp_coupled import StampCoupled
from ._status import Outcome, WorkflowResult, WorkflowStatus
from ._store import InstanceState, MemoryStateStore, StateStore
from ._strategy import Strategy

__all__ = (
    "CoordinationError",
    "EventSourced",
    "EventStore",
    "Failure",
    "FrontController",
    "History",
    "HistoryRules",
    "HistoryVerdict",
    "Hybrid",
    "InstanceState",
    "InvalidWorkflowError",
    "Mediator",
    "MemoryEventStore",
    "MemoryStateStore",
    "NatsEventStore",
    "NatsStateStore",
    "Notify",
    "Outcome",
    "QueryAll",
    "Rejected",
    "RetryPolicy",
    "SqliteEventStore",
    "SqliteStateStore",
    "StampCoupled",
    "StateStore",
    "Step",
    "Strategy",
    "UnknownWorkflowError",
    "Workflow",
    "WorkflowContext",
    "WorkflowResult",
    "WorkflowStatus",
)
