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
- **Parallels.** Reaching a parallel starts the first node of each of its branches (the
  parallel is in `forks` while it runs); a branch whose last node completes has ended
  (`joined`). Once the join is met the instance goes on after the parallel; a branch still
  running then is abandoned (the parallel is in `closed`): its wait or sleep stops at once,
  its step under way completes when it answers (and counts as completed: a later failure
  compensates it), and nothing after it starts. The instance ends once no step is under
  way. A failure in any branch turns the instance around; it waits for the steps under way
  in the other branches to land, then compensates every completed step, newest first. Many
  steps may be under way: `active` holds them all, and a pause holds each branch's next
  node in `held`.
- **For-each.** Reaching a for-each, the core says `ListItems`: the strategy builds the list
  and answers `ItemsListed` with its length. The items' steps (`<for-each>[<index>]`) then
  run, up to its `max_concurrency` at once, the next starting as one completes; once all
  have completed the core says `Collect` (gather the items' replies, in order, as the
  for-each's reply) and goes on. An item that fails turns the instance around as a step
  would, the items under way landing first; completed items are compensated like steps.
- **Sub-workflows.** A sub-workflow is a step whose service is a child instance: the core
  says `StartChild`, and the strategy answers as for a step once the child has ended
  (`StepAnswered` when it completed, `StepRejected` when it did not, `StepCancelled` when a
  cancel of the parent ended it). A completed child is compensated as a step is
  (`Compensate`): the strategy has the child undo its completed steps
  (`compensate_completed`).

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
    BranchEnd,
    Compute,
    Failure,
    ForEach,
    Node,
    Parallel,
    Sleep,
    Step,
    SubWorkflow,
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
    "Collect",
    "Compensate",
    "CompensationDone",
    "CompensationFailed",
    "End",
    "Event",
    "ItemsListed",
    "ListItems",
    "Listing",
    "PauseRequested",
    "Perform",
    "Progress",
    "ResumeRequested",
    "SendNotices",
    "SignalReceived",
    "StartChild",
    "StartTimer",
    "Started",
    "StepAnswered",
    "StepCancelled",
    "StepEnd",
    "StepFailed",
    "StepRejected",
    "Timer",
    "TimerFired",
    "apply",
    "compensate_completed",
    "message_id",
    "outcome_of",
    "set_timer",
    "start_action",
    "undo_message_id",
)

CANCELLED = "cancelled"
"""The reason of the failure a cancel turns an instance around with."""


class Timer(msgspec.Struct, frozen=True, gc=False):
    """A durable timer: `name` fires at `due` (seconds since the epoch, UTC)."""

    name: str
    due: float


class Listing(msgspec.Struct, frozen=True, gc=False):
    """A for-each's items: `count` of them, `started` so far, `done` so far."""

    name: str
    count: int
    started: int
    done: int


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
    forks: tuple[str, ...] = ()
    """The parallels under way (their join not met yet)."""
    joined: tuple[str, ...] = ()
    """The parallels' branches that ended (`<parallel>:<index>`)."""
    closed: tuple[str, ...] = ()
    """The parallels whose join was met while branches of theirs still ran (abandoned)."""
    finishing: bool = False
    """The flow has ended, and the instance ends once the steps still under way (in
    abandoned branches) have answered."""
    listings: tuple[Listing, ...] = ()
    """The for-eaches reached, and how far their items are."""

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


class StepAnswered(msgspec.Struct, frozen=True, gc=False, tag=True):
    """`step` answered (or, not waited for, its command was sent): it completed."""

    step: str


class StepRejected(msgspec.Struct, frozen=True, gc=False, tag=True):
    """`step`'s service said no (a `Rejected` reply): a business failure."""

    step: str
    reason: str


class StepFailed(msgspec.Struct, frozen=True, gc=False, tag=True):
    """`step` failed technically once its retries were spent (or its command could not be
    built, or sent)."""

    step: str
    reason: str


class StepCancelled(msgspec.Struct, frozen=True, gc=False, tag=True):
    """`step` was due to start, and was not started because the instance is cancelled (a
    choreography's service sees the cancel before the step's event)."""

    step: str


class BranchChosen(msgspec.Struct, frozen=True, gc=False):
    """`branch` was decided: `then` is True for its `then` path, False for `otherwise`."""

    branch: str
    then: bool


class ItemsListed(msgspec.Struct, frozen=True, gc=False):
    """The for-each `step` built its list: `count` items."""

    step: str
    count: int


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
    | ItemsListed
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


class StartChild(msgspec.Struct, frozen=True, gc=False):
    """Start the sub-workflow `step`'s child instance (or find the one started before), and
    answer as for a step once it has ended."""

    step: str


