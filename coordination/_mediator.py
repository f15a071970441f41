"""Mediator (orchestration): one place runs every step, retry, timeout and compensation.

The Mediator keeps every instance's state in its store and drives each instance in a task it
owns; its actor, `mediator.<workflow>` on the bus, answers status queries, so anyone on the bus
can ask where an instance stands. It knows the exact step of every instance.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

import anyio
import msgspec

from actors import Actor, ActorError, ActorRef, ActorSystem, acting_as
from brokers import new_id

from ._definition import Failure, Rejected, Step, Workflow, WorkflowContext
from ._errors import UnknownWorkflowError
from ._outcomes import DEFAULT_KEEP, Outcomes
from ._status import Outcome, WorkflowResult, WorkflowStatus
from ._status_query import GetStatus, StatusReply, reply_from_state, status_from_reply
from ._store import InstanceState, MemoryStateStore, StateStore

__all__ = ("Mediator",)

logger = logging.getLogger("coordination")

In = TypeVar("In", bound=msgspec.Struct)


class _MediatorActor(Actor):
    """Answers status queries over the bus from the mediator's store."""

    def __init__(self, store: StateStore) -> None:
        self.store = store

    async def status(self, msg: GetStatus) -> StatusReply:
        return reply_from_state(await self.store.load(msg.workflow_id))


