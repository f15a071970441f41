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


# -- parallels ------------------------------------------------------------------------------


def parallel(join: Any = None, *, tail: bool = True) -> Workflow[Any]:
    """a, then branches [x, y] and [z] at once, then b (unless not `tail`)."""
    from coordination import ALL, Parallel

    fork = Parallel(
        "fork", [[_leaf("x"), _leaf("y")], [_leaf("z")]], join=ALL if join is None else join
    )
    steps: list[Any] = [_leaf("a"), fork]
    if tail:
        steps.append(_leaf("b"))
    return Workflow("w", Undo, steps, services={"svc": Service})


def test_a_parallel_starts_every_branch_and_goes_on_when_all_have_ended() -> None:
    workflow = parallel()
    progress = Progress()
    assert run(workflow, progress, Started(), StepAnswered("a")) == [
        Perform("a"),
        Perform("x"),
        Perform("z"),
    ]
    assert set(progress.active) == {"x", "z"}
    assert run(workflow, progress, StepAnswered("z")) == []  # its branch ended: waits for x, y
    assert run(workflow, progress, StepAnswered("x")) == [Perform("y")]
    assert run(workflow, progress, StepAnswered("y")) == [Perform("b")]
    assert run(workflow, progress, StepAnswered("b")) == [End(Outcome.COMPLETED)]
    assert progress.completed == ("a", "z", "x", "y", "b")


def test_a_failing_branch_waits_for_its_siblings_then_compensates_newest_first() -> None:
    workflow = parallel()
    progress = Progress()
    run(workflow, progress, Started(), StepAnswered("a"), StepAnswered("x"))
    assert run(workflow, progress, StepRejected("z", "no")) == []  # y is under way: wait
    assert progress.active == ("y",)
    assert progress.failure == Failure("z", "no", technical=False)
    # y answers after the join gave up: it is compensated with the rest, never followed
    assert run(workflow, progress, StepAnswered("y")) == [Compensate("y")]
    actions = run(
        workflow, progress, CompensationDone("y"), CompensationDone("x"), CompensationDone("a")
    )
    assert actions == [Compensate("x"), Compensate("a"), SendNotices(), End(Outcome.COMPENSATED)]


def test_a_cancel_while_branches_run_stops_them_all() -> None:
    workflow = parallel()
    progress = Progress()
    run(workflow, progress, Started(), StepAnswered("a"))
    assert run(workflow, progress, CancelRequested()) == []  # x and z are under way
    assert run(workflow, progress, StepAnswered("x")) == []  # y never starts
    assert progress.failure == Failure("x", CANCELLED, technical=False)
    assert run(workflow, progress, StepFailed("z", "timeout")) == [Compensate("x")]
    run(workflow, progress, CompensationDone("x"), CompensationDone("a"))
    assert progress.outcome is Outcome.CANCELLED


def test_an_any_join_goes_on_with_the_first_branch_and_the_other_lands_later() -> None:
    from coordination import ANY

    workflow = parallel(ANY)
    progress = Progress()
    run(workflow, progress, Started(), StepAnswered("a"))
    assert run(workflow, progress, StepAnswered("z")) == [Perform("b")]  # x is still under way
    assert progress.closed == ("fork",)
    assert run(workflow, progress, StepAnswered("b")) == []  # the end waits for x to land
    assert run(workflow, progress, StepAnswered("x")) == [End(Outcome.COMPLETED)]  # no y
    assert progress.completed == ("a", "z", "b", "x")


def test_an_abandoned_step_that_fails_changes_nothing_but_one_that_answered_is_undone() -> None:
    from coordination import ANY

    workflow = parallel(ANY)
    progress = Progress()
    run(workflow, progress, Started(), StepAnswered("a"), StepAnswered("z"))
    assert run(workflow, progress, StepRejected("x", "no")) == []  # its branch lost anyway
    assert progress.failure is None
    progress = Progress()
    run(workflow, progress, Started(), StepAnswered("a"), StepAnswered("z"), StepAnswered("x"))
    assert run(workflow, progress, StepRejected("b", "no")) == [Compensate("x")]


def test_at_least_n_of_three_branches() -> None:
    from coordination import Parallel, at_least

    fork = Parallel("fork", [[_leaf("x")], [_leaf("y")], [_leaf("z")]], join=at_least(2))
    workflow = Workflow("w", Undo, [fork, _leaf("b")], services={"svc": Service})
    progress = Progress()
    assert run(workflow, progress, Started()) == [Perform("x"), Perform("y"), Perform("z")]
    assert run(workflow, progress, StepAnswered("y")) == []
    assert run(workflow, progress, StepAnswered("x")) == [Perform("b")]