class ListItems(msgspec.Struct, frozen=True, gc=False):
    """Build the for-each `step`'s list, and answer `ItemsListed` with its length (or, for
    an `over` that raises, `StepFailed`)."""

    step: str


class Collect(msgspec.Struct, frozen=True, gc=False):
    """The `count` items of the for-each `step` have completed: their replies, in order,
    are its reply."""

    step: str
    count: int


class Compensate(msgspec.Struct, frozen=True, gc=False):
    """Build `step`'s compensation and send it (`undo_message_id`)."""

    step: str


class SendNotices(msgspec.Struct, frozen=True, gc=False):
    """Send the workflow's failure notices (`on_failure`)."""


class End(msgspec.Struct, frozen=True, gc=False):
    """The instance is over: `outcome`."""

    outcome: Outcome


Action = (
    Perform
    | Choose
    | Calculate
    | Await
    | StartTimer
    | ListItems
    | Collect
    | StartChild
    | Compensate
    | SendNotices
    | End
)

Actions = tuple[Action, ...]
"""What to do, in order: a tuple, often shared (callers only read it)."""

_NOTHING: Actions = ()

_COMPLETED: Actions = (End(Outcome.COMPLETED),)

_AN_ITEM: Any = object()
"""What follows a for-each's item: the next item, or what follows the for-each."""

_PERFORM: dict[str, Actions] = {}
"""`(Perform(step),)` by step name, made once: starting a step allocates no action."""


StepEnd = StepAnswered | StepRejected | StepFailed | StepCancelled
"""How a step ended (tagged: a choreography's service tells its starter so, see `Landed`)."""


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


def start_action(workflow: Workflow[Any], name: str) -> Action:
    """The action that starts the node `name` (for whoever takes up an instance whose
    progress says `name` is under way)."""
    if name in workflow.branches:
        return Choose(name)
    if name in workflow.computes:
        return Calculate(name)
    if name in workflow.waits:
        return Await(name)
    if name in workflow.sleeps:
        return StartTimer(name)
    if name in workflow.for_eaches:
        return ListItems(name)
    if name in workflow.subworkflows:
        return StartChild(name)
    return _perform(name)[0]


def compensate_completed(
    workflow: Workflow[Any], progress: Progress, failure: Failure
) -> tuple[Progress, Actions]:
    """Undo an instance that completed (a child, because its parent turned around): it runs
    again, to compensate its completed steps newest first, then sends its failure notices
    and ends (COMPENSATED, or NEEDS_ATTENTION). Nothing for an instance still running, or
    one that did not complete."""
    if progress.outcome is not Outcome.COMPLETED:
        return progress, _NOTHING
    progress = msgspec.structs.replace(progress, outcome=Outcome.RUNNING, failure=failure)
    return progress, _compensate_all(workflow, progress)


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
    if progress.active or progress.completed or progress.held or progress.forks:
        return _NOTHING
    return _start(workflow, progress, workflow.first)


def _answered(workflow: Workflow[Any], progress: Progress, event: StepAnswered) -> Actions:
    # Runs for every step of every instance: the start of the next step is inlined.
    step = event.step
    active = progress.active
    if step not in active:
        return _NOTHING  # a duplicate, or an answer after the step ended
    progress.completed = (*progress.completed, step)
    if progress.failure is not None or (progress.closed and _abandoned(workflow, progress, step)):
        progress.active = _without(active, step)  # it landed: nothing follows it
        return _settle(workflow, progress)
    if progress.cancel_requested:
        progress.active = _without(active, step)
        return _turn_around(workflow, progress, _cancel_failure(step), cancelled=True)
    following = workflow.next_step.get(step, _AN_ITEM)
    if following is None:
        progress.active = _without(active, step)
        return _flow_ended(progress)
    if type(following) is not Step:  # a branch to decide, a compute, a parallel, an item
        progress.active = _without(active, step)
        if following is _AN_ITEM:
            return _item_done(workflow, progress, step)
        return _start(workflow, progress, following)
    name = following.name
    if progress.paused:
        progress.active = _without(active, step)
        progress.held = (*progress.held, name)
        return _NOTHING
    progress.active = (name,) if len(active) == 1 else (*_without(active, step), name)
    actions = _PERFORM.get(name)
    return actions if actions is not None else _perform(name)


def _branch_chosen(workflow: Workflow[Any], progress: Progress, event: BranchChosen) -> Actions:
    branch = event.branch
    if branch not in progress.active:
        return _NOTHING  # decided already
    progress.active = _without(progress.active, branch)
    if progress.failure is not None or (progress.closed and _abandoned(workflow, progress, branch)):
        return _settle(workflow, progress)
    progress.path = (*progress.path, f"{branch}:{'then' if event.then else 'otherwise'}")
    if progress.cancel_requested:
        return _turn_around(workflow, progress, _cancel_failure(branch), cancelled=True)
    following = workflow.entry[(branch, event.then)]
    if following is None:
        return _flow_ended(progress)
    return _start(workflow, progress, following)


