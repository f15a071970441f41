"""Mediator (orchestration): one place runs every step, retry, timeout and compensation.

The Mediator keeps every instance's state in its store and moves each instance on as the
answers of its services land: a command goes out with the mediator's reply subject, and the
reply (or its timeout, or its error) advances the instance; no task waits per instance, so
one mediator keeps thousands in flight. Its actor, `mediator.<workflow>` on the bus, answers
status queries, so anyone on the bus can ask where an instance stands. It knows the exact
step of every instance.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from time import perf_counter
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

import msgspec

from actors import Actor, ActorRef, ActorSystem, acting_as
from brokers import new_id

from ._commands import CommandPort, send_notices
from ._definition import Failure, Rejected, Workflow, WorkflowContext, builder_context
from ._errors import UnknownWorkflowError
from ._metrics import WorkflowMetrics
from ._outcomes import DEFAULT_KEEP, Outcomes
from ._status import Outcome, WorkflowResult, WorkflowStatus
from ._status_query import GetStatus, StatusReply, reply_from_state, status_from_reply
from ._store import InstanceState, MemoryStateStore, StateStore

__all__ = ("Mediator",)

_MAX_SAVE_BACKOFF = 2.0

logger = logging.getLogger("coordination")

In = TypeVar("In", bound=msgspec.Struct)

CANCELLED = "cancelled"


class _MediatorActor(Actor):
    """Answers status queries over the bus from the mediator's store."""

    def __init__(self, store: StateStore) -> None:
        self.store = store

    async def status(self, msg: GetStatus) -> StatusReply:
        return reply_from_state(await self.store.load(msg.workflow_id))


