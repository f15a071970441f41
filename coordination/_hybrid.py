"""Hybrid: the core of a workflow under one strategy, the rest under another.

The chapter's Sysops Squad decision: orchestrate the core ticket flow, where visibility and
error handling matter, and choreograph what follows `TicketResolved`, where the teams want
independence. A hybrid splits one definition after the step `handoff`: the core steps run
under `core`, and once they complete, the rest runs under `rest`, seeded with the core's
replies. A failure in the core ends the workflow there; a failure in the rest unwinds the rest
only (what the core did stands: the hand-off is a commitment), and both run the definition's
failure path.

A hybrid's workflow id names the process that started it, as the strategies' ids do, and the
hybrid answers other processes about its instances (see `_remote`): any process that runs the
same hybrid can ask status, result, cancel, pause and resume of any instance.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

import msgspec

from actors import ActorSystem

from ._clock import Clock
from ._errors import CoordinationError, InvalidWorkflowError, WorkflowEndedError
from ._outcomes import DEFAULT_KEEP, Outcomes
from ._remote import Remote, new_workflow_ids
from ._status import Outcome, WorkflowResult, WorkflowStatus
from ._strategy import Strategy
from .definition._workflow import Failure, Workflow, check_signal

__all__ = ("Hybrid",)

In = TypeVar("In", bound=msgspec.Struct)

StrategyFactory = Callable[..., Strategy[In]]
"""Makes a part: called as `factory(system, workflow)`, and with `clock=` when the hybrid
has one (a strategy class takes it)."""


@dataclass(slots=True)
class _Instance:
    """Which instances of the core and the rest a hybrid instance is."""

    core_id: str
    rest_id: str | None = None


class Hybrid(Generic[In]):
    """Runs `workflow`'s steps up to `handoff` under `core`, and the others under `rest`;
    the latest `keep_finished` finished instances are remembered.

    ```python
    async with Hybrid(system, ticket_workflow, core=Mediator, rest=FrontController,
                      handoff="resolve") as hybrid:
        result = await hybrid.result(await hybrid.start(SubmitTicket(...)))
    ```
    """

    def __init__(
        self,
        system: ActorSystem,
        workflow: Workflow[In],
        *,
        core: StrategyFactory[In],
        rest: StrategyFactory[In],
        handoff: str,
        keep_finished: int = DEFAULT_KEEP,
        clock: Clock | None = None,
    ) -> None:
        if keep_finished < 1:
            raise ValueError("keep_finished must be >= 1")
        names = [node.name for node in workflow.flow]
        if handoff not in names or handoff == names[-1]:
            raise InvalidWorkflowError(
                f"hybrid of {workflow.name!r}: hand-off {handoff!r} must name a step of the "
                f"flow (not inside a branch) that is not the last ({', '.join(names[:-1])})"
            )
        split = names.index(handoff) + 1
        self.workflow = workflow
        self.core_workflow = Workflow(
            f"{workflow.name}-core",
            workflow.input_type,
            workflow.flow[:split],
            services=workflow.services,
            on_failure=workflow.on_failure,
        )
        self.rest_workflow = Workflow(
            f"{workflow.name}-rest",
            workflow.input_type,
            workflow.flow[split:],
            services=workflow.services,
            on_failure=workflow.on_failure,
            done_elsewhere=self.core_workflow.leaf_nodes,
        )
        options = {} if clock is None else {"clock": clock}  # both parts on one clock
        self.core = core(system, self.core_workflow, **options)
        self.rest = rest(system, self.rest_workflow, **options)
        self.strategy = f"hybrid({self.core.strategy}+{self.rest.strategy})"
        self.keep_finished = keep_finished
        """How many finished instances `result` and `status` still know (the latest)."""
        self.outcomes = Outcomes(workflow.name, keep_finished)
        self._running: dict[str, _Instance] = {}
        """The parts of the running instances."""
        self._finished: OrderedDict[str, _Instance] = OrderedDict()
        """The parts of the latest `keep_finished` finished instances."""
        self._new_id = new_workflow_ids(workflow, system)
        self._remote = Remote(
            system,
            workflow,
            f"hybrid.{workflow.name}",
            self.outcomes,
            self._own_status,
            self,
            durable=lambda: False,
        )
        self._early: dict[str, dict[str, Any]] = {}
        """Signals for the rest of instances whose rest has not started yet."""
        self._tasks: set[asyncio.Task[None]] | None = None

    async def __aenter__(self) -> Self:
        await self.core.__aenter__()
        try:
            await self.rest.__aenter__()
            try:
                await self._remote.open()
            except BaseException as exc:
                await self.rest.__aexit__(type(exc), exc, exc.__traceback__)
                raise
        except BaseException as exc:
            await self.core.__aexit__(type(exc), exc, exc.__traceback__)
            raise
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
        try:
            await self._remote.close()
            await self.rest.__aexit__(exc_type, exc, tb)
        finally:
            await self.core.__aexit__(exc_type, exc, tb)

    async def start(self, workflow_input: In, *, results: Mapping[str, Any] | None = None) -> str:
        """Start the core of an instance; the rest starts when the core completes."""
        tasks = self._tasks
        if tasks is None:
            raise RuntimeError("use the hybrid as `async with Hybrid(...)`")
        core_id = await self.core.start(workflow_input, results=results)
        workflow_id = self._new_id()
        instance = _Instance(core_id)
        self._running[workflow_id] = instance
        self.outcomes.add(workflow_id)
        task = asyncio.get_running_loop().create_task(
            self._run(workflow_id, instance, workflow_input)
        )
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return workflow_id

    async def _run(self, workflow_id: str, instance: _Instance, workflow_input: In) -> None:
        core = await self.core.result(instance.core_id)
        if core.outcome is not Outcome.COMPLETED:
            outcome = WorkflowResult(
                workflow_id, core.outcome, core.results, core.failure, core.attention
            )
        else:
            try:
                instance.rest_id = await self.rest.start(workflow_input, results=core.results)
            except Exception as exc:  # the core's work stands, and nothing follows it
                reason = f"the rest did not start: {exc!r}"
                failure = Failure(self.rest_workflow.steps[0].name, reason, technical=True)
                outcome = WorkflowResult(
                    workflow_id, Outcome.NEEDS_ATTENTION, core.results, failure, (reason,)
                )
            else:
                for signal, payload in self._early.pop(workflow_id, {}).items():
                    await self.rest.signal(instance.rest_id, signal, payload)
                rest = await self.rest.result(instance.rest_id)
                results = {**core.results, **rest.results}
                outcome = WorkflowResult(
                    workflow_id, rest.outcome, results, rest.failure, rest.attention
                )
        finished = self._finished
        finished[workflow_id] = self._running.pop(workflow_id)
        if len(finished) > self.keep_finished:
            finished.popitem(last=False)
        self._early.pop(workflow_id, None)
        self.outcomes.finish(workflow_id, outcome)

    async def result(self, workflow_id: str, timeout: float | None = None) -> WorkflowResult:
        """Wait for the instance to end, rest included (one another process started: as that
        process tells it)."""
        result = await self._remote.result(workflow_id, timeout)
        if result is not None:
            return result
        return await self.outcomes.wait(workflow_id, timeout)

    async def status(self, workflow_id: str) -> WorkflowStatus:
        """The core's status while it runs (what the core strategy sees), then the rest's,
        with the core's steps counted as completed."""
        status = await self._remote.status(workflow_id)
        if status is not None:
            return status
        return await self._own_status(workflow_id)

    async def _own_status(self, workflow_id: str) -> WorkflowStatus:
        instance = self._instance(workflow_id)
        if instance.rest_id is None:
            status = await self.core.status(instance.core_id)
            if status.outcome is Outcome.COMPLETED and self.outcomes.is_running(workflow_id):
                # the core completed, the rest has not started yet
                status = msgspec.structs.replace(status, outcome=Outcome.RUNNING, current_step=None)
            return msgspec.structs.replace(status, workflow_id=workflow_id, strategy=self.strategy)
        status = await self.rest.status(instance.rest_id)
        core_steps = tuple(step.name for step in self.core_workflow.steps)
        completed = status.completed_steps
        return msgspec.structs.replace(
            status,
            workflow_id=workflow_id,
            strategy=self.strategy,
            completed_steps=None if completed is None else core_steps + completed,
        )

    async def cancel(self, workflow_id: str, *, by: str = "api") -> bool:
        """Cancel the part that runs: the core (compensating it), or the rest (compensating
        the rest only)."""
        done = await self._remote.control(workflow_id, "cancel", by)
        if done is not None:
            return done
        instance = self._instance(workflow_id)
        if not self.outcomes.is_running(workflow_id):
            return False
        if instance.rest_id is None:
            return await self.core.cancel(instance.core_id, by=by)
        return await self.rest.cancel(instance.rest_id, by=by)

    async def signal(self, workflow_id: str, signal: str, payload: Any) -> None:
        """Send the part the signal's wait belongs to the signal; one for the rest before the
        rest has started is kept until it does."""
        _, value = check_signal(self.workflow, signal, payload)
        if await self._remote.signal(workflow_id, signal, value):
            return
        instance = self._instance(workflow_id)
        if not self.outcomes.is_running(workflow_id):
            raise WorkflowEndedError(f"{workflow_id} has ended: signal {signal!r} comes too late")
        if signal in self.core_workflow.signals:
            await self.core.signal(instance.core_id, signal, value)
        elif instance.rest_id is not None:
            await self.rest.signal(instance.rest_id, signal, value)
        else:
            early = self._early.setdefault(workflow_id, {})
            if signal in early:
                raise CoordinationError(f"{workflow_id} has had signal {signal!r} already")
            early[signal] = value

    async def pause(self, workflow_id: str, *, by: str = "api") -> bool:
        """Pause the part that runs."""
        done = await self._remote.control(workflow_id, "pause", by)
        if done is not None:
            return done
        instance = self._instance(workflow_id)
        if not self.outcomes.is_running(workflow_id):
            return False
        if instance.rest_id is None:
            return await self.core.pause(instance.core_id, by=by)
        return await self.rest.pause(instance.rest_id, by=by)

    async def resume(self, workflow_id: str, *, by: str = "api") -> bool:
        """Let the paused part go on."""
        done = await self._remote.control(workflow_id, "resume", by)
        if done is not None:
            return done
        instance = self._instance(workflow_id)
        if instance.rest_id is None:
            return await self.core.resume(instance.core_id, by=by)
        return await self.rest.resume(instance.rest_id, by=by)

    def stuck(self) -> list[str]:
        """The hybrid instances whose running part is stuck."""
        stuck = set(self.core.stuck()) | set(self.rest.stuck())
        return [
            workflow_id
            for workflow_id, instance in self._running.items()
            if (instance.rest_id if instance.rest_id is not None else instance.core_id) in stuck
        ]

    def _instance(self, workflow_id: str) -> _Instance:
        instance = self._running.get(workflow_id) or self._finished.get(workflow_id)
        if instance is None:
            self.outcomes.check(workflow_id)  # raises UnknownWorkflowError, saying why
        assert instance is not None
        return instance
