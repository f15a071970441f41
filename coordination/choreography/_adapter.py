"""The adapter that wraps one service for a choreography.

It reacts to `Advance` by building its step's command and having the service carry it out,
and to `Unwind` by having it undo its step; what comes next is the workflow core's decision
(`core.apply`), which the adapter carries out as events: the next `Advance`, an `Unwind` to
the step to compensate next, the failure notices, `Ended`. Beside a local service it runs as
a sidecar in the service's mailbox; for a service elsewhere it is an actor of its own that
commands the service over the bus. Both run the step through the same executor
(`CommandPort`): the step's timeout, retries and message id are the same either way.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Coroutine, Mapping
from time import perf_counter
from typing import Any, Generic, Protocol, TypeVar

import msgspec

from actors import Actor, ActorRef, ActorSystem, acting_as
from actors._dispatch import dispatch
from brokers import new_id

from .. import core
from .._clock import Clock
from .._metrics import WorkflowMetrics
from .._status import Outcome
from ..core import (
    CompensationDone,
    CompensationFailed,
    Perform,
    Progress,
    StepAnswered,
    StepCancelled,
    StepFailed,
    StepRejected,
)
from ..core._executor import CommandPort, tell_with_retry
from ..definition._workflow import (
    Failure,
    Rejected,
    RetryPolicy,
    Workflow,
    WorkflowContext,
    builder_context,
)
from ._carriage import ContextCodec
from ._events import Advance, Cancel, Carried, Ended, Hold, Unwind

In = TypeVar("In", bound=msgspec.Struct)


class _Host(Protocol[In]):
    """What an adapter sees of its choreography (the engine): a narrow interface, all of it
    the engine's private side, so that the strategies' public API stays the user's."""

    @property
    def system(self) -> ActorSystem: ...

    @property
    def workflow(self) -> Workflow[In]: ...

    @property
    def metrics(self) -> WorkflowMetrics: ...

    @property
    def clock(self) -> Clock:
        """What step timeouts and retry backoffs are read on."""

    @property
    def _codec(self) -> ContextCodec[In]: ...

    @property
    def _refs(self) -> Mapping[str, ActorRef[Any]]: ...

    @property
    def _ack_to(self) -> str:
        """Where receivers acknowledge the events ("": they are not acknowledged)."""

    @property
    def _carries_data(self) -> bool:
        """Whether events carry the workflow's data (query-all's do not)."""

    @property
    def _tracks_starts(self) -> bool:
        """Whether `_step_started` is to be awaited."""

    @property
    def _cancelled(self) -> Mapping[str, None]:
        """The instances cancelled (looked up for every step: a plain mapping)."""

    @property
    def _route(self) -> str: ...

    def _adapter_name(self, service: str) -> str: ...

    def _acknowledge(self, ack: str) -> None:
        """An acknowledged event was handled: tell its sender (in a batch)."""

    def _cancel_seen(self, workflow_id: str) -> None:
        """A service saw a cancel of `workflow_id`."""

    async def _send(self, service: str, event: Advance | Unwind, again: str = "") -> None:
        """Send `event` to `service`'s adapter (acknowledged where events can be lost)."""

    async def _notify(self, context: WorkflowContext[Any], workflow_id: str) -> None:
        """Send the workflow's failure notices."""

    async def _end(self, adapter: Adapter[In], event: Ended) -> None:
        """The instance ended: tell whoever waits for it."""

    async def _fetch(
        self, adapter: Adapter[In], workflow_id: str, step: int, *, undo: bool, item: int = -1
    ) -> Carried: ...

    async def _carry_out(
        self,
        adapter: Adapter[In] | None,
        workflow_id: str,
        progress: Progress,
        actions: core.Actions,
        data: Carried | None,
        context: WorkflowContext[Any] | None = None,
    ) -> None:
        """Carry out what the core says of an instance, as events."""

    async def _report(self, workflow_id: str, happened: core.StepEnd, data: Carried | None) -> None:
        """A step the starter drives ended: tell the starter how."""

    async def _step_started(
        self,
        adapter: Adapter[In],
        workflow_id: str,
        step: int,
        data: Carried | None,
        progress: Progress | None = None,
        name: str = "",
    ) -> None: ...

    def _step_done(
        self, adapter: Adapter[In], workflow_id: str, name: str, data: Carried | None, reply: bytes
    ) -> Carried | None: ...

    def _step_failed(
        self, adapter: Adapter[In], workflow_id: str, name: str, data: Carried | None
    ) -> Carried | None: ...

    def _step_compensated(
        self, adapter: Adapter[In], workflow_id: str, name: str, data: Carried | None
    ) -> Carried | None: ...


