"""FrontController: choreography with one service that owns the workflow's record.

The front controller takes the request, records the workflow, and publishes the first event;
the services then choreograph the steps among themselves, and the last of them reports the end
back to it. So it knows when a workflow started and how it ended, and nothing in between,
unless the services call back as they start each step (`callbacks=True`: one more message per
step, and the front controller becomes the "pseudo-mediator" of the chapter's figure 11-13).
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from actors import Actor, ActorSystem

from .._clock import Clock
from .._outcomes import DEFAULT_KEEP
from .._status import Outcome, WorkflowStatus
from .._status_query import GetStatus, StatusReply, reply_from_state, status_from_reply
from ..core import Progress
from ..definition._workflow import Workflow
from ..stores._store import InstanceState, MemoryStateStore, StateStore
from ._adapter import Adapter
from ._engine import Choreography, _Client
from ._events import Audit, Begin, Carried, Ended, StepStarted

__all__ = ("FrontController",)

In = TypeVar("In", bound=msgspec.Struct)

UNSEEN_WITHOUT_CALLBACKS = frozenset(
    {"current_step", "completed_steps", "compensated_steps", "failure"}
)
UNSEEN_WITH_CALLBACKS = frozenset({"compensated_steps", "failure"})


class _Front(_Client):
    """The front controller: records start, progress (when called back) and end (and, as
    every starter's endpoint, takes the instances it drives: waits, parallels)."""

    def __init__(self, engine: FrontController[Any]) -> None:
        super().__init__(engine)
        self.engine = engine
        self.store = engine.store
        self.names = [step.name for step in engine.workflow.steps]

    async def begin(self, msg: Begin) -> None:
        # A Begin sent again (its acknowledgement was lost) must not reset a record that has
        # moved on: the instance began the first time, and its first event is on its way.
        if await self.store.load(msg.workflow_id) is None:
            await self.store.save(InstanceState(msg.workflow_id, None))
            await self.engine._advance_first(msg.workflow_id, msg.data)
        if msg.ack:
            self.engine._acks_out.acknowledge(self.engine._route, msg.ack)

    async def step_started(self, msg: StepStarted) -> None:
        state = await self.store.load(msg.workflow_id)
        if state is None or state.outcome is not Outcome.RUNNING:
            return  # a late call back: the end is recorded already
        names = self.names
        state.progress.active = (names[msg.step],)
        completed = msg.completed
        state.progress.completed = tuple(names[: msg.step]) if completed is None else completed
        await self.store.save(state)
        self.engine._progressed(msg.workflow_id)

    async def ended(self, msg: Ended) -> None:
        state = await self.store.load(msg.workflow_id) or InstanceState(msg.workflow_id, None)
        state.progress = msg.progress
        await self.store.save(state)
        self.engine._finish(msg)
        if msg.ack:
            self.engine._acks_out.acknowledge(self.engine._route, msg.ack)

    async def audit(self, msg: Audit) -> None:
        state = await self.store.load(msg.workflow_id)
        if state is not None:
            state.history.append(msg.entry)
            await self.store.save(state)

    async def status(self, msg: GetStatus) -> StatusReply:
        return reply_from_state(await self.store.load(msg.workflow_id))


class FrontController(Choreography[In]):
    """Runs a workflow by choreography behind a front controller that keeps its record.

    `store` keeps the records (memory by default); with `callbacks` the services report each
    step they start, so `status` knows the current step too. Each process that starts
    instances has a front controller of its own, which hears the ends (and call backs) of
    the instances it started.
    """

    strategy = "front_controller"
    _endpoint_class = _Front

    def __init__(
        self,
        system: ActorSystem,
        workflow: Workflow[In],
        *,
        store: StateStore | None = None,
        callbacks: bool = False,
        keep_finished: int = DEFAULT_KEEP,
        sidecars: bool = True,
        stuck_after: float = 60.0,
        acknowledged: bool | None = None,
        remote_sidecars: bool = False,
        durable_events: bool = False,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(
            system,
            workflow,
            keep_finished=keep_finished,
            sidecars=sidecars,
            stuck_after=stuck_after,
            acknowledged=acknowledged,
            remote_sidecars=remote_sidecars,
            durable_events=durable_events,
            clock=clock,
        )
        self.store: StateStore = store if store is not None else MemoryStateStore()
        self.callbacks = callbacks
        self._options["callbacks"] = callbacks
        self._tracks_starts = callbacks
        self.resumed = 0
        """Records left running in the store when this front controller started."""

    @property
    def _endpoint_name(self) -> str:
        return f"{self._route}.front"

    @property
    def _durable(self) -> bool:  # type: ignore[override]
        return type(self.store) is not MemoryStateStore

    def _make_endpoint(self) -> Actor:
        return _Front(self)

    async def _open(self) -> None:
        # Records a process before this one left running: their end may still come (the
        # services carry on), and result() waits for it.
        running = await self.store.running()
        for state in running:
            if not self.outcomes.knows(state.workflow_id):
                self._remember(state.workflow_id, None)
            self._wait_again(state)
        self.resumed = len(running)

    def _wait_again(self, state: InstanceState) -> None:
        """An instance that waited with the process before this one (a sleep, a wait for a
        signal: see `_wait_here`) waits here again; a sleep ends when it was due to."""
        progress = state.progress
        if state.input is None or not (progress.timers or progress.awaiting):
            return
        workflow_id = state.workflow_id
        data = self._codec.carried(state.input, state.results)
        if self._take(workflow_id, progress, data) is None:
            return
        for timer in progress.timers:
            self._arm(workflow_id, timer.name, timer.due)

    async def _wait_here(self, workflow_id: str, step: str) -> None:
        """The instance waits here: on a durable store its record keeps where it stands and
        its data, so that a front controller started after this one goes on waiting (a
        sleep survives a restart, as under a mediator)."""
        await super()._wait_here(workflow_id, step)
        held = self._here.get(workflow_id)
        if held is None or step not in held.progress.active or not self._durable:
            return  # on already (its signal had come), or nothing survives the process
        state = await self.store.load(workflow_id) or InstanceState(workflow_id, None)
        data = held.data
        if data is not None:
            context = self._codec.context(workflow_id, data.input, data.results)
            state.input, state.results = context.input, dict(context.results)
        state.progress = held.progress
        await self.store.save(state)

    async def _audit(self, workflow_id: str, who: str, what: str) -> str:
        """The record keeps the history too, in the store: it outlives this object."""
        entry = await super()._audit(workflow_id, who, what)
        assert self._endpoint is not None
        await self._endpoint.tell(Audit(workflow_id, entry), correlation_id=workflow_id)
        return entry

    async def _recall(self, workflow_id: str) -> None:
        state = await self.store.load(workflow_id)
        if state is not None:
            self._remember(workflow_id, None if state.outcome is Outcome.RUNNING else _end(state))

    async def _begin(self, workflow_id: str, data: Carried) -> None:
        assert self._endpoint is not None
        await self._emit_event(self._endpoint, Begin(workflow_id, data), f"{workflow_id}.begin")

    async def _step_started(
        self,
        adapter: Adapter[In],
        workflow_id: str,
        step: int,
        data: Carried | None,
        progress: Progress | None = None,
        name: str = "",
    ) -> None:
        if self.callbacks:
            front = self._owners_endpoint(workflow_id)
            completed = progress.completed if progress is not None else None
            await front.tell(StepStarted(workflow_id, step, completed), correlation_id=workflow_id)

    async def _status(self, workflow_id: str) -> WorkflowStatus:
        """The front controller's record: start and end, and the current step when the
        services call back."""
        await self._known(workflow_id)
        assert self._endpoint is not None
        reply = await self._endpoint.ask(GetStatus(workflow_id))
        if not reply.found:  # started, and Begin not handled yet
            reply = StatusReply(found=True, outcome=Outcome.RUNNING.value)
        unknown: frozenset[str] = frozenset()
        if reply.outcome == Outcome.RUNNING.value:
            unknown = UNSEEN_WITH_CALLBACKS if self.callbacks else UNSEEN_WITHOUT_CALLBACKS
        return status_from_reply(workflow_id, self.strategy, reply, unknown)


def _end(state: InstanceState) -> Ended:
    """The end a finished record stands for (its replies are not kept in the record)."""
    return Ended(state.workflow_id, state.progress)
