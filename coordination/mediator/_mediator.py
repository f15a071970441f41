"""Mediator (orchestration): one place runs every step, retry, timeout and compensation.

The Mediator keeps every instance's state in its store and moves each instance on as the
answers of its services land: a command goes out with the mediator's reply subject, and the
reply (or its timeout, or its error) advances the instance; no task waits per instance, so
one mediator keeps thousands in flight. It knows the exact step of every instance.

Several processes may run a Mediator for one workflow: each moves on the instances it
started (their ids name it), and answers for them the others' `status`, `result`, `cancel`,
`pause` and `resume` (see `_remote`). On a shared durable store (SQLite on one machine, NATS
key-value across machines) a mediator reads any instance's status from the store itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from time import perf_counter
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

import msgspec

from actors import Actor, ActorRef, ActorSystem, acting_as

from .. import core
from .._children import Children
from .._clock import Clock, SystemClock, Timers
from .._errors import CoordinationError, UnknownWorkflowError, WorkflowEndedError
from .._metrics import WorkflowMetrics
from .._outcomes import DEFAULT_KEEP, Outcomes
from .._remote import Remote, new_workflow_ids, owner_of
from .._status import Outcome, WorkflowResult, WorkflowStatus, history_entry
from .._status_query import GetStatus, StatusReply, reply_from_state, status_from_reply
from ..core import (
    Actions,
    Await,
    BranchChosen,
    Calculate,
    CancelRequested,
    Choose,
    Collect,
    Compensate,
    CompensationDone,
    CompensationFailed,
    End,
    ItemsListed,
    ListItems,
    PauseRequested,
    Perform,
    ResumeRequested,
    SendNotices,
    SignalReceived,
    StartChild,
    Started,
    StartTimer,
    StepAnswered,
    StepFailed,
    StepRejected,
    TimerFired,
)
from ..core._executor import CommandPort, send_notices, tell_with_retry
from ..definition._workflow import (
    FAIL,
    Branch,
    Compute,
    Failure,
    ForEach,
    Rejected,
    Step,
    SubWorkflow,
    Workflow,
    WorkflowContext,
    builder_context,
    check_input,
    check_signal,
)
from ..stores._store import InstanceState, MemoryStateStore, StateStore

__all__ = ("Mediator",)

_MAX_SAVE_BACKOFF = 2.0

logger = logging.getLogger("coordination")

In = TypeVar("In", bound=msgspec.Struct)


class _MediatorActor(Actor):
    """Answers status queries over the bus from the mediator's store."""

    def __init__(self, store: StateStore) -> None:
        self.store = store

    async def status(self, msg: GetStatus) -> StatusReply:
        return reply_from_state(await self.store.load(msg.workflow_id))


@dataclass(slots=True)
class _Run:
    """One running instance: its state (the core's progress within), the context its
    builders see, and when its latest command went out."""

    state: InstanceState
    context: WorkflowContext[Any]
    sent_at: float = 0.0
    """When the latest command went out (for the step duration metric and `stuck`)."""
    backlog: deque[Callable[[], Awaitable[None]]] | None = None
    """With a store whose saves wait: what is to be done for this instance, in order, while
    a task of its own does it (None when nothing is)."""
    items: dict[str, list[Any]] | None = None
    """The lists its for-eaches built (worked out again after a restart)."""


class _Sent(msgspec.Struct, gc=False):
    """What a step's command in flight is for (the port's token)."""

    run: _Run
    step: str


class _Undo(_Sent, gc=False):
    """What a compensation in flight is for."""