def _items_listed(workflow: Workflow[Any], progress: Progress, event: ItemsListed) -> Actions:
    name = event.step
    if name not in progress.active:
        return _NOTHING  # listed already
    progress.active = _without(progress.active, name)
    if progress.failure is not None or (progress.closed and _abandoned(workflow, progress, name)):
        return _settle(workflow, progress)
    if progress.cancel_requested:
        return _turn_around(workflow, progress, _cancel_failure(name), cancelled=True)
    for_each = workflow.for_eaches[name]
    count = event.count
    first = count if for_each.max_concurrency is None else min(count, for_each.max_concurrency)
    progress.listings = (*progress.listings, Listing(name, count, first, 0))
    if not count:
        return _for_each_done(workflow, progress, for_each)
    items = tuple(for_each.item_name(index) for index in range(first))
    if progress.paused:
        progress.held = (*progress.held, *items)
        return _NOTHING
    progress.active = (*progress.active, *items)
    return tuple(_perform(item)[0] for item in items)


def _item_done(workflow: Workflow[Any], progress: Progress, item: str) -> Actions:
    """An item of a for-each completed: the next item starts; after the last, on."""
    found = workflow.item(item)
    assert found is not None
    for_each = found[0]
    listing = next(entry for entry in progress.listings if entry.name == for_each.name)
    started, done = listing.started, listing.done + 1
    actions = _NOTHING
    if started < listing.count:
        following = for_each.item_name(started)
        started += 1
        if progress.paused:
            progress.held = (*progress.held, following)
        else:
            progress.active = (*progress.active, following)
            actions = _perform(following)
    progress.listings = tuple(
        Listing(entry.name, entry.count, started, done) if entry is listing else entry
        for entry in progress.listings
    )
    if done < listing.count:
        return actions
    return _for_each_done(workflow, progress, for_each)


def _for_each_done(workflow: Workflow[Any], progress: Progress, for_each: ForEach) -> Actions:
    """Every item completed: the for-each did, and the instance goes on after it."""
    name = for_each.name
    progress.completed = (*progress.completed, name)
    listing = next(entry for entry in progress.listings if entry.name == name)
    collect: Actions = (Collect(name, listing.count),) if for_each.step.wait else _NOTHING
    following = workflow.next_step[name]
    if following is None:
        return collect + _flow_ended(progress)
    return collect + _start(workflow, progress, following)


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
    step = failure.step
    if step not in progress.active:
        return _NOTHING
    progress.active = _without(progress.active, step)
    if progress.failure is not None or (progress.closed and _abandoned(workflow, progress, step)):
        return _settle(workflow, progress)  # turned around already, or its branch abandoned
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
    if progress.cancel_requested or progress.failure is not None or progress.finishing:
        return _NOTHING
    progress.cancel_requested = True
    if progress.held:  # held by a pause: turn around now
        return _cancel_now(workflow, progress, progress.held[0])
    waiting = [n for n in progress.active if n in workflow.waits or n in workflow.sleeps]
    if waiting:  # a wait or a sleep has no end of its own to wait for
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
    actions = _NOTHING
    for name in held:
        if workflow.item(name) is not None:  # a for-each's next item
            progress.active = (*progress.active, name)
            actions += _perform(name)
        else:
            actions += _start(workflow, progress, workflow.node(name))
    return actions


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
    _stop_waiting(workflow, progress, step)
    progress.held = _without(progress.held, step)
    progress.paused = False
    if progress.failure is not None:  # turned around already: one fewer to wait for
        return _settle(workflow, progress)
    return _turn_around(workflow, progress, _cancel_failure(step), cancelled=True)


def _cancel_failure(step: str) -> Failure:
    """The failure a cancel turns an instance around with: `step` was under way, or due."""
    return Failure(step, CANCELLED, technical=False)


def _start(workflow: Workflow[Any], progress: Progress, node: Node | BranchEnd) -> Actions:
    """Start `node` (perform a step, decide a branch, run a compute, fork a parallel...),
    unless a pause holds it; or end a parallel's branch."""
    kind = type(node)
    if kind is BranchEnd:
        return _branch_ended(workflow, progress, node)  # type: ignore[arg-type]
    if progress.paused:
        progress.held = (*progress.held, node.name)
        return _NOTHING
    if kind is Parallel:
        progress.forks = (*progress.forks, node.name)
        actions = _NOTHING
        for branch in node.branches:  # type: ignore[union-attr]
            actions += _start(workflow, progress, branch[0])
        return actions
    progress.active = (*progress.active, node.name)
    if kind is Branch:
        return (Choose(node.name),)
    if kind is Compute:
        return (Calculate(node.name),)
    if kind is WaitFor:
        progress.awaiting = (*progress.awaiting, node.signal)  # type: ignore[union-attr]
        return (Await(node.name),)
    if kind is Sleep:
        return (StartTimer(node.name),)
    if kind is ForEach:
        return (ListItems(node.name),)
    if kind is SubWorkflow:
        return (StartChild(node.name),)
    return _perform(node.name)


