"""The workflow core: the one interpreter of a definition every strategy drives.

`apply(workflow, progress, event)` is a pure state machine (see `_machine`): strategies
differ only in where they keep an instance's `Progress` and who calls it.
"""

from ._machine import (
    CANCELLED,
    Action,
    Actions,
    CancelRequested,
    Compensate,
    CompensationDone,
    CompensationFailed,
    End,
    Event,
    PauseRequested,
    Perform,
    Progress,
    ResumeRequested,
    SendNotices,
    Started,
    StepAnswered,
    StepCancelled,
    StepFailed,
    StepRejected,
    Timer,
    apply,
    message_id,
    outcome_of,
    undo_message_id,
)

__all__ = (
    "CANCELLED",
    "Action",
    "Actions",
    "CancelRequested",
    "Compensate",
    "CompensationDone",
    "CompensationFailed",
    "End",
    "Event",
    "PauseRequested",
    "Perform",
    "Progress",
    "ResumeRequested",
    "SendNotices",
    "Started",
    "StepAnswered",
    "StepCancelled",
    "StepFailed",
    "StepRejected",
    "Timer",
    "apply",
    "message_id",
    "outcome_of",
    "undo_message_id",
)
