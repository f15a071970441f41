"""The workflow core alone, without a bus: its rules, and properties that hold for any
sequence of answers, failures, cancels, pauses and duplicates."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors import Actor, Request
from coordination import (
    Branch,
    Failure,
    InvalidWorkflowError,
    Outcome,
    Sleep,
    Step,
    WaitFor,
    Workflow,
)
from coordination.core import (
    CANCELLED,
    Action,
    Await,
    BranchChosen,
    CancelRequested,
    Choose,
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
    SignalReceived,
    Started,
    StartTimer,
    StepAnswered,
    StepCancelled,
    StepFailed,
    StepRejected,
    Timer,
    TimerFired,
    apply,
    outcome_of,
    set_timer,
)


class Go(Request[str]):
    pass


class Undo(msgspec.Struct):
    pass


class Service(Actor):
    async def go(self, msg: Go) -> str:
        return "ok"


def build(
    names: str = "abcd", *, undo: str = "abc", told: str = "", undo_needless: str = ""
) -> Workflow[Any]:
    """A workflow of one step per letter of `names`; those in `undo` have a compensation,
    those in `told` are not waited for."""
    steps = [
        Step(
            name,
            "svc",
            lambda ctx: Go(),
            compensation=(lambda ctx: Undo()) if name in undo else None,
            wait=name not in told,
            nothing_to_undo=name in undo_needless or name not in undo,
        )
        for name in names
    ]
    return Workflow("w", Undo, steps, services={"svc": Service})


ORDER = build()


def run(workflow: Workflow[Any], progress: Progress, *events: Event) -> list[Action]:
    actions: list[Action] = []
    for event in events:
        progress, done = apply(workflow, progress, event)
        actions += done
    return actions


def test_the_happy_path_performs_each_step_then_completes() -> None:
    progress = Progress()
    actions = run(ORDER, progress, Started(), *(StepAnswered(n) for n in "abcd"))
    assert actions == [
        Perform("a"),
        Perform("b"),
        Perform("c"),
        Perform("d"),
        End(Outcome.COMPLETED),
    ]
    assert progress.completed == ("a", "b", "c", "d")
    assert progress.outcome is Outcome.COMPLETED
    assert progress.failure is None


def test_a_refusal_compensates_newest_first_then_notifies_and_ends() -> None:
    progress = Progress()
    actions = run(ORDER, progress, Started(), StepAnswered("a"), StepAnswered("b"))
    actions = run(ORDER, progress, StepAnswered("c"), StepRejected("d", "backordered"))
    assert actions == [Perform("d"), Compensate("c")]
    actions = run(ORDER, progress, CompensationDone("c"), CompensationDone("b"))
    assert actions == [Compensate("b"), Compensate("a")]
    actions = run(ORDER, progress, CompensationDone("a"))
    assert actions == [SendNotices(), End(Outcome.COMPENSATED)]
    assert progress.compensated == ("c", "b", "a")
    assert progress.failure == Failure("d", "backordered", technical=False)


def test_a_failure_with_nothing_to_undo_fails() -> None:
    progress = Progress()
    actions = run(ORDER, progress, Started(), StepFailed("a", "no reply within 5 s"))
    assert actions == [Perform("a"), SendNotices(), End(Outcome.FAILED)]
    assert progress.failure == Failure("a", "no reply within 5 s", technical=True)


def test_a_compensation_that_fails_needs_attention_and_the_rest_still_runs() -> None:
    progress = Progress()
    run(ORDER, progress, Started(), StepAnswered("a"), StepAnswered("b"), StepRejected("c", "no"))
    actions = run(ORDER, progress, CompensationFailed("b", "refund refused"))
    assert actions == [Compensate("a")]
    actions = run(ORDER, progress, CompensationDone("a"))
    assert actions == [SendNotices(), End(Outcome.NEEDS_ATTENTION)]
    assert progress.attention == ("b: refund refused",)


def test_a_cancel_lets_the_step_under_way_finish_and_names_it() -> None:
    progress = Progress()
    run(ORDER, progress, Started(), StepAnswered("a"))
    assert run(ORDER, progress, CancelRequested()) == []
    actions = run(ORDER, progress, StepAnswered("b"))
    assert actions == [Compensate("b")]  # b completed, so it is undone too
    assert progress.failure == Failure("b", CANCELLED, technical=False)
    actions = run(ORDER, progress, CompensationDone("b"), CompensationDone("a"))
    assert actions == [Compensate("a"), SendNotices(), End(Outcome.CANCELLED)]


def test_a_cancel_during_the_last_step_still_turns_around() -> None:
    progress = Progress()
    run(ORDER, progress, Started(), *(StepAnswered(n) for n in "abc"), CancelRequested())
    assert run(ORDER, progress, StepAnswered("d")) == [Compensate("c")]


def test_a_step_refused_while_cancelling_is_a_refusal() -> None:
    progress = Progress()
    run(ORDER, progress, Started(), StepAnswered("a"), CancelRequested())
    actions = run(ORDER, progress, StepRejected("b", "declined"), CompensationDone("a"))
    assert actions[-1] == End(Outcome.COMPENSATED)
    assert progress.failure == Failure("b", "declined", technical=False)


def test_a_pause_holds_the_next_step_until_resumed() -> None:
    progress = Progress()
    run(ORDER, progress, Started(), PauseRequested())
    assert run(ORDER, progress, StepAnswered("a")) == []
    assert progress.held == ("b",)
    assert progress.current_step is None
    assert run(ORDER, progress, ResumeRequested()) == [Perform("b")]
    assert progress.active == ("b",)


def test_a_cancel_of_a_paused_instance_turns_it_around_at_once() -> None:
    progress = Progress()
    run(ORDER, progress, Started(), PauseRequested(), StepAnswered("a"))
    actions = run(ORDER, progress, CancelRequested())
    assert actions == [Compensate("a")]
    assert progress.failure == Failure("b", CANCELLED, technical=False)
    assert not progress.paused


def test_a_step_cancelled_before_it_started_is_not_undone() -> None:
    progress = Progress(completed=("a",), active=("b",))
    actions = run(ORDER, progress, StepCancelled("b"))
    assert actions == [Compensate("a")]
    assert progress.failure == Failure("b", CANCELLED, technical=False)


def test_duplicates_and_late_answers_change_nothing() -> None:
    progress = Progress()
    run(ORDER, progress, Started(), StepAnswered("a"))
    before = msgspec.structs.asdict(progress)
    assert run(ORDER, progress, StepAnswered("a"), StepFailed("a", "late"), Started()) == []
    assert msgspec.structs.asdict(progress) == before
    run(ORDER, progress, StepRejected("b", "no"), CompensationDone("a"))
    assert progress.outcome is Outcome.COMPENSATED
    assert run(ORDER, progress, CompensationDone("a"), StepAnswered("b"), CancelRequested()) == []


def test_told_steps_complete_and_need_no_compensation() -> None:
    workflow = build("abc", undo="a", told="b")
    progress = Progress()
    actions = run(workflow, progress, Started(), StepAnswered("a"), StepAnswered("b"))
    actions += run(workflow, progress, StepRejected("c", "no"), CompensationDone("a"))
    assert actions == [
        Perform("a"),
        Perform("b"),
        Perform("c"),
        Compensate("a"),
        SendNotices(),
        End(Outcome.COMPENSATED),
    ]


def test_progress_round_trips_through_msgpack() -> None:
    progress = Progress()
    run(ORDER, progress, Started(), StepAnswered("a"), StepRejected("b", "no"))
    data = msgspec.msgpack.encode(progress)
    assert msgspec.msgpack.decode(data, type=Progress) == progress


# -- properties ---------------------------------------------------------------------------

OUTCOMES = ("answer", "reject", "fail")


@st.composite
def workflows(draw: st.DrawFn) -> Workflow[Any]:
    names = "abcdef"[: draw(st.integers(1, 6))]
    undo = "".join(n for n in names if draw(st.booleans()))
    told = "".join(n for n in names if n not in undo and draw(st.integers(0, 3)) == 0)
    return build(names, undo=undo, told=told)


class Simulation:
    """Drives the core as a strategy would, recording what the services did."""

    def __init__(self, workflow: Workflow[Any]) -> None:
        self.workflow = workflow
        self.progress = Progress()
        self.performing: list[str] = []
        self.undoing: list[str] = []
        self.effects: list[str] = []
        """Steps whose effect took place (answered), in order."""
        self.asked_to_undo: list[str] = []
        self.undone: list[str] = []
        self.undo_failed: list[str] = []
        self.ends: list[Outcome] = []
        self.notices = 0
        self.history: list[Event] = []

    def feed(self, event: Event) -> None:
        self.history.append(event)
        self.progress, actions = apply(self.workflow, self.progress, event)
        for action in actions:
            match action:
                case Perform(step=step):
                    assert step not in self.performing
                    self.performing.append(step)
                case Compensate(step=step):
                    assert step not in self.undoing
                    self.undoing.append(step)
                    self.asked_to_undo.append(step)
                case SendNotices():
                    self.notices += 1
                case End(outcome=outcome):
                    self.ends.append(outcome)

    def step_ends(self, how: str) -> None:
        step = self.performing.pop(0)
        if how == "answer" or not self.workflow.step(step).wait:
            self.effects.append(step)
            self.feed(StepAnswered(step))
        elif how == "reject":
            self.feed(StepRejected(step, "no"))
        else:
            self.feed(StepFailed(step, "timeout"))

    def compensation_ends(self, ok: bool) -> None:
        step = self.undoing.pop(0)
        if ok:
            self.undone.append(step)
            self.feed(CompensationDone(step))
        else:
            self.undo_failed.append(step)
            self.feed(CompensationFailed(step, "refused"))


@settings(max_examples=400, deadline=None)
@given(workflow=workflows(), data=st.data())
def test_any_history_compensates_each_completed_step_once_newest_first(
    workflow: Workflow[Any], data: st.DataObject
) -> None:
    sim = Simulation(workflow)
    sim.feed(Started())
    for _ in range(60):
        choices = ["cancel", "pause", "resume", "duplicate"]
        if sim.performing:
            choices += ["answer", "answer", "reject", "fail"]
        if sim.undoing:
            choices += ["undo", "undo", "undo-fails"]
        choice = data.draw(st.sampled_from(choices))
        if choice in OUTCOMES:
            sim.step_ends(choice)
        elif choice == "undo":
            sim.compensation_ends(ok=True)
        elif choice == "undo-fails":
            sim.compensation_ends(ok=False)
        elif choice == "cancel":
            sim.feed(CancelRequested())
        elif choice == "pause":
            sim.feed(PauseRequested())
        elif choice == "resume":
            sim.feed(ResumeRequested())
        elif sim.history:
            sim.feed(data.draw(st.sampled_from(sim.history)))
    # Let it run out: resume, and every step and compensation succeeds.
    sim.feed(ResumeRequested())
    while sim.performing or sim.undoing:
        if sim.performing:
            sim.step_ends("answer")
        else:
            sim.compensation_ends(ok=True)

    progress = sim.progress
    assert len(sim.ends) == 1, "an instance ends exactly once"
    assert progress.outcome is sim.ends[0]
    compensable = [s for s in sim.effects if workflow.step(s).compensation is not None]
    if progress.failure is None:
        assert progress.outcome is Outcome.COMPLETED
        assert sim.effects == [step.name for step in workflow.steps]
        assert sim.undone == []
        assert sim.notices == 0
        return
    # every completed step with a compensation is compensated (or given up) exactly once,
    # in the reverse order of completion
    assert sim.asked_to_undo == compensable[::-1]
    assert sorted(sim.undone + sim.undo_failed) == sorted(compensable)
    assert list(progress.compensated) == sim.undone
    assert sim.notices == 1
    # the outcome agrees with the effects
    assert progress.outcome is outcome_of(progress)
    if sim.undo_failed:
        assert progress.outcome is Outcome.NEEDS_ATTENTION
    elif progress.failure.reason == CANCELLED and progress.cancelled:
        assert progress.outcome is Outcome.CANCELLED
    elif sim.undone:
        assert progress.outcome is Outcome.COMPENSATED
    else:
        assert progress.outcome is Outcome.FAILED
        assert compensable == []
    # the failure names a step that was under way or due, never one done and not undone
    assert progress.failure.step in [step.name for step in workflow.steps]


@pytest.mark.parametrize("event", [StepAnswered("zz"), CompensationDone("zz")])
def test_events_about_unknown_steps_change_nothing(event: Event) -> None:
    progress = Progress()
    run(ORDER, progress, Started())
    assert run(ORDER, progress, event) == []


def _leaf(name: str) -> Step:
    return Step(name, "svc", lambda ctx: Go(), compensation=lambda ctx: Undo())


BRANCHED = Workflow(
    "w",
    Undo,
    [
        _leaf("a"),
        Branch("big", lambda ctx: True, then=[_leaf("x"), _leaf("y")], otherwise=[_leaf("z")]),
        _leaf("b"),
    ],
    services={"svc": Service},
)


def test_a_branch_is_decided_when_reached_and_only_its_path_runs() -> None:
    progress = Progress()
    actions = run(BRANCHED, progress, Started(), StepAnswered("a"))
    assert actions == [Perform("a"), Choose("big")]
    assert progress.active == ("big",)  # deciding: under way, as a step is
    actions = run(BRANCHED, progress, BranchChosen("big", then=False), StepAnswered("z"))
    assert actions == [Perform("z"), Perform("b")]
    assert run(BRANCHED, progress, BranchChosen("big", then=True)) == []  # decided already
    actions = run(BRANCHED, progress, StepRejected("b", "no"))
    assert actions == [Compensate("z")]  # the way back retraces the way taken
    assert progress.path == ("big:otherwise",)
    actions = run(BRANCHED, progress, CompensationDone("z"), CompensationDone("a"))
    assert actions == [Compensate("a"), SendNotices(), End(Outcome.COMPENSATED)]


def test_a_cancel_or_a_pause_while_a_branch_is_decided_waits_for_the_decision() -> None:
    paused = Progress()
    run(BRANCHED, paused, Started(), StepAnswered("a"), PauseRequested())
    assert run(BRANCHED, paused, BranchChosen("big", then=True)) == []
    assert paused.held == ("x",)
    assert run(BRANCHED, paused, ResumeRequested()) == [Perform("x")]
    cancelled = Progress()
    run(BRANCHED, cancelled, Started(), StepAnswered("a"), CancelRequested())
    actions = run(BRANCHED, cancelled, BranchChosen("big", then=True))
    assert actions == [Compensate("a")]
    assert cancelled.failure == Failure("big", CANCELLED, technical=False)


def test_a_pause_before_a_branch_holds_the_decision() -> None:
    progress = Progress()
    run(BRANCHED, progress, Started(), PauseRequested(), StepAnswered("a"))
    assert progress.held == ("big",)
    assert run(BRANCHED, progress, ResumeRequested()) == [Choose("big")]


WAITING = Workflow(
    "w",
    Undo,
    [_leaf("a"), WaitFor("approval", "approved", str), _leaf("b")],
    services={"svc": Service},
)


def test_a_wait_is_under_way_until_its_signal_and_a_cancel_does_not_wait_for_it() -> None:
    progress = Progress()
    actions = run(WAITING, progress, Started(), StepAnswered("a"))
    assert actions == [Perform("a"), Await("approval")]
    assert (progress.active, progress.awaiting) == (("approval",), ("approved",))
    assert run(WAITING, progress, SignalReceived("approval")) == [Perform("b")]
    assert progress.awaiting == ()
    assert run(WAITING, progress, SignalReceived("approval")) == []  # once
    cancelled = Progress()
    run(WAITING, cancelled, Started(), StepAnswered("a"))
    assert run(WAITING, cancelled, CancelRequested()) == [Compensate("a")]
    assert cancelled.failure == Failure("approval", CANCELLED, technical=False)
    assert cancelled.awaiting == ()


def test_a_signal_is_awaited_by_one_wait_only() -> None:
    with pytest.raises(InvalidWorkflowError, match="signal 'go' is empty or awaited twice"):
        Workflow(
            "w",
            Undo,
            [_leaf("a"), WaitFor("one", "go", str), WaitFor("two", "go", str)],
            services={"svc": Service},
        )


SLEEPING = Workflow(
    "w", Undo, [_leaf("a"), Sleep("nap", seconds=60), _leaf("b")], services={"svc": Service}
)


def test_a_sleep_is_under_way_until_its_timer_fires() -> None:
    progress = Progress()
    assert run(SLEEPING, progress, Started(), StepAnswered("a")) == [
        Perform("a"),
        StartTimer("nap"),
    ]
    set_timer(progress, "nap", 1_060.0)
    assert progress.timers == (Timer("nap", 1_060.0),)
    assert run(SLEEPING, progress, TimerFired("nap")) == [Perform("b")]
    assert progress.timers == ()
    assert progress.completed == ("a", "nap")


def test_a_wait_that_times_out_fails_there_unless_it_has_a_default() -> None:
    def waiting(**options: Any) -> Workflow[Any]:
        wait = WaitFor("approval", "approved", str, timeout=60, **options)
        return Workflow("w", Undo, [_leaf("a"), wait, _leaf("b")], services={"svc": Service})

    strict, progress = waiting(), Progress()
    run(strict, progress, Started(), StepAnswered("a"))
    set_timer(progress, "approval", 60.0)
    assert run(strict, progress, TimerFired("approval")) == [Compensate("a")]
    assert progress.failure == Failure("approval", "no signal 'approved' within 60 s", False)
    lenient, progress = waiting(on_timeout="nobody"), Progress()
    run(lenient, progress, Started(), StepAnswered("a"))
    assert run(lenient, progress, TimerFired("approval")) == [Perform("b")]
    assert progress.awaiting == ()
