"""The workflow core: the one interpreter of a definition, as a pure state machine.

`apply(workflow, progress, event)` takes what happened to an instance (a step answered, was
refused or failed; a cancel, a pause or a resume came; a compensation was done or could not
be) and returns the instance's new `Progress` and the `Action`s to take: perform a step,
compensate one, send the failure notices, end with an outcome. No bus, no awaits, no clock:
every strategy drives this same machine, so the rules live here and nowhere else:

- **Forward.** Steps run in their order; a step that is not waited for counts as completed
  once its command is sent. A step's answer, refusal or failure only counts while the step is
  under way: a duplicate, or an answer after the step ended, changes nothing.
- **Failure.** A refusal (business) or a technical failure that outlived its retries turns
  the instance around: the completed steps that have a compensation are compensated one at a
  time, newest first (the reverse order of completion), each exactly once; then the failure
  notices are sent and the instance ends.
- **Outcome.** A compensation that could not be done -> NEEDS_ATTENTION (whatever else
  happened); turned around by a cancel -> CANCELLED; something compensated -> COMPENSATED;
  else FAILED. No failure -> COMPLETED.
- **Cancel.** The step under way finishes, then the instance turns around with the failure
  `Failure(<that step>, "cancelled")`, that step compensated too if it completed. A cancel
  with nothing under way (paused, or a step not started yet) turns around at once, naming the
  step that was due. A cancel after the end, or while compensating, changes nothing.
- **Pause.** The step under way finishes and no further step starts until a resume.
  Compensation is not held: an instance on its way back finishes it.
- **Branches.** A branch is decided when the instance reaches it: the core says `Choose`,
  the strategy evaluates the branch's `when` against the context and answers
  `BranchChosen`; the path taken is added to `path`, and only its steps run (so only they
  are ever compensated). While it is decided the branch counts as under way, so a cancel or
  a pause waits for the decision, as for a step.
- **Computes.** A compute is a step without a service: the core says `Calculate`, the
  strategy runs its function and answers as a service's answer would (`StepAnswered`,
  `StepRejected`, `StepFailed`). It completes like a step and is never compensated (it
  changed nothing).
- **Waits.** A wait for a signal is under way until the strategy says `SignalReceived` (the
  core says `Await`, and lists the signal in `awaiting`); then it completes like a step. A
  cancel does not wait for it: the instance turns around at once, naming the wait.
- **Sleeps.** A sleep is under way until the strategy says `TimerFired` (the core says
  `StartTimer`; the strategy, which has the clock, records the timer in `timers` with
  `set_timer` and fires it when due). A cancel does not wait for it either.

The progress is a msgspec Struct of immutable fields: a mediator keeps it in its store, and a
choreography carries it (or the part its pattern allows) in its events.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from .._status import Outcome
from ..definition._workflow import (
    FAIL,
    Branch,
    Compute,
    Failure,
    Node,
    Sleep,
    Step,
    WaitFor,
    Workflow,
)

__all__ = (
    "CANCELLED",
    "Action",
    "Actions",
    "Await",
    "BranchChosen",
    "Calculate",
    "CancelRequested",
    "Choose",
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
    "SignalReceived",
    "StartTimer",
    "Started",
    "StepAnswered",
    "StepCancelled",
    "StepFailed",
    "StepRejected",
    "Timer",
    "TimerFired",
    "apply",
    "message_id",
    "outcome_of",
    "set_timer",
    "undo_message_id",
)

CANCELLED = "cancelled"
"""The reason of the failure a cancel turns an instance around with."""


class Timer(msgspec.Struct, frozen=True, gc=False):
    """A durable timer: `name` fires at `due` (seconds since the epoch, UTC)."""

    name: str
    due: float


class Progress(msgspec.Struct, omit_defaults=True, gc=False):
    """Where one instance stands: the core's state.

    Its fields are tuples, never changed in place, so that a progress can share them with
    another (a choreography builds one per event from shared prefixes of the steps).
    """

    outcome: Outcome = Outcome.RUNNING
    active: tuple[str, ...] = ()
    """The steps under way (one at a time for a sequence of steps)."""
    held: tuple[str, ...] = ()
    """The steps due to start that a pause holds back."""
    completed: tuple[str, ...] = ()
    """The steps done, in order of completion."""
    failure: Failure | None = None
    """Why the instance left its happy path: set once, when it turns around."""
    undo: tuple[str, ...] = ()
    """While turning around: the compensations still to do, the next first."""
    compensating: tuple[str, ...] = ()
    """The compensations under way."""
    compensated: tuple[str, ...] = ()
    """The steps undone, in order."""
    attention: tuple[str, ...] = ()
    """The compensations that could not be done: `step: why`."""
    cancel_requested: bool = False
    cancelled: bool = False
    """Turned around by a cancel (the outcome is CANCELLED unless a compensation failed)."""
    paused: bool = False
    timers: tuple[Timer, ...] = ()
    """Durable timers pending (a `Sleep`, a `WaitFor`'s timeout): empty for a sequence of
    steps, whose only clock is the step executor's."""
    awaiting: tuple[str, ...] = ()
    """The signals the instance waits for (a `WaitFor`)."""
    path: tuple[str, ...] = ()
    """The way the instance took through its branches (`<branch>:<path>`), so that its
    compensation retraces it."""

    @property
    def current_step(self) -> str | None:
        """The step under way (the latest, when several are), for status."""
        return self.active[-1] if self.active else None

    @property
    def running(self) -> bool:
        return self.outcome is Outcome.RUNNING


# -- what happened ------------------------------------------------------------------------


class Started(msgspec.Struct, frozen=True, gc=False):
    """The instance was started."""


class StepAnswered(msgspec.Struct, frozen=True, gc=False):
    """`step` answered (or, not waited for, its command was sent): it completed."""

    step: str


class StepRejected(msgspec.Struct, frozen=True, gc=False):
    """`step`'s service said no (a `Rejected` reply): a business failure."""

    step: str
    reason: str


class StepFailed(msgspec.Struct, frozen=True, gc=False):
    """`step` failed technically once its retries were spent (or its command could not be
    built, or sent)."""

    step: str
    reason: str


class StepCancelled(msgspec.Struct, frozen=True, gc=False):
    """`step` was due to start, and was not started because the instance is cancelled (a
    choreography's service sees the cancel before the step's event)."""

    step: str


class BranchChosen(msgspec.Struct, frozen=True, gc=False):
    """`branch` was decided: `then` is True for its `then` path, False for `otherwise`."""

    branch: str
    then: bool


class SignalReceived(msgspec.Struct, frozen=True, gc=False):
    """The signal the wait `step` waits for came (its payload is the step's reply)."""

    step: str


class TimerFired(msgspec.Struct, frozen=True, gc=False):
    """The sleep `step`'s timer is due."""

    step: str


class CancelRequested(msgspec.Struct, frozen=True, gc=False):
    """Someone asked to cancel the instance."""


class PauseRequested(msgspec.Struct, frozen=True, gc=False):
    """Someone asked to hold the instance before its next step."""


class ResumeRequested(msgspec.Struct, frozen=True, gc=False):
    """Someone let a paused instance go on."""


class CompensationDone(msgspec.Struct, frozen=True, gc=False):
    """`step` was undone."""

    step: str


class CompensationFailed(msgspec.Struct, frozen=True, gc=False):
    """`step` could not be undone, its retries spent (or its service refused)."""

    step: str
    reason: str


Event = (
    Started
    | BranchChosen
    | SignalReceived
    | TimerFired
    | StepAnswered
    | StepRejected
    | StepFailed
    | StepCancelled
    | CancelRequested
    | PauseRequested
    | ResumeRequested
    | CompensationDone
    | CompensationFailed
)


# -- what to do ---------------------------------------------------------------------------


class Perform(msgspec.Struct, frozen=True, gc=False):
    """Build `step`'s command and send it (with the step's message id, `message_id`)."""

    step: str


class Await(msgspec.Struct, frozen=True, gc=False):
    """The wait `step` is under way: answer `SignalReceived` once its signal came (at once,
    for one that came early)."""

    step: str


class StartTimer(msgspec.Struct, frozen=True, gc=False):
    """The sleep `step` begins: set its timer on the strategy's clock (`set_timer`), and
    answer `TimerFired` when it is due."""

    step: str


class Calculate(msgspec.Struct, frozen=True, gc=False):
    """Run the compute `step`'s function, and answer as its service would."""

    step: str


class Choose(msgspec.Struct, frozen=True, gc=False):
    """Decide `branch`: evaluate its `when` and answer `BranchChosen`."""

    branch: str


class Compensate(msgspec.Struct, frozen=True, gc=False):
    """Build `step`'s compensation and send it (`undo_message_id`)."""

    step: str


class SendNotices(msgspec.Struct, frozen=True, gc=False):
    """Send the workflow's failure notices (`on_failure`)."""


class End(msgspec.Struct, frozen=True, gc=False):
    """The instance is over: `outcome`."""

    outcome: Outcome


Action = Perform | Choose | Calculate | Await | StartTimer | Compensate | SendNotices | End

Actions = tuple[Action, ...]
"""What to do, in order: a tuple, often shared (callers only read it)."""

_NOTHING: Actions = ()

_COMPLETED: Actions = (End(Outcome.COMPLETED),)

_PERFORM: dict[str, Actions] = {}
"""`(Perform(step),)` by step name, made once: starting a step allocates no action."""


def _perform(step: str) -> Actions:
    actions = _PERFORM.get(step)
    if actions is None:
        actions = _PERFORM[step] = (Perform(step),)
    return actions


def message_id(workflow_id: str, step: str) -> str:
    """The message id of `step`'s command: the same for every attempt, so that an idempotent
    service acts once."""
    return f"{workflow_id}.{step}"


def undo_message_id(workflow_id: str, step: str) -> str:
    """The message id of `step`'s compensation."""
    return f"{workflow_id}.{step}.undo"


def outcome_of(progress: Progress) -> Outcome:
    """How an instance that has nothing left to do ends (the outcome ladder)."""
    if progress.failure is None:
        return Outcome.COMPLETED
    if progress.attention:
        return Outcome.NEEDS_ATTENTION
    if progress.cancelled:
        return Outcome.CANCELLED
    if progress.compensated:
        return Outcome.COMPENSATED
    return Outcome.FAILED


def apply(workflow: Workflow[Any], progress: Progress, event: Event) -> tuple[Progress, Actions]:
    """What `event` makes of an instance at `progress`: its new progress (the same object,
    updated) and the actions to take, in order."""
    if progress.outcome is not Outcome.RUNNING:
        return progress, _NOTHING  # an ended instance stays as it ended
    handle = _HANDLERS.get(type(event))
    if handle is None:
        raise TypeError(f"not a workflow event: {event!r}")
    return progress, handle(workflow, progress, event)


def _started(workflow: Workflow[Any], progress: Progress, event: Started) -> Actions:
    if progress.active or progress.completed or progress.held:
        return _NOTHING
    return _start(progress, workflow.first)


def _answered(workflow: Workflow[Any], progress: Progress, event: StepAnswered) -> Actions:
    # Runs for every step of every instance: the start of the next step is inlined.
    step = event.step
    active = progress.active
    if step not in active:
        return _NOTHING  # a duplicate, or an answer after the step ended
    progress.completed = (*progress.completed, step)
    if progress.cancel_requested:
        progress.active = _without(active, step)
        return _turn_around(workflow, progress, _cancel_failure(step), cancelled=True)
    following = workflow.next_step[step]
    if following is None:
        progress.active = _without(active, step)
        progress.outcome = Outcome.COMPLETED
        return _COMPLETED
    if type(following) is not Step:  # a branch to decide, or a compute
        progress.active = _without(active, step)
        return _start(progress, following)
    name = following.name
    if progress.paused:
        progress.active = _without(active, step)
        progress.held = (name,)
        return _NOTHING
    progress.active = (name,) if len(active) == 1 else (*_without(active, step), name)
    actions = _PERFORM.get(name)
    return actions if actions is not None else _perform(name)


def _branch_chosen(workflow: Workflow[Any], progress: Progress, event: BranchChosen) -> Actions:
    branch = event.branch
    if branch not in progress.active:
        return _NOTHING  # decided already
    progress.active = _without(progress.active, branch)
    progress.path = (*progress.path, f"{branch}:{'then' if event.then else 'otherwise'}")
    if progress.cancel_requested:
        return _turn_around(workflow, progress, _cancel_failure(branch), cancelled=True)
    following = workflow.entry[(branch, event.then)]
    if following is None:
        progress.outcome = Outcome.COMPLETED
        return _COMPLETED
    return _start(progress, following)


def _signalled(workflow: Workflow[Any], progress: Progress, event: SignalReceived) -> Actions:
    step = event.step
    if step not in progress.active:
        return _NOTHING  # not waited for (yet), or cancelled meanwhile
    progress.awaiting = _without(progress.awaiting, workflow.waits[step].signal)
    progress.timers = tuple(t for t in progress.timers if t.name != step)  # its timeout
    return _answered(workflow, progress, StepAnswered(step))


def set_timer(progress: Progress, step: str, due: float) -> None:
    """Record that the sleep `step` ends at `due` (seconds since the epoch)."""
    progress.timers = (*(t for t in progress.timers if t.name != step), Timer(step, due))


def _timer_fired(workflow: Workflow[Any], progress: Progress, event: TimerFired) -> Actions:
    step = event.step
    progress.timers = tuple(t for t in progress.timers if t.name != step)
    if step not in progress.active:
        return _NOTHING  # cancelled meanwhile, or fired before
    wait = workflow.waits.get(step)
    if wait is not None:  # a wait's timeout: on with its default, or fail there
        progress.awaiting = _without(progress.awaiting, wait.signal)
        if wait.on_timeout is FAIL:
            return _step_failed(workflow, progress, Failure(step, wait.timed_out, technical=False))
    return _answered(workflow, progress, StepAnswered(step))


def _rejected(workflow: Workflow[Any], progress: Progress, event: StepRejected) -> Actions:
    return _step_failed(workflow, progress, Failure(event.step, event.reason, technical=False))


def _failed(workflow: Workflow[Any], progress: Progress, event: StepFailed) -> Actions:
    return _step_failed(workflow, progress, Failure(event.step, event.reason, technical=True))


def _step_failed(workflow: Workflow[Any], progress: Progress, failure: Failure) -> Actions:
    if failure.step not in progress.active:
        return _NOTHING
    progress.active = _without(progress.active, failure.step)
    return _turn_around(workflow, progress, failure, cancelled=False)


def _step_cancelled(workflow: Workflow[Any], progress: Progress, event: StepCancelled) -> Actions:
    progress.cancel_requested = True
    step = event.step
    if step not in progress.active and step not in progress.held:
        return _NOTHING
    return _cancel_now(workflow, progress, step)


def _cancel_requested(
    workflow: Workflow[Any], progress: Progress, event: CancelRequested
) -> Actions:
    if progress.cancel_requested or progress.failure is not None:
        return _NOTHING
    progress.cancel_requested = True
    if progress.held:  # nothing under way: turn around now
        return _cancel_now(workflow, progress, progress.held[0])
    waiting = [n for n in progress.active if n in workflow.waits or n in workflow.sleeps]
    if waiting:  # a wait or a sleep has no end of its own to wait for
        progress.awaiting = ()
        progress.timers = ()
        return _cancel_now(workflow, progress, waiting[0])
    return _NOTHING  # on with it once the step under way ends


def _pause_requested(workflow: Workflow[Any], progress: Progress, event: PauseRequested) -> Actions:
    progress.paused = True
    return _NOTHING


def _resume_requested(
    workflow: Workflow[Any], progress: Progress, event: ResumeRequested
) -> Actions:
    progress.paused = False
    held, progress.held = progress.held, ()
    if not held:
        return _NOTHING
    return _start(progress, workflow.node(held[0]))


def _compensation_done(
    workflow: Workflow[Any], progress: Progress, event: CompensationDone
) -> Actions:
    step = event.step
    if step not in progress.compensating:
        return _NOTHING
    progress.compensating = _without(progress.compensating, step)
    progress.compensated = (*progress.compensated, step)
    return _undo_next(progress)


def _compensation_failed(
    workflow: Workflow[Any], progress: Progress, event: CompensationFailed
) -> Actions:
    step = event.step
    if step not in progress.compensating:
        return _NOTHING
    progress.compensating = _without(progress.compensating, step)
    progress.attention = (*progress.attention, f"{step}: {event.reason}")
    return _undo_next(progress)


def _cancel_now(workflow: Workflow[Any], progress: Progress, step: str) -> Actions:
    progress.active = _without(progress.active, step)
    progress.held = _without(progress.held, step)
    progress.paused = False
    return _turn_around(workflow, progress, _cancel_failure(step), cancelled=True)


def _cancel_failure(step: str) -> Failure:
    """The failure a cancel turns an instance around with: `step` was under way, or due."""
    return Failure(step, CANCELLED, technical=False)


def _start(progress: Progress, node: Node) -> Actions:
    """Start `node` (perform a step, decide a branch, run a compute), unless a pause holds
    it."""
    if progress.paused:
        progress.held = (node.name,)
        return _NOTHING
    progress.active = (*progress.active, node.name)
    kind = type(node)
    if kind is Branch:
        return (Choose(node.name),)
    if kind is Compute:
        return (Calculate(node.name),)
    if kind is WaitFor:
        progress.awaiting = (*progress.awaiting, node.signal)  # type: ignore[union-attr]
        return (Await(node.name),)
    if kind is Sleep:
        return (StartTimer(node.name),)
    return _perform(node.name)


def _turn_around(
    workflow: Workflow[Any], progress: Progress, failure: Failure, *, cancelled: bool
) -> Actions:
    progress.failure = failure
    progress.cancelled = cancelled
    compensable = {step.name for step in workflow.steps if step.compensation is not None}
    done = set(progress.compensated)
    progress.undo = tuple(
        name for name in reversed(progress.completed) if name in compensable and name not in done
    )
    return _undo_next(progress)


def _undo_next(progress: Progress) -> Actions:
    if progress.compensating:
        return _NOTHING  # one at a time: the one under way first
    if progress.undo:
        step, *rest = progress.undo
        progress.undo = tuple(rest)
        progress.compensating = (step,)
        return (Compensate(step),)
    progress.outcome = outcome_of(progress)
    return (SendNotices(), End(progress.outcome))


_HANDLERS: dict[type, Callable[[Workflow[Any], Progress, Any], Actions]] = {
    Started: _started,
    BranchChosen: _branch_chosen,
    SignalReceived: _signalled,
    TimerFired: _timer_fired,
    StepAnswered: _answered,
    StepRejected: _rejected,
    StepFailed: _failed,
    StepCancelled: _step_cancelled,
    CancelRequested: _cancel_requested,
    PauseRequested: _pause_requested,
    ResumeRequested: _resume_requested,
    CompensationDone: _compensation_done,
    CompensationFailed: _compensation_failed,
}
"""The handler of each kind of event: one dict lookup per event."""


def _without(names: tuple[str, ...], name: str) -> tuple[str, ...]:
    if len(names) == 1 and names[0] == name:
        return ()
    return tuple(n for n in names if n != name)