class Mediator(Generic[In]):
    """Runs `workflow` by orchestration on `system`'s bus.

    ```python
    async with Mediator(system, order_workflow) as mediator:
        order = await mediator.start(PlaceOrder(...))
        result = await mediator.result(order)
    ```
    Leaving the block cancels the instances still running (their state stays in the store).
    """

    strategy = "mediator"

    def __init__(
        self,
        system: ActorSystem,
        workflow: Workflow[In],
        *,
        store: StateStore | None = None,
        keep_finished: int = DEFAULT_KEEP,
        stuck_after: float = 60.0,
        clock: Clock | None = None,
    ) -> None:
        self.system = system
        self.clock: Clock = clock if clock is not None else SystemClock()
        """What the timers of `Sleep` read (a `ManualClock` in a test skips time)."""
        self._timers = Timers(self.clock)
        self.stuck_after = stuck_after
        """Seconds without progress after which a running instance counts as stuck."""
        self.workflow = workflow
        self.store: StateStore = store if store is not None else MemoryStateStore()
        self._answered = {step.name: StepAnswered(step.name) for step in workflow.steps}
        """The event of each step's answer (frozen: made once)."""
        self._keep = self.store.keep if type(self.store) is MemoryStateStore else None
        """A memory store's synchronous save: no await per step where nothing is written.
        With any other store, a save may wait (a key-value server that restarts), so each
        instance's replies are handled in order by a task of the instance's own (`_serially`):
        one instance's save holds that instance, never the replies of the others."""
        self._workers: set[asyncio.Task[None]] = set()
        self.metrics = WorkflowMetrics.of(system, workflow.name, self.strategy)
        self.metrics.stuck = lambda: len(self.stuck())
        self.outcomes = Outcomes(workflow.name, keep_finished, self.metrics)
        """Whose results `result` gives: the latest `keep_finished` finished are kept."""
        self.name = f"mediator.{workflow.name}"
        self._new_id = new_workflow_ids(workflow, system)
        self._remote = Remote(
            system,
            workflow,
            self.name,
            self.outcomes,
            self._local_status,
            self,
            durable=lambda: type(self.store) is not MemoryStateStore,
        )
        self._runs: dict[str, _Run] = {}
        self._children = Children(
            workflow,
            lambda child: Mediator(
                system,
                child,
                keep_finished=keep_finished,
                stuck_after=stuck_after,
                clock=self.clock,
            ),
        )
        """The mediators of the sub-workflows' children."""
        self.children: Mapping[str, Any] = self._children.strategies
        """The strategies that run the children of the sub-workflows, by sub-workflow
        name: ask them a child's `status`, `result`, or `cancel` it."""
        self._refs: dict[str, ActorRef[Any]] = {}
        self._port: CommandPort[_Sent] | None = None
        self._actor: ActorRef[_MediatorActor] | None = None
        self.resumed = 0
        """Instances taken up from the store when the mediator started (a durable store
        keeps those a stopped or crashed mediator left running)."""

    async def __aenter__(self) -> Self:
        self._refs = {
            name: self.system.ref(cls, name) for name, cls in self.workflow.services.items()
        }
        store = self.store
        self._actor = await self.system.spawn(
            lambda: _MediatorActor(store), name=self.name, private=True
        )
        await self._remote.open()
        self._port = CommandPort(
            self.system,
            self.name,
            self._replied,
            self._command_failed,
            self.metrics,
            clock=self.clock,
        )
        await self._port.open()
        await self._children.open()
        self.resumed = await self._resume()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        port, self._port = self._port, None
        if port is not None:
            await port.close()
        await self._timers.close()
        await self._children.close()
        await self._remote.close()
        workers, self._workers = self._workers, set()
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        self._runs.clear()
        self.outcomes.stop()
        self.metrics.stopped()
        if self._actor is not None and not self._actor.stopped:
            await self.system.stop(self._actor)

    # -- the strategy API -----------------------------------------------------------------

    async def start(self, workflow_input: In, *, results: Mapping[str, Any] | None = None) -> str:
        """Start an instance; returns its id once its first command is sent.

        `results` are replies of steps done elsewhere, which this instance's commands may read
        (a hybrid hands the core's replies to the strategy that runs the rest).
        """
        if self._port is None:
            raise RuntimeError("use the mediator as `async with Mediator(...)`")
        check_input(self.workflow, workflow_input)
        workflow_id = self._new_id()
        await self._begin(workflow_input, workflow_id, results)
        return workflow_id

    async def _begin(
        self, workflow_input: In, workflow_id: str, results: Mapping[str, Any] | None = None
    ) -> None:
        state = InstanceState(workflow_id, workflow_input, dict(results or {}))
        run = _Run(state, WorkflowContext(workflow_id, workflow_input, state.results))
        self._runs[workflow_id] = run
        self.outcomes.add(workflow_id)
        with acting_as(self.name):
            await self._apply(run, Started())

    async def _save(self, state: InstanceState) -> None:
        """Save before acting, whatever it takes: a store that fails (a NATS server that
        restarts, a locked file) is tried again with backoff, and the instance waits, since
        acting on a state that was not saved could do a step twice after a crash. Only a
        stopping mediator gives up."""
        delay = 0.05
        while True:
            try:
                await self.store.save(state)
                return
            except Exception as exc:
                if self._port is None:
                    raise
                self.metrics.store_errors += 1
                logger.warning(
                    "%s: saving its state failed (%r); trying again in %.2f s",
                    state.workflow_id,
                    exc,
                    delay,
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, _MAX_SAVE_BACKOFF)

    def stuck(self) -> list[str]:
        """The running instances that made no progress for more than `stuck_after` seconds
        (a service that does not answer, and no timeout to end the wait)."""
        now = perf_counter()
        limit = self.stuck_after
        return [wid for wid, run in self._runs.items() if now - run.sent_at > limit]

    async def status(self, workflow_id: str) -> WorkflowStatus:
        """The exact state of an instance: read from the store (by this mediator's actor, over
        the bus), or, for one another process started on a memory store, asked of that
        process; with how long it has been waiting, for a running instance of this
        mediator."""
        if type(self.store) is MemoryStateStore:
            status = await self._remote.status(workflow_id)
            if status is not None:
                return status
        return await self._local_status(workflow_id)

    async def _local_status(self, workflow_id: str) -> WorkflowStatus:
        assert self._actor is not None
        began = perf_counter()
        reply = await self._actor.ask(GetStatus(workflow_id))
        self.metrics.status_took(perf_counter() - began)
        if not reply.found:
            raise UnknownWorkflowError(f"no workflow {workflow_id!r} in {self.workflow.name}")
        status = status_from_reply(workflow_id, self.strategy, reply)
        run = self._runs.get(workflow_id)
        if run is not None:
            since = perf_counter() - run.sent_at
            status = msgspec.structs.replace(status, since_progress=since)
        return status

    async def result(self, workflow_id: str, timeout: float | None = None) -> WorkflowResult:
        """Wait for the instance to end and return its outcome (of one another process
        started, as that process tells it, or, when it is gone, as a shared durable store
        says)."""
        result = await self._remote.result(workflow_id, timeout)
        if result is not None:
            return result
        if self.outcomes.knows(workflow_id) or type(self.store) is MemoryStateStore:
            return await self.outcomes.wait(workflow_id, timeout)
        state = await self.store.load(workflow_id)  # its starter is gone: ask the store
        if state is None:
            raise UnknownWorkflowError(f"no workflow {workflow_id!r} in {self.workflow.name}")
        progress = state.progress
        if progress.running:
            raise _orphaned(workflow_id)
        return WorkflowResult(
            workflow_id, progress.outcome, dict(state.results), progress.failure, progress.attention
        )

    async def cancel(self, workflow_id: str, *, by: str = "api") -> bool:
        """Ask a running instance to stop: the step under way finishes, then what it completed
        is compensated (a paused one at once). False when it had already ended. `by` names who
        asked, in the instance's history."""
        done = await self._remote.control(workflow_id, "cancel", by)
        if done is not None:
            return done
        run = await self._running_run(workflow_id)
        if run is None:
            return False
        run.state.history.append(history_entry(by, "cancel"))
        if run.state.progress.paused:  # released to unwind
            run.state.history.append(history_entry(by, "resume"))
        with acting_as(self.name):
            await self._apply(run, CancelRequested())
        await self._children.cancel(workflow_id, run.state.progress.active, by)
        return True

    async def signal(self, workflow_id: str, signal: str, payload: Any) -> None:
        """Send the instance a signal (see `Strategy.signal`); one that comes before the
        instance waits for it is kept, in the store with the replies."""
        wait, value = check_signal(self.workflow, signal, payload)
        if await self._remote.signal(workflow_id, signal, value):
            return
        run = await self._running_run(workflow_id)
        if run is None:
            raise WorkflowEndedError(f"{workflow_id} has ended: signal {signal!r} comes too late")
        results = run.state.results
        if wait.name in results:
            raise CoordinationError(f"{workflow_id} has had signal {signal!r} already")
        results[wait.name] = value
        with acting_as(self.name):
            if wait.name in run.state.progress.active:
                self._timers.cancel(f"{workflow_id}.{wait.name}")  # its timeout, if any
                await self._apply(run, SignalReceived(wait.name))
            else:  # early: kept until the instance waits for it
                await self._save(run.state)

    async def pause(self, workflow_id: str, *, by: str = "api") -> bool:
        """Hold a running instance: the step under way finishes, and no further step starts
        until `resume`. False when it had ended (or was paused already)."""
        done = await self._remote.control(workflow_id, "pause", by)
        if done is not None:
            return done
        run = await self._running_run(workflow_id)
        if run is None or run.state.progress.paused:
            return False
        run.state.history.append(history_entry(by, "pause"))
        await self._apply(run, PauseRequested())
        return True

    async def resume(self, workflow_id: str, *, by: str = "api") -> bool:
        """Let a paused instance go on. False when it was not paused."""
        done = await self._remote.control(workflow_id, "resume", by)
        if done is not None:
            return done
        run = await self._running_run(workflow_id)
        if run is None or not run.state.progress.paused:
            return False
        run.state.history.append(history_entry(by, "resume"))
        with acting_as(self.name):
            await self._apply(run, ResumeRequested())
        return True

    async def _running_run(self, workflow_id: str) -> _Run | None:
        """The run of a running instance of this mediator's (None: it has ended). One it does
        not know, on a shared durable store, is looked up there: ended (None), or running
        without a process to drive it, which this raises UnknownWorkflowError to say."""
        if not self.outcomes.knows(workflow_id) and type(self.store) is not MemoryStateStore:
            state = await self.store.load(workflow_id)
            if state is None:
                raise UnknownWorkflowError(f"no workflow {workflow_id!r} in {self.workflow.name}")
            if state.progress.running:
                raise _orphaned(workflow_id)
            return None
        if not self.outcomes.is_running(workflow_id):
            return None
        run = self._runs.get(workflow_id)
        if run is None or run.state.outcome is not Outcome.RUNNING:
            return None
        return run

    # -- moving an instance on ------------------------------------------------------------

    async def _resume(self) -> int:
        """Take up the instances the store says are running. A step or compensation under
        way is sent again with its message id, so an idempotent service answers it without
        acting twice; a held one waits for its resume."""
        resumed = 0
        alive: dict[str, bool] = {}
        for state in await self.store.running():
            workflow_id = state.workflow_id
            if workflow_id in self._runs:
                continue
            owner = owner_of(workflow_id)
            if owner is not None and owner != self.system.node:
                if owner not in alive:
                    alive[owner] = await self._remote.answers(owner)
                if alive[owner]:  # its starter, on the same store, still drives it
                    continue
            progress = state.progress
            context = WorkflowContext(workflow_id, state.input, state.results, progress.failure)
            run = _Run(state, context)
            self._runs[workflow_id] = run
            self.outcomes.add(workflow_id)
            resumed += 1
            with acting_as(self.name):
                for timer in progress.timers:  # a sleep goes on where it was: its end is kept
                    self._arm(run, timer.name, timer.due)
                actions: Actions = (
                    *(
                        core.start_action(self.workflow, name)
                        for name in progress.active
                        if name not in self.workflow.sleeps
                    ),
                    *(Compensate(step) for step in progress.compensating),
                )
                if not actions and not progress.held:  # saved before its first step
                    actions = core.apply(self.workflow, progress, Started())[1]
                await self._act(run, actions)
        if resumed:
            logger.info("%s: resumed %d running instances", self.name, resumed)
        return resumed

    def _arm(self, run: _Run, step: str, due: float) -> None:
        """Fire the sleep `step` of `run` when `due`."""
        workflow_id = run.state.workflow_id

        async def fire() -> None:
            if self._runs.get(workflow_id) is not run:
                return
            wait = self.workflow.waits.get(step)
            if (
                wait is not None
                and wait.on_timeout is not FAIL
                and step in run.state.progress.active
            ):
                run.state.results[step] = wait.decode(wait.on_timeout)  # its signal's stand-in
            with acting_as(self.name):
                await self._apply(run, TimerFired(step))

        self._timers.arm(f"{workflow_id}.{step}", due, fire)

    async def _apply(self, run: _Run, event: core.Event) -> None:
        """Feed `event` to the core, then do what it says."""
        step = await self._decide(run, event)
        if step is not None:
            await self._perform(run, step)

    async def _decide(self, run: _Run, event: core.Event) -> Step | None:
        """Feed `event` to the core. When all it says is to perform the next step (most of
        the time), save and return that step; else carry out what it says, and None."""
        _, actions = core.apply(self.workflow, run.state.progress, event)
        if len(actions) == 1 and type(actions[0]) is Perform:
            step = self.workflow.by_name.get(actions[0].step)  # None: a for-each's item
            if step is not None:
                keep = self._keep
                if keep is not None:
                    keep(run.state)
                else:
                    await self._save(run.state)
                return step
        await self._act(run, actions)
        return None

    async def _act(self, run: _Run, actions: Actions) -> None:
        """Carry out the core's actions: the state is saved before any command goes out, and
        at the end after the failure notices (so that a crash in between sends them again,
        with the same message ids, rather than never)."""
        state = run.state
        first = actions[0] if actions else None
        if type(first) is not SendNotices and type(first) is not End:
            await self._save(state)  # End saves (in _finish)
        if self._children.strategies and state.progress.failure is not None:
            self._stop_children(run)
        for action in actions:
            match action:
                case Perform(step=step) if step in self.workflow.by_name:
                    await self._perform(run, self.workflow.step(step))
                case Perform(step=step):
                    await self._perform_item(run, step)
                case ListItems(step=step):
                    await self._list(run, self.workflow.for_eaches[step])
                case Collect(step=step, count=count):
                    results = state.results
                    results[step] = [results.get(f"{step}[{index}]") for index in range(count)]
                case Choose(branch=branch):
                    await self._choose(run, self.workflow.branches[branch])
                case Calculate(step=step):
                    await self._calculate(run, self.workflow.computes[step])
                case Await(step=step) if step in state.results:  # its signal came early
                    await self._apply(run, SignalReceived(step))
                case Await(step=step) if self.workflow.waits[step].timeout is not None:
                    timeout = self.workflow.waits[step].timeout
                    due = self.clock.now() + (timeout or 0.0)
                    core.set_timer(state.progress, step, due)
                    await self._save(state)
                    self._arm(run, step, due)
                case StartTimer(step=step):
                    due = self.workflow.sleeps[step].due(self.clock.now())
                    core.set_timer(state.progress, step, due)
                    await self._save(state)
                    self._arm(run, step, due)
                case StartChild(step=step):
                    self._in_task(run, self._run_child(run, self.workflow.subworkflows[step]))
                case Compensate(step=step) if step in self.workflow.subworkflows:
                    self._in_task(run, self._undo_child(run, self.workflow.subworkflows[step]))
                case Compensate(step=step):
                    await self._compensate(run, step)
                case SendNotices():
                    run.context.failure = state.progress.failure
                    await send_notices(self.workflow, self._refs, run.context, state.workflow_id)
                case End():
                    await self._finish(run)

    async def _perform(self, run: _Run, step: Step | None) -> None:
        """Send `step`'s command: one that is waited for goes out through the port (its end
        comes back through `_replied` or `_command_failed`); one that is not is told, counts
        as answered once sent, and the steps after it follow here."""
        while step is not None:
            try:
                command = step.build(builder_context(run.context, step.reads, step.name))
            except Exception as exc:  # a bug in the definition: fail the step, not the mediator
                reason = f"building the command failed: {type(exc).__name__}: {exc}"
                step = await self._decide(run, StepFailed(step.name, reason))
                continue
            told = await self._send(run, step, step.name, command)
            if told is None:
                return  # on with the answer, when it comes
            step = await self._decide(run, told)

    def _send(
        self, run: _Run, step: Step, name: str, command: msgspec.Struct
    ) -> Awaitable[StepAnswered | StepFailed | None]:
        """Send the command of `step` (`name`: the step, or a for-each's item of it), with its
        message id: through the port, when it is waited for (its end comes back through
        `_replied` or `_command_failed`: None); else told, and what that makes of the step
        (answered, or failed when it could not be told). Not a coroutine of its own: the
        caller awaits the port's send itself, one frame fewer per step."""
        workflow_id = run.state.workflow_id
        run.sent_at = perf_counter()
        message_id = core.message_id(workflow_id, name)
        if step.wait:
            port = self._port
            assert port is not None
            return port.send(
                self._refs[step.service],
                command,
                _Sent(run, name),
                message_id=message_id,
                correlation_id=workflow_id,
                policy=step.retry,
                timeout=step.timeout,
            )
        return self._tell(step, name, command, workflow_id, message_id)

    async def _tell(
        self, step: Step, name: str, command: msgspec.Struct, workflow_id: str, message_id: str
    ) -> StepAnswered | StepFailed:
        """Tell the command of a step nobody waits for: answered once it is told."""
        error = await tell_with_retry(
            self._refs[step.service],
            command,
            policy=step.retry,
            workflow_id=workflow_id,
            message_id=message_id,
        )
        if error is not None:
            return StepFailed(name, error)
        return self._answered.get(name) or StepAnswered(name)

    # -- sub-workflows ------------------------------------------------------------------

    def _in_task(self, run: _Run, work: Coroutine[Any, Any, None]) -> None:
        """Wait for a child in a task of its own: the instance's other steps go on."""
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        self._workers.add(task)
        task.add_done_callback(self._workers.discard)

    def _stop_children(self, run: _Run) -> None:
        """The instance turned around: the children still under way are cancelled (a
        failing branch stops its siblings), and answer as cancelled children do."""
        active = run.state.progress.active
        if self._children.under_way(active):
            self._in_task(run, self._children.cancel(run.state.workflow_id, active, self.name))

    async def _run_child(self, run: _Run, sub: SubWorkflow) -> None:
        """Start the child of `sub` (or find the one started before) and, once it has
        ended, answer for the step as its service would."""
        workflow_id = run.state.workflow_id
        result, happened = await self._children.run(
            workflow_id,
            sub,
            lambda: sub.build(builder_context(run.context, sub.reads, sub.name)),
            lambda: run.state.progress,
        )
        if result is not None and sub.name in run.state.progress.active:
            run.state.results[sub.name] = result
        await self._answer(run, happened)

    async def _undo_child(self, run: _Run, sub: SubWorkflow) -> None:
        """Have the completed child of `sub` compensate itself."""
        failure = run.state.progress.failure
        assert failure is not None
        happened = await self._children.undo(run.state.workflow_id, sub, failure)
        await self._answer(run, happened)

    async def _answer(self, run: _Run, happened: core.Event) -> None:
        """Feed the core what came of a child, in turn with the instance's other news."""
        if self._runs.get(run.state.workflow_id) is not run:
            return  # the mediator stopped meanwhile

        async def apply() -> None:
            with acting_as(self.name):
                await self._apply(run, happened)

        if self._keep is None:
            self._serially(run, apply)
        else:
            await apply()

    async def _start_as(self, workflow_input: In, workflow_id: str) -> bool:
        """Start an instance with the id `workflow_id` (a child, whose id its parent's
        gives), unless this mediator knows it already (False)."""
        if self.outcomes.knows(workflow_id):  # started before (or taken up from the store)
            return False
        await self._begin(workflow_input, workflow_id)
        return True

    async def _undo(self, workflow_id: str, failure: Failure) -> WorkflowResult:
        """Compensate a completed instance (a child whose parent turned around): its
        completed steps are undone, newest first, and it ends again."""
        state = await self.store.load(workflow_id)
        if state is None:
            raise UnknownWorkflowError(f"no workflow {workflow_id!r} in {self.workflow.name}")
        progress, actions = core.compensate_completed(self.workflow, state.progress, failure)
        if not actions:
            return await self.outcomes.wait(workflow_id)
        state.progress = progress
        run = _Run(state, WorkflowContext(workflow_id, state.input, state.results, failure))
        self._runs[workflow_id] = run
        self.outcomes.reopen(workflow_id)
        with acting_as(self.name):
            await self._act(run, actions)
        return await self.outcomes.wait(workflow_id)

    async def _list(self, run: _Run, for_each: ForEach) -> None:
        """Build a for-each's list (an `over` that raises fails the instance there)."""
        name = for_each.name
        try:
            items = for_each.items(builder_context(run.context, for_each.reads, name))
        except Exception as exc:
            await self._apply(run, StepFailed(name, f"listing failed: {type(exc).__name__}: {exc}"))
            return
        if run.items is None:
            run.items = {}
        run.items[name] = items
        await self._apply(run, ItemsListed(name, len(items)))

    def _item_context(self, run: _Run, name: str, *, undo: bool) -> WorkflowContext[Any]:
        """The context the builders of the for-each item `name` see."""
        found = self.workflow.item(name)
        assert found is not None
        for_each, index = found
        items = run.items.get(for_each.name) if run.items is not None else None
        return for_each.item_context(run.context, index, undo=undo, items=items)

    async def _perform_item(self, run: _Run, name: str) -> None:
        """Send the command of a for-each's item: as a step's, with the item's own message
        id."""
        step = self.workflow.step_of(name)
        try:
            command = step.build(self._item_context(run, name, undo=False))
        except Exception as exc:
            reason = f"building the command failed: {type(exc).__name__}: {exc}"
            await self._apply(run, StepFailed(name, reason))
            return
        told = await self._send(run, step, name, command)
        if told is not None:
            await self._apply(run, told)

    async def _choose(self, run: _Run, branch: Branch) -> None:
        """Decide `branch` from the context (a `when` that raises fails the instance there,
        as a step whose command cannot be built does)."""
        try:
            then = branch.taken(builder_context(run.context, branch.reads, branch.name))
        except Exception as exc:
            reason = f"deciding the branch failed: {type(exc).__name__}: {exc}"
            await self._apply(run, StepFailed(branch.name, reason))
            return
        await self._apply(run, BranchChosen(branch.name, then))

    async def _calculate(self, run: _Run, compute: Compute) -> None:
        """Run a compute in place, and answer for it as its service would."""
        name = compute.name
        try:
            reply = compute.fn(builder_context(run.context, compute.reads, name))
        except Exception as exc:
            await self._apply(
                run, StepFailed(name, f"computing it failed: {type(exc).__name__}: {exc}")
            )
            return
        if isinstance(reply, Rejected):
            await self._apply(run, StepRejected(name, reply.reason))
            return
        run.state.results[name] = reply
        await self._apply(run, StepAnswered(name))

    async def _compensate(self, run: _Run, name: str) -> None:
        """Send the compensation of the step (or the for-each's item) `name`."""
        step = self.workflow.step_of(name)
        assert step.compensation is not None
        workflow_id = run.state.workflow_id
        run.context.failure = run.state.progress.failure
        try:
            context = (
                builder_context(run.context, step.undo_reads, name)
                if name == step.name
                else self._item_context(run, name, undo=True)
            )
            command = step.compensation(context)
        except Exception as exc:
            await self._apply(run, CompensationFailed(name, f"building it failed: {exc!r}"))
            return
        run.sent_at = perf_counter()
        assert self._port is not None
        await self._port.send(
            self._refs[step.service],
            command,
            _Undo(run, name),
            message_id=core.undo_message_id(workflow_id, name),
            correlation_id=workflow_id,
            policy=step.retry,
            timeout=step.timeout,
        )

    async def _replied(self, sent: _Sent, reply: Any, data: bytes) -> None:
        if self._keep is None:
            self._serially(sent.run, lambda: self._answered_by(sent, reply))
        else:
            await self._answered_by(sent, reply)

    async def _command_failed(self, sent: _Sent, reason: str) -> None:
        if self._keep is None:
            self._serially(sent.run, lambda: self._failed_for(sent, reason))
        else:
            await self._failed_for(sent, reason)

    def _serially(self, run: _Run, work: Callable[[], Awaitable[None]]) -> None:
        """Do `work` for `run` after what is already to be done for it, in a task of the
        instance's own, so that the port's reply handler and sweeper never wait on a save."""
        backlog = run.backlog
        if backlog is not None:
            backlog.append(work)
            return
        backlog = run.backlog = deque((work,))
        worker = asyncio.get_running_loop().create_task(self._work_through(run, backlog))
        self._workers.add(worker)
        worker.add_done_callback(self._workers.discard)

    async def _work_through(self, run: _Run, backlog: deque[Callable[[], Awaitable[None]]]) -> None:
        try:
            while backlog:
                try:
                    await backlog[0]()
                except Exception:
                    logger.exception("%s: moving the instance on failed", run.state.workflow_id)
                backlog.popleft()
        finally:
            run.backlog = None

    async def _answered_by(self, sent: _Sent, reply: Any) -> None:
        run = sent.run
        if run.state.workflow_id not in self._runs:
            return  # the mediator stopped meanwhile
        step = sent.step
        with acting_as(self.name):
            if type(sent) is _Undo:
                if isinstance(reply, Rejected):
                    await self._apply(run, CompensationFailed(step, f"refused: {reply.reason}"))
                else:
                    self.metrics.compensations += 1
                    await self._apply(run, CompensationDone(step))
                return
            answered = self._answered.get(step)
            if answered is None:  # a for-each's item: timed as the step it runs
                answered = StepAnswered(step)
                self.metrics.step_took(
                    self.workflow.step_of(step).name, perf_counter() - run.sent_at
                )
            else:
                self.metrics.step_took(step, perf_counter() - run.sent_at)
            if isinstance(reply, Rejected):
                await self._apply(run, StepRejected(step, reply.reason))
                return
            if step in run.state.progress.active:
                run.state.results[step] = reply
            following = await self._decide(run, answered)
            if following is not None:
                await self._perform(run, following)

    async def _failed_for(self, sent: _Sent, reason: str) -> None:
        run = sent.run
        if run.state.workflow_id not in self._runs:
            return
        with acting_as(self.name):
            if type(sent) is _Undo:
                await self._apply(run, CompensationFailed(sent.step, reason))
            else:
                await self._apply(run, StepFailed(sent.step, reason))

    async def _finish(self, run: _Run) -> None:
        state = run.state
        progress = state.progress
        if progress.attention:
            logger.error(
                "%s: compensations failed: %s", state.workflow_id, "; ".join(progress.attention)
            )
        await self._save(state)
        del self._runs[state.workflow_id]
        result = WorkflowResult(
            state.workflow_id,
            progress.outcome,
            dict(state.results),
            progress.failure,
            progress.attention,
        )
        self.outcomes.finish(state.workflow_id, result)


def _orphaned(workflow_id: str) -> UnknownWorkflowError:
    return UnknownWorkflowError(
        f"{workflow_id} is running, and the process that started it does not answer: a "
        "Mediator started on the same store takes it up, and then answers for it"
    )
