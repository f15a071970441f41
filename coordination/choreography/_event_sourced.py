"""EventSourced: choreography whose every event is also appended to an event log.

The services choreograph the workflow as in any choreography; an event store listens to all
the events of the workflow's services on the bus (it taps their subjects, nobody sends to it)
and appends them, without their data, to the workflow's log. `status` replays the log, so it
knows the exact step, what completed and what was undone, but only as far as the store has
caught up: a status read right after an event may not show it yet (eventual consistency).
"""

from __future__ import annotations

import logging
from typing import TypeVar

import msgspec

from actors import ActorSystem
from brokers import Msg, Subscription

from .._clock import Clock
from .._outcomes import DEFAULT_KEEP
from .._remote import owner_of
from .._status import Outcome, WorkflowStatus
from ..definition._workflow import Failure, Workflow
from ..stores._event_store import EventStore, MemoryEventStore
from ._engine import Choreography
from ._events import Advance, Cancel, Ended, Unwind, WorkflowEvent

__all__ = ("EventSourced",)

logger = logging.getLogger("coordination")

In = TypeVar("In", bound=msgspec.Struct)

_event_decoder: msgspec.msgpack.Decoder[WorkflowEvent] = msgspec.msgpack.Decoder(WorkflowEvent)


class EventSourced(Choreography[In]):
    """Runs a workflow by choreography and answers `status` by replaying its event log.

    `store` keeps the log (memory by default).
    """

    strategy = "event_sourced"

    def __init__(
        self,
        system: ActorSystem,
        workflow: Workflow[In],
        *,
        store: EventStore | None = None,
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
        self.store: EventStore = store if store is not None else MemoryEventStore()
        self._taps: list[Subscription] = []

    @property
    def _durable(self) -> bool:  # type: ignore[override]
        return type(self.store) is not MemoryEventStore

    async def _open(self) -> None:
        # Events go to the services (sidecars), to adapters of their own, and to the client.
        if self._stored is not None:  # or where they are stored, when they are
            subjects = {f"{self._stored.subject}>"}
        else:
            subjects = {ref.subject for ref in self._adapters.values()}
        assert self._endpoint is not None
        subjects.add(self._endpoint.subject)
        for subject in sorted(subjects):
            self._taps.append(await self.system.bus.subscribe(subject, self._record))

    async def _close(self) -> None:
        taps, self._taps = self._taps, []
        for tap in taps:
            await tap.drain()

    async def _record(self, msg: Msg) -> None:
        try:
            event = _event_decoder.decode(msg.data)
        except msgspec.DecodeError:
            return  # a service's own message (another workflow's command, a notice)
        if getattr(event, "route", self._route) != self._route:
            return  # another choreography's event, in a service they share
        workflow_id = event.workflow_id
        if not workflow_id.startswith(self._own_ids) and owner_of(workflow_id) is not None:
            return  # another process started it: its log is that process's
        if not isinstance(event, Cancel):
            event = msgspec.structs.replace(event, data=None)  # the log keeps what happened
        await self.store.append(event.workflow_id, event)
        self._progressed(event.workflow_id)

    async def _recall(self, workflow_id: str) -> None:
        """An instance logged by an earlier process: running, or ended as its log says."""
        log = await self.store.load(workflow_id)
        if log:
            ended = next((event for event in reversed(log) if isinstance(event, Ended)), None)
            self._remember(workflow_id, ended)

    async def _status(self, workflow_id: str) -> WorkflowStatus:
        """The state the log replays to.

        The log is filled by several taps (one per subject), so two events of an instance
        can be stored in the other order than they happened: the end is final whatever comes
        after it, and the instance only moves forward through its steps.
        """
        await self._known(workflow_id)
        names = [step.name for step in self.workflow.steps]
        outcome = Outcome.RUNNING
        current: str | None = None
        completed: tuple[str, ...] = ()
        compensated: tuple[str, ...] = ()
        failure: Failure | None = None
        attention: tuple[str, ...] = ()
        for event in await self.store.load(workflow_id):
            if outcome is not Outcome.RUNNING:
                break
            match event:
                case Advance(step=step, progress=None) if failure is None and step >= len(
                    completed
                ):
                    current, completed = names[step], tuple(names[:step])
                case Advance(step=step, progress=progress) if (
                    failure is None
                    and progress is not None
                    and len(progress.completed) >= len(completed)
                ):  # a flow with branches or computes: its way so far travels with it
                    current, completed = names[step], progress.completed
                case Unwind(progress=progress):
                    current = None
                    completed, compensated = progress.completed, progress.compensated
                    failure = progress.failure
                case Ended(progress=progress):
                    outcome, current = progress.outcome, None
                    completed, compensated = progress.completed, progress.compensated
                    failure, attention = progress.failure, progress.attention
                case _:
                    pass
        return WorkflowStatus(
            workflow_id,
            self.strategy,
            outcome,
            current,
            completed,
            compensated,
            failure,
            attention=attention,
        )