@dataclass(slots=True)
class _Run:
    """One running instance: its state, the context its builders see, where it stands."""

    state: InstanceState
    context: WorkflowContext[Any]
    step: int = 0
    undo: list[int] = field(default_factory=list)
    """While unwinding: the steps still to compensate, the next last."""
    undoing: int | None = None
    """The step whose compensation is pending."""
    held: bool = False
    """Paused before its next step, waiting for `resume`."""
    sent_at: float = 0.0
    """When the pending step's command went out (for the step duration metric)."""


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
    ) -> None:
        self.system = system
        self.stuck_after = stuck_after
        """Seconds without progress after which a running instance counts as stuck."""
        self.workflow = workflow
        self.store: StateStore = store if store is not None else MemoryStateStore()
        self.metrics = WorkflowMetrics(system, workflow.name, self.strategy)
        self.metrics.stuck = lambda: len(self.stuck())
        self.outcomes = Outcomes(workflow.name, keep_finished, self.metrics)
        """Whose results `result` gives: the latest `keep_finished` finished are kept."""
        self.name = f"mediator.{workflow.name}"
        self._runs: dict[str, _Run] = {}
        self._refs: dict[str, ActorRef[Any]] = {}
        self._port: CommandPort[_Run] | None = None
        self._actor: ActorRef[_MediatorActor] | None = None
        self.resumed = 0
        """Instances taken up from the store when the mediator started (a durable store
        keeps those a stopped or crashed mediator left running)."""

    async def __aenter__(self) -> Self:
        self._refs = {
            name: self.system.ref(cls, name) for name, cls in self.workflow.services.items()
        }
        store = self.store
        self._actor = await self.system.spawn(lambda: _MediatorActor(store), name=self.name)
        self._port = CommandPort(
            self.system, self.name, self._replied, self._command_failed, self._retried
        )
        await self._port.open()
        self.metrics.register()
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
        self._runs.clear()
        self.outcomes.stop()
        self.metrics.unregister()
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
        if not isinstance(workflow_input, self.workflow.input_type):
            raise TypeError(
                f"{self.workflow.name} takes {self.workflow.input_type.__name__}, "
                f"not {type(workflow_input).__name__}"
            )
        workflow_id = f"{self.workflow.name}-{new_id()}"
        state = InstanceState(workflow_id, workflow_input, results=dict(results or {}))
        run = _Run(state, WorkflowContext(workflow_id, workflow_input, state.results))
        self._runs[workflow_id] = run
        self.outcomes.add(workflow_id)
        with acting_as(self.name):
            await self._advance(run)
        return workflow_id

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
        """The exact state of an instance, asked of the mediator actor over the bus; with
        how long it has been waiting, for a running instance of this mediator."""
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
        """Wait for the instance to end and return its outcome."""
        return await self.outcomes.wait(workflow_id, timeout)

    async def cancel(self, workflow_id: str, *, by: str = "api") -> bool:
        """Ask a running instance to stop: it finishes its current step, then compensates what
        it completed (a paused one at once). False when it had already ended. `by` names who
        asked, in the instance's history."""
        run = self._running_run(workflow_id)
        if run is None:
            return False
        run.state.cancel_requested = True
        self._audit(run, by, "cancel")
        await self._save(run.state)
        if run.state.paused:
            await self.resume(workflow_id, by=by)
        return True

    async def pause(self, workflow_id: str, *, by: str = "api") -> bool:
        """Hold a running instance: the step under way finishes, and no further step starts
        until `resume`. False when it had ended (or was paused already)."""
        run = self._running_run(workflow_id)
        if run is None or run.state.paused:
            return False
        run.state.paused = True
        self._audit(run, by, "pause")
        await self._save(run.state)
        return True

    async def resume(self, workflow_id: str, *, by: str = "api") -> bool:
        """Let a paused instance go on. False when it was not paused."""
        run = self._running_run(workflow_id)
        if run is None or not run.state.paused:
            return False
        run.state.paused = False
        self._audit(run, by, "resume")
        await self._save(run.state)
        if run.held:
            run.held = False
            with acting_as(self.name):
                await self._advance(run)
        return True

    def _running_run(self, workflow_id: str) -> _Run | None:
        if not self.outcomes.is_running(workflow_id):
            return None
        run = self._runs.get(workflow_id)
        if run is None or run.state.outcome is not Outcome.RUNNING:
            return None
        return run

    def _audit(self, run: _Run, who: str, what: str) -> None:
        when = datetime.now(UTC).isoformat(timespec="milliseconds")
        run.state.history.append(f"{when} {who}: {what}")

    # -- moving an instance on ------------------------------------------------------------

    async def _resume(self) -> int:
        """Take up the instances the store says are running. A step under way is sent again
        with its message id, so an idempotent service answers it without acting twice; an
        instance that was unwinding goes on with the compensations not yet done."""
        steps = self.workflow.steps
        names = [step.name for step in steps]
        resumed = 0
        for state in await self.store.running():
            workflow_id = state.workflow_id
            if workflow_id in self._runs:
                continue
            done = set(state.completed)
            context = WorkflowContext(workflow_id, state.input, state.results, state.failure)
            run = _Run(state, context)
            run.step = next((i for i, name in enumerate(names) if name not in done), len(names))
            self._runs[workflow_id] = run
            self.outcomes.add(workflow_id)
            resumed += 1
            with acting_as(self.name):
                if state.failure is None:
                    await self._advance(run)
                    continue
                run.undo = self._to_undo(run)
                await self._undo_next(run)
        if resumed:
            logger.info("%s: resumed %d running instances", self.name, resumed)
        return resumed

    async def _advance(self, run: _Run) -> None:
        """Send the commands of the steps from `run.step` on: a step nobody waits for is
        told and passed; one that is waited for is sent and the instance waits for its
        answer (`_replied`, `_command_failed`)."""
        state, context, steps = run.state, run.context, self.workflow.steps
        workflow_id = state.workflow_id
        while run.step < len(steps):
            step = steps[run.step]
            if state.cancel_requested:
                await self._unwind(run, Failure(step.name, CANCELLED, technical=False))
                return
            if state.paused:  # an operator holds it: `resume` goes on from here
                run.held = True
                await self._save(state)
                return
            state.current_step = step.name
            await self._save(state)
            try:
                command = step.build(builder_context(context, step.reads, step.name))
            except Exception as exc:  # a bug in the definition: fail the step, not the mediator
                reason = f"building the command failed: {type(exc).__name__}: {exc}"
                await self._unwind(run, Failure(step.name, reason, technical=True))
                return
            assert self._port is not None
            run.sent_at = perf_counter()
            error = await self._port.perform(
                self._refs[step.service],
                step,
                command,
                run,
                message_id=f"{workflow_id}.{step.name}",
                workflow_id=workflow_id,
            )
            if step.wait:
                return  # on with the answer
            if error is not None:
                await self._unwind(run, Failure(step.name, error, technical=True))
                return
            state.completed.append(step.name)
            run.step += 1
        state.current_step = None
        state.outcome = Outcome.COMPLETED
        await self._finish(run)

    async def _replied(self, run: _Run, reply: Any, data: bytes) -> None:
        if run.state.workflow_id not in self._runs:
            return  # the mediator stopped meanwhile
        with acting_as(self.name):
            if run.undoing is not None:
                name = self.workflow.steps[run.undoing].name
                if isinstance(reply, Rejected):
                    self._needs_attention(run, name, f"refused: {reply.reason}")
                else:
                    run.state.compensated.append(name)
                    self.metrics.compensations += 1
                await self._undo_next(run)
                return
            step = self.workflow.steps[run.step]
            self.metrics.step_took(step.name, perf_counter() - run.sent_at)
            if isinstance(reply, Rejected):
                await self._unwind(run, Failure(step.name, reply.reason, technical=False))
                return
            run.state.results[step.name] = reply
            run.state.completed.append(step.name)
            run.step += 1
            await self._advance(run)

    def _retried(self) -> None:
        self.metrics.retries += 1

    async def _command_failed(self, run: _Run, reason: str) -> None:
        if run.state.workflow_id not in self._runs:
            return
        with acting_as(self.name):
            if run.undoing is not None:
                self._needs_attention(run, self.workflow.steps[run.undoing].name, reason)
                await self._undo_next(run)
                return
            step = self.workflow.steps[run.step]
            await self._unwind(run, Failure(step.name, reason, technical=True))

    # -- the way back ------------------------------------------------------------------

    async def _unwind(self, run: _Run, failure: Failure) -> None:
        """Compensate the completed steps, newest first, then run the failure path."""
        state = run.state
        state.failure = run.context.failure = failure
        run.undo = self._to_undo(run)
        await self._save(state)
        await self._undo_next(run)

    def _to_undo(self, run: _Run) -> list[int]:
        """The steps before `run.step` that completed, have a compensation, and are not
        undone yet, oldest first."""
        state, steps = run.state, self.workflow.steps
        return [
            index
            for index in range(run.step)
            if steps[index].compensation is not None
            and steps[index].name in state.completed
            and steps[index].name not in state.compensated
        ]

    async def _undo_next(self, run: _Run) -> None:
        state, context = run.state, run.context
        workflow_id = state.workflow_id
        while run.undo:
            index = run.undo.pop()
            step = self.workflow.steps[index]
            assert step.compensation is not None
            try:
                command = step.compensation(builder_context(context, step.undo_reads, step.name))
            except Exception as exc:
                self._needs_attention(run, step.name, f"building it failed: {exc!r}")
                continue
            run.undoing = index
            run.sent_at = perf_counter()
            assert self._port is not None
            await self._port.send(
                self._refs[step.service],
                command,
                run,
                message_id=f"{workflow_id}.{step.name}.undo",
                correlation_id=workflow_id,
                policy=step.retry,
                timeout=step.timeout,
            )
            return
        run.undoing = None
        await send_notices(self.workflow, self._refs, context, workflow_id)
        if state.attention:
            state.outcome = Outcome.NEEDS_ATTENTION
        elif (
            state.cancel_requested
            and state.failure is not None
            and state.failure.reason == CANCELLED
        ):
            state.outcome = Outcome.CANCELLED
        elif state.compensated:
            state.outcome = Outcome.COMPENSATED
        else:
            state.outcome = Outcome.FAILED
        state.current_step = None
        await self._finish(run)

    def _needs_attention(self, run: _Run, step: str, reason: str) -> None:
        """A compensation that could not be done, retries spent: the workflow will end in
        NEEDS_ATTENTION, saying which and why, never silently."""
        logger.error("%s: compensation of %r failed: %s", run.state.workflow_id, step, reason)
        run.state.attention.append(f"{step}: {reason}")

    async def _finish(self, run: _Run) -> None:
        state = run.state
        await self._save(state)
        del self._runs[state.workflow_id]
        result = WorkflowResult(
            state.workflow_id,
            state.outcome,
            dict(state.results),
            state.failure,
            tuple(state.attention),
        )
        self.outcomes.finish(state.workflow_id, result)