def test_a_pause_holds_each_branch_and_a_resume_lets_all_go_on() -> None:
    workflow = parallel()
    progress = Progress()
    run(workflow, progress, Started(), StepAnswered("a"), PauseRequested())
    assert run(workflow, progress, StepAnswered("x"), StepAnswered("z")) == []
    assert progress.held == ("y",)
    assert run(workflow, progress, ResumeRequested()) == [Perform("y")]
    progress = Progress()
    run(workflow, progress, Started(), PauseRequested(), StepAnswered("a"))
    assert progress.held == ("fork",)  # the parallel itself waits
    assert run(workflow, progress, ResumeRequested()) == [Perform("x"), Perform("z")]


def test_a_wait_in_a_branch_stops_when_the_instance_turns_around() -> None:
    from coordination import Parallel

    fork = Parallel("fork", [[WaitFor("ok", "ok", str)], [_leaf("z")]])
    workflow = Workflow("w", Undo, [_leaf("a"), fork], services={"svc": Service})
    progress = Progress()
    run(workflow, progress, Started(), StepAnswered("a"))
    assert progress.awaiting == ("ok",)
    assert run(workflow, progress, StepRejected("z", "no")) == [Compensate("a")]
    assert progress.awaiting == ()
    assert progress.active == ()


@pytest.mark.parametrize(
    ("branches", "join", "message"),
    [
        ([], None, "has no branch"),
        ([[], [_leaf("x")]], None, "has an empty branch"),
        ([[_leaf("x")]], 2, "can never be met"),
    ],
)
def test_bad_parallels_are_refused_when_built(branches: Any, join: Any, message: str) -> None:
    from coordination import Parallel, at_least

    fork = Parallel("fork", branches, **({} if join is None else {"join": at_least(join)}))
    with pytest.raises(InvalidWorkflowError, match=message):
        Workflow("w", Undo, [_leaf("a"), fork], services={"svc": Service})


def test_a_reply_of_a_branch_is_readable_after_an_all_join_only() -> None:
    from coordination import ANY, Parallel

    def reader() -> Step:
        return Step("r", "svc", lambda ctx: Go(), nothing_to_undo=True, reads=("x",))

    Workflow(
        "w",
        Undo,
        [Parallel("p", [[_leaf("x")], [_leaf("y")]]), reader()],
        services={"svc": Service},
    )
    with pytest.raises(InvalidWorkflowError, match="reads 'x'"):
        Workflow(
            "w",
            Undo,
            [Parallel("p", [[_leaf("x")], [_leaf("y")]], join=ANY), reader()],
            services={"svc": Service},
        )
    with pytest.raises(InvalidWorkflowError, match="reads 'x'"):  # not from a sibling branch
        Workflow("w", Undo, [Parallel("p", [[_leaf("x")], [reader()]])], services={"svc": Service})


@st.composite
def interleavings(draw: st.DrawFn) -> tuple[Any, list[tuple[int, str]]]:
    from coordination import ALL, ANY

    join = draw(st.sampled_from([ALL, ANY]))
    moves = draw(
        st.lists(
            st.tuples(st.integers(0, 5), st.sampled_from(["answer", "answer", "reject", "fail"])),
            max_size=30,
        )
    )
    return join, moves


@settings(max_examples=300, deadline=None)
@given(case=interleavings(), cancel_at=st.integers(-1, 10))
def test_any_interleaving_of_branches_compensates_each_completed_step_once(
    case: tuple[Any, list[tuple[int, str]]], cancel_at: int
) -> None:
    join, moves = case
    workflow = parallel(join)
    progress = Progress()
    performing: list[str] = []
    undoing: list[str] = []
    effects: list[str] = []
    undone: list[str] = []
    ends: list[Outcome] = []

    def feed(event: Event) -> None:
        nonlocal progress
        progress, actions = apply(workflow, progress, event)
        for action in actions:
            if isinstance(action, Perform):
                assert action.step not in performing
                assert action.step not in effects
                performing.append(action.step)
            elif isinstance(action, Compensate):
                assert action.step in effects
                assert action.step not in undone
                undoing.append(action.step)
            elif isinstance(action, End):
                ends.append(action.outcome)

    feed(Started())
    for number, (pick, how) in enumerate(moves):
        if number == cancel_at:
            feed(CancelRequested())
        if undoing:
            step = undoing.pop(0)
            undone.append(step)
            feed(CompensationDone(step))
        elif performing:
            step = performing.pop(pick % len(performing))
            if how == "answer":
                effects.append(step)
                feed(StepAnswered(step))
            else:
                feed((StepRejected if how == "reject" else StepFailed)(step, "no"))
    while undoing or performing:  # everything under way ends well
        if undoing:
            step = undoing.pop(0)
            undone.append(step)
            feed(CompensationDone(step))
        else:
            step = performing.pop(0)
            effects.append(step)
            feed(StepAnswered(step))
    assert len(ends) == 1
    if ends[0] is Outcome.COMPLETED:
        assert undone == []
        assert "b" in effects
    else:
        assert undone == list(reversed(effects))  # every effect undone once, newest first