class _StepFailed(Exception):
    def __init__(self, failure: Failure) -> None:
        self.failure = failure


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
    ) -> None:
        self.system = system
        self.workflow = workflow
        self.store: StateStore = store or MemoryStateStore()
        self.outcomes = Outcomes(workflow.name, keep_finished)
        """Whose results `result` gives: the latest `keep_finished` finished are kept."""
        self._running: dict[str, InstanceState] = {}
        self._refs: dict[str, ActorRef[Any]] = {}
        self._tasks: set[asyncio.Task[None]] | None = None
        """The running instances: owned here, cancelled and joined when the mediator exits.
        Plain tasks, because anyio's start_soon cost more than a workflow step."""
        self._actor: ActorRef[_MediatorActor] | None = None

    async def __aenter__(self) -> Self:
        self._refs = {
            name: self.system.ref(cls, name) for name, cls in self.workflow.services.items()
        }
        store = self.store
        self._actor = await self.system.spawn(
            lambda: _MediatorActor(store), name=f"mediator.{self.workflow.name}"
        )
        self._tasks = set()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        tasks, self._tasks = self._tasks, None
        if tasks:
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks)
        self.outcomes.stop()
        if self._actor is not None and not self._actor.stopped:
            await self.system.stop(self._actor)

    # -- the strategy API -----------------------------------------------------------------

    async def start(self, workflow_input: In, *, results: Mapping[str, Any] | None = None) -> str:
        """Start an instance; returns its id at once.

        `results` are replies of steps done elsewhere, which this instance's commands may read
        (a hybrid hands the core's replies to the strategy that runs the rest).
        """
        tasks = self._tasks
        if tasks is None:
            raise RuntimeError("use the mediator as `async with Mediator(...)`")
        if not isinstance(workflow_input, self.workflow.input_type):
            raise TypeError(
                f"{self.workflow.name} takes {self.workflow.input_type.__name__}, "
                f"not {type(workflow_input).__name__}"
            )
        workflow_id = f"{self.workflow.name}-{new_id()}"
        state = InstanceState(workflow_id, workflow_input, results=dict(results or {}))
        await self.store.save(state)
        self._running[workflow_id] = state
        self.outcomes.add(workflow_id)
        task = asyncio.get_running_loop().create_task(self._run(state), name=workflow_id)
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return workflow_id

    async def status(self, workflow_id: str) -> WorkflowStatus:
        """The exact state of an instance, asked of the mediator actor over the bus."""
        assert self._actor is not None
        reply = await self._actor.ask(GetStatus(workflow_id))
        if not reply.found:
            raise UnknownWorkflowError(f"no workflow {workflow_id!r} in {self.workflow.name}")
        return status_from_reply(workflow_id, self.strategy, reply)

    async def result(self, workflow_id: str, timeout: float | None = None) -> WorkflowResult:
        """Wait for the instance to end and return its outcome."""
        return await self.outcomes.wait(workflow_id, timeout)

    async def cancel(self, workflow_id: str) -> bool:
        """Ask a running instance to stop: it finishes its current step, then compensates what
        it completed. False when it had already ended."""
        if not self.outcomes.is_running(workflow_id):
            return False
        state = self._running[workflow_id]
        state.cancel_requested = True
        await self.store.save(state)
        return True

    # -- running an instance ------------------------------------------------------------

    async def _run(self, state: InstanceState) -> None:
        workflow_id = state.workflow_id
        try:
            with acting_as(f"mediator.{self.workflow.name}"):
                await self._drive(state)
        except Exception as exc:  # a bug here must fail the instance, never leave it hanging
            logger.exception("%s: the mediator failed", workflow_id)
            state.failure = Failure(state.current_step or "", f"mediator error: {exc!r}", True)
            state.outcome = Outcome.FAILED
        finally:
            del self._running[workflow_id]
            if state.outcome is not Outcome.RUNNING:  # else cancelled: the mediator stops
                result = WorkflowResult(
                    workflow_id, state.outcome, dict(state.results), state.failure
                )
                self.outcomes.finish(workflow_id, result)

    async def _drive(self, state: InstanceState) -> None:
        context: WorkflowContext[In] = WorkflowContext(
            state.workflow_id, state.input, state.results
        )
        for step in self.workflow.steps:
            if state.cancel_requested:
                context.failure = Failure(step.name, "cancelled", technical=False)
                await self._unwind(state, context, cancelled=True)
                return
            state.current_step = step.name
            await self.store.save(state)
            try:
                reply = await self._perform(step, context, f"{state.workflow_id}.{step.name}")
            except _StepFailed as failed:
                context.failure = state.failure = failed.failure
                await self._unwind(state, context, cancelled=False)
                return
            if step.wait:
                state.results[step.name] = reply
            state.completed.append(step.name)
        state.current_step = None
        state.outcome = Outcome.COMPLETED
        await self.store.save(state)

    async def _perform(self, step: Step, context: WorkflowContext[In], message_id: str) -> Any:
        """Send the step's command, retrying technical failures; raise _StepFailed."""
        ref = self._refs[step.service]
        try:
            command = step.command(context)
        except Exception as exc:  # a bug in the definition: fail the step, not the mediator
            reason = f"building the command failed: {type(exc).__name__}: {exc}"
            raise _StepFailed(Failure(step.name, reason, technical=True)) from exc
        policy = step.retry
        for attempt in range(1, policy.attempts + 1):
            try:
                if not step.wait:
                    await ref.tell(
                        command, correlation_id=context.workflow_id, message_id=message_id
                    )
                    return None
                reply = await ref.ask(
                    command,
                    timeout=step.timeout,
                    correlation_id=context.workflow_id,
                    message_id=message_id,
                )
            except ActorError as exc:
                if attempt == policy.attempts:
                    reason = f"{type(exc).__name__}: {exc}"
                    raise _StepFailed(Failure(step.name, reason, technical=True)) from exc
                logger.warning(
                    "%s: step %r attempt %d failed: %r",
                    context.workflow_id,
                    step.name,
                    attempt,
                    exc,
                )
                await anyio.sleep(policy.delay(attempt))
                continue
            if isinstance(reply, Rejected):
                raise _StepFailed(Failure(step.name, reply.reason, technical=False))
            return reply
        raise AssertionError("unreachable")  # pragma: no cover

    async def _unwind(
        self, state: InstanceState, context: WorkflowContext[In], *, cancelled: bool
    ) -> None:
        """Compensate completed steps in reverse order, then run the failure path."""
        for name in reversed(state.completed):
            step = self.workflow.step(name)
            if step.compensation is None:
                continue
            undo = Step(
                f"{name}.undo",
                step.service,
                step.compensation,
                retry=step.retry,
                timeout=step.timeout,
            )
            try:
                await self._perform(undo, context, f"{state.workflow_id}.{name}.undo")
            except _StepFailed as failed:
                logger.error(
                    "%s: compensation of %r failed: %s",
                    state.workflow_id,
                    name,
                    failed.failure.reason,
                )
                continue
            state.compensated.append(name)
        for notify in self.workflow.on_failure:
            try:
                await self._refs[notify.service].tell(
                    notify.command(context), correlation_id=state.workflow_id
                )
            except Exception as exc:  # an unreachable service, or a bug in the builder
                logger.error(
                    "%s: failure notice to %r not sent: %r", state.workflow_id, notify.service, exc
                )
        if cancelled:
            state.outcome = Outcome.CANCELLED
        elif state.compensated:
            state.outcome = Outcome.COMPENSATED
        else:
            state.outcome = Outcome.FAILED
        state.current_step = None
        await self.store.save(state)