__all__ = ("Adapter",)

ITEM_LISTS = 1024
"""How many for-each lists an adapter keeps (a pure function of what the for-each reads: one
that was let go is built again)."""

logger = logging.getLogger("coordination")

_encode = msgspec.msgpack.Encoder().encode


class _Command(msgspec.Struct, gc=False):
    """What a command of an adapter is for (a Struct: one is made per step, its constructor
    is C, and the garbage collector need not track it: it makes no cycle)."""

    event: Advance | Unwind
    context: WorkflowContext[Any]
    sent_at: float = 0.0
    name: str = ""
    """The step's name, or, for a for-each's item, the item's (`<for-each>[<index>]`)."""

    @property
    def undo(self) -> bool:
        return type(self.event) is Unwind


class Adapter(Actor, Generic[In]):
    """Wraps one service for a choreography: performs and undoes the service's steps when
    events say so, and tells the next service what comes next.

    Beside a local service the adapter is a sidecar: its handlers are added to the service's
    own mailbox (`ActorSystem.add_handlers`), events go to the service's subject, and the
    adapter calls the service's handlers directly (`dispatch`), one message at a time with
    the service's other messages. A service in another process is wrapped from here instead:
    the adapter is an actor of its own, and sends the service its commands over the bus with a
    reply subject. Timeouts and retries are the port's either way.
    """

    def __init__(self, engine: _Host[In], service: str, *, local: bool) -> None:
        self.engine = engine
        self.service = service
        self.local = local
        self.workflow = engine.workflow
        self.steps = engine.workflow.steps
        self.linear = engine.workflow.linear
        """A plain sequence of steps: every instance's progress at a step is the same."""
        self.service_ref: ActorRef[Any] = engine._refs[service]
        self.service_actor: Actor | None = None
        """The local service instance, as its mailbox hands it to the sidecar handlers."""
        self.held: dict[str, list[Advance | Unwind]] = {}
        """The paused instances, and the events of theirs that arrived meanwhile."""
        self._adapter_name = engine._adapter_name(service)
        self.sender = service if local else self._adapter_name
        """Who sends what comes next, as the links show it: the service, for a sidecar."""
        self.port: CommandPort[_Command] = CommandPort(
            engine.system,
            self._adapter_name,
            self._answered if local else self._replied,
            self._command_failed,
            engine.metrics,
            again=self._again,
            describe=self._describe,
            clock=engine.clock,
        )
        self._listening = False
        self._closed = False
        self.tasks: set[asyncio.Task[None]] = set()
        """Events whose context is being fetched (query-all)."""
        names = [step.name for step in self.steps]
        self._done_before = [tuple(names[:index]) for index in range(len(names))]
        """Per step, the steps completed before it starts (shared by every instance)."""
        self._index = {name: index for index, name in enumerate(names)}
        self._answered_forward: dict[int, tuple[Progress, core.Actions]] = {}
        """The core's answer to each step answering on the way forward (see `_decide`)."""
        self._for_each = {
            names.index(for_each.step.name): for_each
            for for_each in self.workflow.for_eaches.values()
        }
        """The for-each each step run per item belongs to, by the step's index."""
        self._item_lists: OrderedDict[tuple[str, str], list[Any]] = OrderedDict()
        """The lists of the for-eaches whose items this adapter ran lately, by instance."""

    def _item_name(self, index: int, item: int) -> str:
        """The name of item `item` of the for-each that runs step number `index`."""
        return self._for_each[index].item_name(item)

    def _item_context(
        self, index: int, context: WorkflowContext[Any], item: int, *, undo: bool = False
    ) -> WorkflowContext[Any]:
        """The context of item `item` of the for-each that runs step number `index`: its list
        is built once per instance here (the latest `ITEM_LISTS` kept), not once per item."""
        for_each = self._for_each[index]
        key = (context.workflow_id, for_each.name)
        lists = self._item_lists
        items = lists.get(key)
        if items is None:
            items = for_each.items(builder_context(context, for_each.reads, for_each.name))
            lists[key] = items
            if len(lists) > ITEM_LISTS:
                lists.popitem(last=False)
        return for_each.item_context(context, item, undo=undo, items=items)

    async def on_start(self) -> None:
        if not self.local and not self._listening:  # replies come over the bus
            await self.port.open()
            self._listening = True

    async def on_stop(self) -> None:
        await self.close()

    async def close(self) -> None:
        """Cancel what is under way (fetches) and stop listening for replies."""
        self._closed = True
        tasks, self.tasks = self.tasks, set()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        await self.port.close()
        self._listening = False

    def _in_own_task(self, handling: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(handling)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # -- events -----------------------------------------------------------------------

    # advance and unwind run for every event: the checks and the guard are inlined here
    # rather than layered, a coroutine frame costing about as much as the checks themselves.

    async def advance(self, event: Advance) -> None:
        if self._deferred(event):
            return
        try:
            await self._advance(event)
        except Exception as exc:
            await self._broke(event, exc)
        if event.ack:  # handled: its sender may stop sending it
            self.engine._acknowledge(event.ack)

    async def unwind(self, event: Unwind) -> None:
        if self._deferred(event):
            return
        try:
            await self._unwind(event)
        except Exception as exc:
            await self._broke(event, exc)
        if event.ack:
            self.engine._acknowledge(event.ack)

    def _deferred(self, event: Advance | Unwind) -> bool:
        """Park the event of a paused instance (acknowledged: it is in hand), or, where events
        carry ids only (query-all), fetch its data first in a task of its own (acknowledged
        once the event goes on with its data, so that a process that dies while fetching
        has it sent again): True when the event is not for now."""
        held = self.held
        if held and event.workflow_id in held:
            held[event.workflow_id].append(event)
            if event.ack:
                self.engine._acknowledge(event.ack)
            return True
        if event.data is None and not self.engine._carries_data:
            self._in_own_task(self._guarded(self._fetch_then_handle(event), event))
            return True
        return False

    async def _fetch_then_handle(self, event: Advance | Unwind) -> None:
        """Query-all: fetch what the step's builders read from the services that hold it (in
        a task of its own, so that other workflows' events go on meanwhile), then handle the
        event with it: here, or, for a sidecar, back in the service's mailbox."""
        undo = isinstance(event, Unwind)
        try:
            data = await self.engine._fetch(
                self, event.workflow_id, event.step, undo=undo, item=event.item
            )
        except Exception as exc:
            await self._abandon(event, f"no context: {exc!r}")
            return
        fetched = msgspec.structs.replace(event, data=data)
        if self.local:  # back through the mailbox, while `event` may await its ack
            await self.engine._send(self.service, fetched, again=".fetched")
        elif isinstance(fetched, Unwind):
            await self._unwind(fetched)
        else:
            await self._advance(fetched)

    async def _guarded(self, handling: Coroutine[Any, Any, None], event: Advance | Unwind) -> None:
        """Handle an event, then acknowledge it; a bug on the way ends its workflow rather
        than losing it."""
        try:
            await handling
        except Exception as exc:
            await self._broke(event, exc)
        if event.ack:
            self.engine._acknowledge(event.ack)

    async def _broke(self, event: Advance | Unwind, exc: Exception) -> None:
        logger.error("%s: %r failed", self._adapter_name, event, exc_info=exc)
        await self._abandon(event, f"adapter error: {exc!r}")

    async def _advance(self, event: Advance) -> None:
        index = event.step
        if not self._mine(index, event):
            return
        step = self.steps[index]
        workflow_id = event.workflow_id
        engine = self.engine
        name = step.name if event.item < 0 else self._item_name(index, event.item)
        message_id = core.message_id(workflow_id, name)
        if event.attempt > 1 and self.port.attempt(message_id) != event.attempt:
            return  # a sidecar's retry that comes after its step ended: nothing to do
        assert event.data is not None
        data = event.data
        context = engine._codec.context(workflow_id, data.input, data.results, step.reads, name)
        pending = _Command(event, context, perf_counter(), name)
        if event.attempt == 1:
            if workflow_id in engine._cancelled:  # cancelled before this step started
                await self._decide(pending, StepCancelled(name), data)
                return
            if engine._tracks_starts:
                await engine._step_started(self, workflow_id, index, data, event.progress, name)
        try:
            if event.item >= 0:  # the item it is for, from the list its for-each builds
                context = pending.context = self._item_context(index, context, event.item)
            command = step.build(context)
        except Exception as exc:  # a bug in the definition: fail the step, not the service
            reason = f"building the command failed: {type(exc).__name__}: {exc}"
            await self._decide(pending, StepFailed(name, reason), data)
            return
        if step.wait:
            await self._execute(pending, command, message_id)
        else:
            await self._tell(pending, command, message_id)

    async def _tell(self, pending: _Command, command: msgspec.Struct, message_id: str) -> None:
        """A step nobody waits for: it counts as done once its command is on its way, and
        the instance moves on (beside a local service, before the service handles it, as a
        command told over the bus would wait in the service's mailbox)."""
        event = pending.event
        workflow_id = event.workflow_id
        step = self.steps[event.step]
        name = pending.name
        if self.local:
            carried = self.engine._step_done(self, workflow_id, name, event.data, b"")
            await self._decide(pending, StepAnswered(name), carried)
            assert self.service_actor is not None
            try:
                await dispatch(
                    self.service_actor, command, message_id=message_id, correlation_id=workflow_id
                )
            except Exception as exc:  # dead-lettered, and the directive applied: told
                logger.warning("%s: %s failed: %r", workflow_id, type(command).__name__, exc)
            return
        error = await tell_with_retry(
            self.service_ref,
            command,
            policy=step.retry,
            workflow_id=workflow_id,
            message_id=message_id,
        )
        if error is not None:
            carried = self.engine._step_failed(self, workflow_id, name, event.data)
            await self._decide(pending, StepFailed(name, error), carried)
            return
        carried = self.engine._step_done(self, workflow_id, name, event.data, b"")
        await self._decide(pending, StepAnswered(name), carried)

    async def _unwind(self, event: Unwind) -> None:
        index = event.step
        if not self._mine(index, event):
            return
        step = self.steps[index]
        workflow_id = event.workflow_id
        item = event.item
        name = step.name if item < 0 else self._item_name(index, item)
        message_id = core.undo_message_id(workflow_id, name)
        if event.attempt > 1 and self.port.attempt(message_id) != event.attempt:
            return
        assert step.compensation is not None
        assert event.data is not None
        data = event.data
        reads = step.undo_reads if item < 0 else (*step.reads, name)
        context = self.engine._codec.context(workflow_id, data.input, data.results, reads, name)
        context.failure = event.progress.failure
        pending = _Command(event, context, 0.0, name)
        try:
            if item >= 0:  # the item it is for, and its own reply
                context = self._item_context(index, context, item, undo=True)
                pending.context = context
            command = step.compensation(context)
        except Exception as exc:
            reason = f"building the compensation failed: {exc!r}"
            await self._decide(pending, CompensationFailed(name, reason), data)
            return
        await self._execute(pending, command, message_id)

    async def _execute(self, pending: _Command, command: msgspec.Struct, message_id: str) -> None:
        """Have the service carry out a step's command (or compensation) through the port:
        in place, beside a local service, or over the bus."""
        event = pending.event
        if not self.local:
            step = self.steps[event.step]
            await self.port.send(
                self.service_ref,
                command,
                pending,
                message_id=message_id,
                correlation_id=event.workflow_id,
                policy=step.retry,
                timeout=step.timeout,
            )
            return
        if event.attempt == 1:  # a retry's timing is the port's already
            self.port.call_begins(message_id, pending)
        await self._call_service(pending, command, message_id, reply_needed=not pending.undo)

    async def _call_service(
        self, pending: _Command, command: msgspec.Struct, message_id: str, *, reply_needed: bool
    ) -> None:
        """A sidecar's command: the service's handler runs now, in its own mailbox; the port
        times it and retries it as it would a command sent over the bus."""
        assert self.service_actor is not None
        try:
            reply = await dispatch(
                self.service_actor,
                command,
                message_id=message_id,
                correlation_id=pending.event.workflow_id,
            )
        except Exception as exc:  # dispatch has dead-lettered it and applied the directive
            reason = f"{type(exc).__name__}: {exc}"
            if self._closed:  # its choreography stopped meanwhile: no retry from here
                await self._command_failed(pending, reason)
            else:
                await self.port.call_failed(message_id, reason)
            return
        data = _encode(reply) if reply_needed else b""
        if self._closed:
            # Its choreography stopped while the service worked: the instance goes on all
            # the same, as it would without a sidecar (its events reach whoever took over).
            await self._answered(pending, reply, data)
        else:
            await self.port.call_answered(message_id, reply, data)

    def _describe(self, pending: _Command) -> tuple[str, RetryPolicy, float]:
        """What the port needs to time and retry a sidecar's call it takes up."""
        event = pending.event
        step = self.steps[event.step]
        return event.workflow_id, step.retry, step.timeout

    async def _again(self, pending: _Command, attempt: int) -> None:
        """The port's retry of a sidecar's command: its event again, through the mailbox, so
        the service serves other messages meanwhile."""
        await self.engine._send(
            self.service, msgspec.structs.replace(pending.event, attempt=attempt)
        )

    async def cancel(self, event: Cancel) -> None:
        self.engine._cancel_seen(event.workflow_id)
        if event.ack:
            self.engine._acknowledge(event.ack)

    async def hold(self, event: Hold) -> None:
        """Park the instance's events here, or let the parked ones go on (in order, through
        the mailbox, so that they queue behind what came meanwhile)."""
        if event.held:
            self.held.setdefault(event.workflow_id, [])
            return
        for parked in self.held.pop(event.workflow_id, []):
            # An id of its own: a stored event's id is kept a while against duplicates.
            await self.engine._send(self.service, parked, again=f".resumed.{new_id()}")

    # -- the service's answers ---------------------------------------------------------

    async def _replied(self, pending: _Command, reply: Any, data: bytes) -> None:
        """A reply over the bus (a sidecar's answers go to `_answered` at once: they come
        from the service's mailbox, where the service sends what follows)."""
        with acting_as(self._adapter_name):
            await self._answered(pending, reply, data)

    async def _answered(self, pending: _Command, reply: Any, data: bytes) -> None:
        event = pending.event
        name = pending.name
        engine = self.engine
        workflow_id = event.workflow_id
        if type(event) is Unwind:
            if isinstance(reply, Rejected):
                reason = f"the compensation was refused: {reply.reason}"
                await self._decide(pending, CompensationFailed(name, reason), event.data)
                return
            engine.metrics.compensations += 1
            carried = engine._step_compensated(self, workflow_id, name, event.data)
            await self._decide(pending, CompensationDone(name), carried)
            return
        # timed as the step (a for-each's items, as the step they run)
        engine.metrics.step_took(self.steps[event.step].name, perf_counter() - pending.sent_at)
        if isinstance(reply, Rejected):
            carried = engine._step_failed(self, workflow_id, name, event.data)
            await self._decide(pending, StepRejected(name, reply.reason), carried)
            return
        carried = engine._step_done(self, workflow_id, name, event.data, data)
        await self._decide(pending, StepAnswered(name), carried)

    async def _command_failed(self, pending: _Command, reason: str) -> None:
        with acting_as(self.sender):  # a sidecar's timeout comes from the port's sweeper
            await self._failed(pending, reason)

    async def _failed(self, pending: _Command, reason: str) -> None:
        event = pending.event
        name = pending.name
        if type(event) is Unwind:
            await self._decide(pending, CompensationFailed(name, reason), event.data)
            return
        carried = self.engine._step_failed(self, event.workflow_id, name, event.data)
        await self._decide(pending, StepFailed(name, reason), carried)

    # -- what comes next: the core decides ---------------------------------------------

    async def _decide(
        self, pending: _Command, happened: core.Event, carried: Carried | None
    ) -> None:
        """Feed what happened to the core, with the instance's progress as the event that
        brought it here carries it, and carry out what the core says, as events."""
        event = pending.event
        workflow_id = event.workflow_id
        engine = self.engine
        if type(event) is Unwind:
            progress, actions = core.apply(self.workflow, event.progress, happened)
        elif event.progress is not None:  # a flow with branches: its own way so far
            if event.report:  # type: ignore[union-attr]  # the starter drives it (a parallel's branches): it decides
                # An Advance's step: what happened is how it ended (a StepEnd).
                await engine._report(workflow_id, happened, carried)  # type: ignore[arg-type]
                return
            progress = msgspec.structs.replace(event.progress)
            if workflow_id in engine._cancelled:
                progress.cancel_requested = True
            progress, actions = core.apply(self.workflow, progress, happened)
        elif (
            type(happened) is StepAnswered
            and self.linear  # a branch's decision changes the progress it is given
            and workflow_id not in engine._cancelled
        ):
            # A step answered on the way forward: the core's answer depends on the step only
            # (the progress an Advance stands for is the same for every instance), so it is
            # asked once per step and kept. Its progress is only read from then on.
            decided = self._answered_forward.get(event.step)
            if decided is None:
                decided = self._answered_forward[event.step] = core.apply(
                    self.workflow, self._progress_at(event.step), happened
                )
            progress, actions = decided
        else:
            progress = self._progress_at(event.step)
            if workflow_id in engine._cancelled:  # known before the step under way ended
                progress.cancel_requested = True
            progress, actions = core.apply(self.workflow, progress, happened)
        if len(actions) == 1 and type(actions[0]) is Perform:  # on to the next step, mostly
            await self._perform(workflow_id, actions[0], progress, carried)
            return
        await self._carry_out(pending, progress, actions, carried)

    async def _perform(
        self, workflow_id: str, action: Perform, progress: Progress, carried: Carried | None
    ) -> None:
        """Tell the next step's service to perform it."""
        engine = self.engine
        following = self._index[action.step]
        advance = Advance(
            workflow_id,
            following,
            carried,
            route=engine._route,
            ack=engine._ack_to,
            progress=None if self.linear else progress,
        )
        await engine._send(self.steps[following].service, advance)

    async def _carry_out(
        self, pending: _Command, progress: Progress, actions: core.Actions, carried: Carried | None
    ) -> None:
        """Carry out what the core said, as events (the engine's one way to, for every
        action)."""
        await self.engine._carry_out(
            self, pending.event.workflow_id, progress, actions, carried, pending.context
        )

    def _progress_of(self, event: Advance) -> Progress:
        """Where the instance an `Advance` carries stands: as the event says, in a flow with
        branches; else worked out from the step (the same for every instance)."""
        if event.progress is not None:
            return msgspec.structs.replace(event.progress)
        return self._progress_at(event.step)

    def _progress_at(self, index: int) -> Progress:
        """The progress an `Advance` of step `index` stands for: the steps before it done,
        it under way."""
        return Progress(active=(self.steps[index].name,), completed=self._done_before[index])

    async def _abandon(self, event: Advance | Unwind, reason: str) -> None:
        """End a workflow that cannot go on, not even backwards: the data its builders need
        is gone (a participant forgot it, or did not answer), or the adapter failed. Nothing
        more is sent to the services; the outcome says what happened (NEEDS_ATTENTION for an
        instance that was compensating: what is left is someone's to undo)."""
        name = self.steps[event.step].name
        if event.item >= 0:
            name = self._item_name(event.step, event.item)
        logger.error("%s: abandoned at %r: %s", event.workflow_id, name, reason)
        if isinstance(event, Unwind):
            progress = event.progress
            left = (name, *progress.undo)
            progress.attention = (*progress.attention, *(f"{step}: {reason}" for step in left))
            progress.compensating = progress.undo = ()
            progress.outcome = Outcome.NEEDS_ATTENTION
        else:
            progress = Progress(
                Outcome.FAILED,
                completed=self._progress_of(event).completed,
                failure=Failure(name, reason, technical=True),
            )
        await self.engine._end(self, Ended(event.workflow_id, progress, ack=self.engine._ack_to))

    # -- helpers -----------------------------------------------------------------------

    def _mine(self, index: int, event: Advance | Unwind) -> bool:
        if 0 <= index < len(self.steps) and self.steps[index].service == self.service:
            return True
        logger.error(
            "%s: %r reached %r, which does not serve it", self._adapter_name, event, self.service
        )
        return False
