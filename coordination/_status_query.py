"""Status over the bus: the query a status-holding actor (a mediator, a front controller)
answers from its store, and the reply turned back into a `WorkflowStatus`."""

from __future__ import annotations

import msgspec

from actors import Request

from ._status import Outcome, WorkflowStatus
from .definition._workflow import Failure
from .stores._store import InstanceState

__all__ = ("GetStatus", "StatusReply", "reply_from_state", "status_from_reply")


class StatusReply(msgspec.Struct, frozen=True):
    found: bool
    outcome: str = ""
    current_step: str | None = None
    completed: list[str] = []
    compensated: list[str] = []
    failure_step: str | None = None
    failure_reason: str | None = None
    failure_technical: bool = False
    attention: list[str] = []
    paused: bool = False
    history: list[str] = []
    awaiting: list[str] = []
    wakes_at: float | None = None
    active: list[str] = []


class GetStatus(Request[StatusReply]):
    workflow_id: str


def reply_from_state(state: InstanceState | None) -> StatusReply:
    if state is None:
        return StatusReply(found=False)
    progress = state.progress
    failure = progress.failure
    return StatusReply(
        found=True,
        outcome=progress.outcome.value,
        current_step=progress.current_step,
        completed=list(progress.completed),
        compensated=list(progress.compensated),
        failure_step=failure.step if failure else None,
        failure_reason=failure.reason if failure else None,
        failure_technical=failure.technical if failure else False,
        attention=list(progress.attention),
        paused=progress.paused,
        history=list(state.history),
        awaiting=list(progress.awaiting),
        wakes_at=min((timer.due for timer in progress.timers), default=None),
        active=list(progress.active),
    )


def status_from_reply(
    workflow_id: str, strategy: str, reply: StatusReply, unknown: frozenset[str] = frozenset()
) -> WorkflowStatus:
    """The status a reply says; the fields named in `unknown` are None."""
    failure = None
    if reply.failure_step is not None:
        failure = Failure(reply.failure_step, reply.failure_reason or "", reply.failure_technical)
    return WorkflowStatus(
        workflow_id,
        strategy,
        Outcome(reply.outcome),
        None if "current_step" in unknown else reply.current_step,
        None if "completed_steps" in unknown else tuple(reply.completed),
        None if "compensated_steps" in unknown else tuple(reply.compensated),
        None if "failure" in unknown else failure,
        unknown,
        tuple(reply.attention),
        paused=reply.paused,
        history=tuple(reply.history),
        awaiting=tuple(reply.awaiting),
        wakes_at=reply.wakes_at,
        active_steps=() if "current_step" in unknown else tuple(reply.active),
    )