# -- for-each -------------------------------------------------------------------------------


def for_each(max_concurrency: int | None = None) -> Workflow[Any]:
    """a, then one step per item (at most `max_concurrency` at once), then b."""
    from coordination import ForEach

    per_item = Step("check", "svc", lambda ctx: Go(), compensation=lambda ctx: Undo())
    each = ForEach("checks", lambda ctx: [1, 2, 3], per_item, max_concurrency=max_concurrency)
    return Workflow("w", Undo, [_leaf("a"), each, _leaf("b")], services={"svc": Service})


def test_a_for_each_lists_its_items_then_runs_one_step_per_item() -> None:
    from coordination.core import Collect, ItemsListed, ListItems

    workflow = for_each()
    progress = Progress()
    assert run(workflow, progress, Started(), StepAnswered("a")) == [
        Perform("a"),
        ListItems("checks"),
    ]
    assert run(workflow, progress, ItemsListed("checks", 3)) == [
        Perform("checks[0]"),
        Perform("checks[1]"),
        Perform("checks[2]"),
    ]
    assert run(workflow, progress, StepAnswered("checks[2]"), StepAnswered("checks[0]")) == []
    assert run(workflow, progress, StepAnswered("checks[1]")) == [
        Collect("checks", 3),
        Perform("b"),
    ]
    assert progress.completed[-1] == "checks"


def test_a_for_each_runs_at_most_its_concurrency_at_once() -> None:
    from coordination.core import ItemsListed

    workflow = for_each(max_concurrency=1)
    progress = Progress()
    run(workflow, progress, Started(), StepAnswered("a"))
    assert run(workflow, progress, ItemsListed("checks", 3)) == [Perform("checks[0]")]
    assert run(workflow, progress, StepAnswered("checks[0]")) == [Perform("checks[1]")]
    assert progress.active == ("checks[1]",)


def test_an_empty_list_goes_straight_on() -> None:
    from coordination.core import Collect, ItemsListed

    workflow = for_each()
    progress = Progress()
    run(workflow, progress, Started(), StepAnswered("a"))
    assert run(workflow, progress, ItemsListed("checks", 0)) == [
        Collect("checks", 0),
        Perform("b"),
    ]


def test_a_failing_item_waits_for_the_others_then_undoes_every_completed_item() -> None:
    from coordination.core import ItemsListed

    workflow = for_each()
    progress = Progress()
    run(workflow, progress, Started(), StepAnswered("a"), ItemsListed("checks", 3))
    run(workflow, progress, StepAnswered("checks[1]"))
    assert run(workflow, progress, StepRejected("checks[0]", "no")) == []
    assert run(workflow, progress, StepAnswered("checks[2]")) == [Compensate("checks[2]")]
    actions = run(
        workflow,
        progress,
        CompensationDone("checks[2]"),
        CompensationDone("checks[1]"),
        CompensationDone("a"),
    )
    assert actions == [
        Compensate("checks[1]"),
        Compensate("a"),
        SendNotices(),
        End(Outcome.COMPENSATED),
    ]


def test_a_pause_holds_the_next_item() -> None:
    from coordination.core import ItemsListed

    workflow = for_each(max_concurrency=1)
    progress = Progress()
    run(workflow, progress, Started(), StepAnswered("a"), ItemsListed("checks", 2))
    run(workflow, progress, PauseRequested(), StepAnswered("checks[0]"))
    assert progress.held == ("checks[1]",)
    assert run(workflow, progress, ResumeRequested()) == [Perform("checks[1]")]


def test_bad_for_eaches_are_refused_when_built() -> None:
    from coordination import ForEach

    told = Step("note", "svc", lambda ctx: Go(), nothing_to_undo=True)
    with pytest.raises(InvalidWorkflowError, match="builds the list"):
        ForEach("each", None, told)  # type: ignore[arg-type]
    with pytest.raises(InvalidWorkflowError, match="max_concurrency"):
        ForEach("each", lambda ctx: [], told, max_concurrency=0)
    bare = Step("check", "svc", lambda ctx: Go())
    with pytest.raises(InvalidWorkflowError, match="another item can fail"):
        Workflow("w", Undo, [ForEach("each", lambda ctx: [], bare)], services={"svc": Service})
    with pytest.raises(InvalidWorkflowError, match="reads 'later'"):
        Workflow(
            "w",
            Undo,
            [ForEach("each", lambda ctx: [], told, reads=("later",)), _leaf("later")],
            services={"svc": Service},
        )
    with pytest.raises(InvalidWorkflowError, match=r"\[ and \]"):
        Workflow("w", Undo, [_leaf("a[0]")], services={"svc": Service})