def _branch_ended(workflow: Workflow[Any], progress: Progress, end: BranchEnd) -> Actions:
    """A branch of a parallel ended: on after the parallel once its join is met."""
    name = end.parallel
    progress.joined = (*progress.joined, end.name)
    if name not in progress.forks:  # the join was met before: an abandoned branch's end
        return _settle(workflow, progress)
    parallel = workflow.parallels[name]
    ended = sum(1 for joined in progress.joined if joined.rpartition(":")[0] == name)
    if ended < parallel.needed:
        return _NOTHING
    progress.forks = _without(progress.forks, name)
    if ended < len(parallel.branches):
        _abandon(workflow, progress, name)
    following = workflow.next_step[name]
    if following is None:
        return _flow_ended(progress)
    return _start(workflow, progress, following)


def _abandon(workflow: Workflow[Any], progress: Progress, parallel: str) -> None:
    """The join of `parallel` is met: the branches of it still running stop. Their waits,
    sleeps and held nodes go at once; their steps under way land later, starting nothing."""
    progress.closed = (*progress.closed, parallel)
    inside = workflow.enclosing
    progress.forks = tuple(n for n in progress.forks if parallel not in inside.get(n, ()))
    progress.held = tuple(n for n in progress.held if parallel not in inside.get(n, ()))
    for name in progress.active:
        if parallel in inside.get(name, ()) and (name in workflow.waits or name in workflow.sleeps):
            _stop_waiting(workflow, progress, name)


def _abandoned(workflow: Workflow[Any], progress: Progress, name: str) -> bool:
    """Whether `name` runs in a branch that a met join abandoned."""
    closed = progress.closed
    inside = workflow.enclosing.get(name)
    if inside is None:
        item = workflow.item(name)  # a for-each's item runs where its for-each does
        inside = workflow.enclosing.get(item[0].name, ()) if item is not None else ()
    return any(parallel in closed for parallel in inside)


def _stop_waiting(workflow: Workflow[Any], progress: Progress, name: str) -> None:
    """The wait or sleep `name` stops: no signal or timer is waited for any more."""
    progress.active = _without(progress.active, name)
    progress.timers = tuple(t for t in progress.timers if t.name != name)
    wait = workflow.waits.get(name)
    if wait is not None:
        progress.awaiting = _without(progress.awaiting, wait.signal)


def _flow_ended(progress: Progress) -> Actions:
    """The flow's last node completed: the instance ends, once no step is under way."""
    if progress.active:
        progress.finishing = True
        return _NOTHING
    progress.outcome = Outcome.COMPLETED
    return _COMPLETED


def _settle(workflow: Workflow[Any], progress: Progress) -> Actions:
    """A step landed that starts nothing (turned around, finishing, or abandoned): once
    none is under way, compensate (turned around) or end (finishing)."""
    if progress.active:
        return _NOTHING
    if progress.failure is not None:
        return _compensate_all(workflow, progress)
    if progress.finishing:
        progress.outcome = Outcome.COMPLETED
        return _COMPLETED
    return _NOTHING


def _turn_around(
    workflow: Workflow[Any], progress: Progress, failure: Failure, *, cancelled: bool
) -> Actions:
    progress.failure = failure
    progress.cancelled = cancelled
    progress.held = progress.forks = ()
    for name in progress.active:  # a wait or a sleep has no end of its own to wait for
        if name in workflow.waits or name in workflow.sleeps:
            _stop_waiting(workflow, progress, name)
    if progress.active:  # the steps under way in other branches land first
        return _NOTHING
    return _compensate_all(workflow, progress)


def _compensate_all(workflow: Workflow[Any], progress: Progress) -> Actions:
    """Compensate every completed step that has a compensation, newest first."""
    compensable = workflow.compensable
    done = set(progress.compensated)
    progress.undo = tuple(
        name
        for name in reversed(progress.completed)
        if name not in done and (name in compensable or _undoable_item(workflow, name))
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


def _undoable_item(workflow: Workflow[Any], name: str) -> bool:
    item = workflow.item(name)
    return item is not None and item[0].step.compensation is not None


_HANDLERS: dict[type, Callable[[Workflow[Any], Progress, Any], Actions]] = {
    Started: _started,
    BranchChosen: _branch_chosen,
    ItemsListed: _items_listed,
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
