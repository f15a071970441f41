"""What a strategy can say about a workflow instance, and what it cannot."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

import msgspec

from .definition._workflow import Failure

__all__ = ("Outcome", "WorkflowResult", "WorkflowStatus", "history_entry")


class Outcome(enum.Enum):
    """How a workflow ended (or that it has not)."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    """A step failed and there was nothing to undo."""
    COMPENSATED = "compensated"
    """A step failed and the steps done before it were undone."""
    CANCELLED = "cancelled"
    NEEDS_ATTENTION = "needs_attention"
    """A step failed (or the workflow was cancelled) and a compensation could not be done,
    even after its retries: someone has to look (`attention` says what is left)."""


class WorkflowStatus(msgspec.Struct, frozen=True, gc=False):
    """A strategy's view of one instance. A field a strategy cannot know is None, and its
    name is in `unknown`: a status never invents what its pattern does not see."""

    workflow_id: str
    strategy: str
    outcome: Outcome | None
    current_step: str | None
    completed_steps: tuple[str, ...] | None
    compensated_steps: tuple[str, ...] | None
    failure: Failure | None
    unknown: frozenset[str] = frozenset()
    attention: tuple[str, ...] = ()
    """The compensations that could not be done, and why (NEEDS_ATTENTION)."""
    since_progress: float | None = None
    """Seconds since a running instance was last seen to move on, as far as its strategy's
    pattern sees (every step for the Mediator, the event log and a front controller with call
    backs; the start for the others); None once it has ended, or when asked of a strategy
    object that did not start it."""
    paused: bool = False
    """An operator paused it: no step starts until it is resumed (every strategy)."""
    history: tuple[str, ...] = ()
    """What operators did to it: `<UTC time> <who>: <what>`, in order (every strategy; kept
    in the store by the Mediator and the front controller)."""
    awaiting: tuple[str, ...] = ()
    """The signals it waits for (a `WaitFor`): every strategy knows them, since under a
    choreography a waiting instance waits with the process that started it."""
    wakes_at: float | None = None
    """When its pending timer is due, in seconds since the epoch on its strategy's clock: a
    `Sleep`'s end, or the deadline of a wait with a timeout."""
    active_steps: tuple[str, ...] = ()
    """Every step under way: several while a `Parallel`'s branches run (`current_step` is
    the latest of them). Empty where the pattern cannot see it (`current_step` is then in
    `unknown`), and once the instance has ended."""

    @property
    def finished(self) -> bool:
        return self.outcome not in (None, Outcome.RUNNING)


class WorkflowResult(msgspec.Struct, frozen=True, gc=False):
    """The end of a workflow: its outcome, the replies of its steps, and why it failed."""

    workflow_id: str
    outcome: Outcome
    results: dict[str, Any]
    failure: Failure | None
    attention: tuple[str, ...] = ()
    """The compensations that could not be done, and why (NEEDS_ATTENTION)."""


def history_entry(who: str, what: str) -> str:
    """An entry of an instance's history: `<UTC time, to the millisecond> <who>: <what>`
    (every strategy writes them so)."""
    when = datetime.now(UTC).isoformat(timespec="milliseconds")
    return f"{when} {who}: {what}"
