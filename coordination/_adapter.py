"""The adapter that wraps one service for a choreography.

It reacts to `Advance` by building its step's command and having the service carry it out,
then publishes the next `Advance` to the next step's service, or `Ended` when there is none;
on a failure it turns the flow around with `Unwind` (see `_choreography`). Beside a local
service it runs as a sidecar in the service's mailbox; for a service elsewhere it is an actor
of its own that commands the service over the bus.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Coroutine
from time import perf_counter
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import msgspec

from actors import Actor, ActorRef, acting_as, dispatch

from ._commands import CommandPort, send_notices
from ._definition import Failure, Rejected, WorkflowContext
from ._events import Advance, Cancel, Carried, Ended, Hold, Unwind, advance_id, unwind_id
from ._status import Outcome

if TYPE_CHECKING:
    from ._choreography import Choreography

__all__ = ("CANCELLED", "Adapter")

logger = logging.getLogger("coordination")

In = TypeVar("In", bound=msgspec.Struct)

CANCELLED = "cancelled"
REMEMBERED_CANCELS = 10_000

_encode = msgspec.msgpack.Encoder().encode


class _Command(msgspec.Struct):
    """What a pending command of an adapter was for (a Struct: one is made per step, and
    its constructor is C)."""

    workflow_id: str
    step: int
    undo: bool
    context: WorkflowContext[Any]
    data: Carried | None
    event: Unwind | None = None
    sent_at: float = 0.0


class Adapter(Actor, Generic[In]):
    """Wraps one service for a choreography: performs and undoes the service's steps when
    events say so, and tells the next service what comes next.

    Beside a local service the adapter is a sidecar: its handlers are added to the service's
    own mailbox (`ActorSystem.add_handlers`), events go to the service's subject, and the
    adapter calls the service's handlers directly (`dispatch`), one message at a time with
    the service's other messages. A service in another process is wrapped from here instead:
    the adapter is an actor of its own, and sends the service its commands over the bus with a
    reply subject (`CommandPort`), timeouts and retries included.
    """

    def __init__(self, engine: Choreography[In], service: str, *, local: bool) -> None:
        self.engine = engine
        self.service = service
        self.local = local
        self.workflow = engine.workflow
        self.steps = engine.workflow.steps
        self.service_ref: ActorRef[Any] = engine.refs[service]
        self.service_actor: Actor | None = None
        """The local service instance, as its mailbox hands it to the sidecar handlers."""
        self.cancelled: OrderedDict[str, None] = OrderedDict()
        self.held: dict[str, list[Advance | Unwind]] = {}
        """The paused instances, and the events of theirs that arrived meanwhile."""
        self.port: CommandPort[_Command] | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        """Events whose context is being fetched (query-all), and retries being resent."""
        self.timers: set[asyncio.TimerHandle] = set()
        self.adapter_name = engine.adapter_name(service)

    async def on_start(self) -> None:
        if self.port is None and not self.local:
            self.port = CommandPort(
                self.engine.system,
                self.adapter_name,
                self._replied,
                self._command_failed,
                self._retried,
            )
            await self.port.open()

    async def on_stop(self) -> None:
        await self.close()

    async def close(self) -> None:
        """Cancel what is under way (retries, fetches) and stop listening for replies."""
        for timer in self.timers:
            timer.cancel()
        self.timers.clear()
        tasks, self.tasks = self.tasks, set()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        port, self.port = self.port, None
        if port is not None:
            await port.close()

    def _in_own_task(self, handling: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(handling)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # -- events -----------------------------------------------------------------------

    # advance and unwind run for every event: the checks and the guard are inlined here
    # rather than layered, a coroutine frame costing about as much as the checks themselves.

    async def advance(self, event: Advance) -> None:
        if not self._deferred(event):
            try:
                await self._advance(event)
            except Exception as exc:
                await self._broke(event, exc)
        if event.ack:  # handled (or parked, or handed to a fetch): its sender may stop
            self.engine.acks_out.acknowledge(self.engine.route, event.ack)

    async def unwind(self, event: Unwind) -> None:
        if not self._deferred(event):
            try:
                await self._unwind(event)
            except Exception as exc:
                await self._broke(event, exc)
        if event.ack:
            self.engine.acks_out.acknowledge(self.engine.route, event.ack)

    def _deferred(self, event: Advance | Unwind) -> bool:
        """Park the event of a paused instance, or, where events carry ids only (query-all),
        fetch its data first in a task of its own: True when the event is not for now."""
        held = self.held
        if held and event.workflow_id in held:
            held[event.workflow_id].append(event)
            return True
        if event.data is None and not self.engine.carries_data:
            self._in_own_task(self._guarded(self._fetch_then_handle(event), event))
            return True
        return False

    async def _fetch_then_handle(self, event: Advance | Unwind) -> None:
        """Query-all: fetch what the step's builders read from the services that hold it (in
        a task of its own, so that other workflows' events go on meanwhile), then handle the
        event with it: here, or, for a sidecar, back in the service's mailbox."""
        undo = isinstance(event, Unwind)
        try:
            data = await self.engine.fetch(self, event.workflow_id, event.step, undo=undo)
        except Exception as exc:
            await self._abandon(event, f"no context: {exc!r}")
            return
        fetched = msgspec.structs.replace(event, data=data)
        if self.local:  # back through the mailbox, while `event` may await its ack
            await self._emit(self.service, fetched, again=".fetched")
        elif isinstance(fetched, Unwind):
            await self._unwind(fetched)
        else:
            await self._advance(fetched)

    async def _guarded(self, handling: Coroutine[Any, Any, None], event: Advance | Unwind) -> None:
        """Handle an event; a bug on the way ends its workflow rather than losing it."""
        try:
            await handling
        except Exception as exc:
            await self._broke(event, exc)

    async def _broke(self, event: Advance | Unwind, exc: Exception) -> None:
        logger.error("%s: %r failed", self.adapter_name, event, exc_info=exc)
        await self._abandon(event, f"adapter error: {exc!r}")

    async def _advance(self, event: Advance) -> None:
        index = event.step
        if not self._mine(index, event):
            return
        step = self.steps[index]
        workflow_id = event.workflow_id
        engine = self.engine
        assert event.data is not None
        data = event.data
        context = engine.codec.context(workflow_id, data.input, data.results, step.reads, step.name)
        if workflow_id in self.cancelled:
            failure = Failure(step.name, CANCELLED, technical=False)
            await self._turn_back(workflow_id, index, False, failure, True, context, event.data)
            return
        if engine.tracks_starts:
            await engine.step_started(self, workflow_id, index, event.data)
        try:
            command = step.build(context)
        except Exception as exc:  # a bug in the definition: fail the step, not the service
            reason = f"building the command failed: {type(exc).__name__}: {exc}"
            failure = Failure(step.name, reason, technical=True)
            await self._turn_back(workflow_id, index, False, failure, False, context, event.data)
            return
        pending = _Command(workflow_id, index, False, context, event.data, sent_at=perf_counter())
        message_id = f"{workflow_id}.{step.name}"
        if self.local:
            await self._call_service(pending, event, command, message_id)
            return
        assert self.port is not None
        error = await self.port.perform(
            self.service_ref,
            step,
            command,
            pending,
            message_id=message_id,
            workflow_id=workflow_id,
        )
        if step.wait:
            return  # on with the answer
        if error is not None:
            await self._failed(pending, Failure(step.name, error, technical=True))
            return
        await self._done(pending, None, b"")

    async def _unwind(self, event: Unwind) -> None:
        index = event.step
        if not self._mine(index, event):
            return
        step = self.steps[index]
        assert step.compensation is not None
        assert event.data is not None
        workflow_id = event.workflow_id
        data = event.data
        context = self.engine.codec.context(
            workflow_id, data.input, data.results, step.undo_reads, step.name
        )
        context.failure = Failure(event.failed_step, event.reason, event.technical)
        pending = _Command(workflow_id, index, True, context, event.data, event)
        try:
            command = step.compensation(context)
        except Exception as exc:
            await self._undo_failed(pending, f"building the compensation failed: {exc!r}")
            return
        message_id = f"{workflow_id}.{step.name}.undo"
        if self.local:
            await self._call_service(pending, event, command, message_id)
            return
        assert self.port is not None
        await self.port.send(
            self.service_ref,
            command,
            pending,
            message_id=message_id,
            correlation_id=workflow_id,
            policy=step.retry,
            timeout=step.timeout,
        )

    async def _call_service(
        self,
        pending: _Command,
        event: Advance | Unwind,
        command: msgspec.Struct,
        message_id: str,
    ) -> None:
        """A sidecar's command: the service's handler runs now, in its own mailbox. A failure
        is retried by sending the event again after the backoff, so the service serves other
        messages meanwhile."""
        step = self.steps[pending.step]
        assert self.service_actor is not None
        try:
            reply = await dispatch(
                self.service_actor,
                command,
                message_id=message_id,
                correlation_id=pending.workflow_id,
            )
        except Exception as exc:  # dispatch has dead-lettered the command
            if event.attempt < step.retry.attempts:
                logger.warning(
                    "%s: %s attempt %d failed: %r",
                    pending.workflow_id,
                    type(command).__name__,
                    event.attempt,
                    exc,
                )
                self.engine.metrics.retries += 1
                again = msgspec.structs.replace(event, attempt=event.attempt + 1)
                self._later(step.retry.delay(event.attempt), again)
                return
            reason = f"{type(exc).__name__}: {exc}"
            if pending.undo:
                await self._undo_failed(pending, reason)
            else:
                await self._failed(pending, Failure(step.name, reason, technical=True))
            return
        data = _encode(reply) if step.wait and not pending.undo else b""
        await self._answered(pending, reply, data)

    def _later(self, delay: float, event: Advance | Unwind) -> None:
        loop = asyncio.get_running_loop()

        def resend() -> None:
            self.timers.discard(timer)
            self._in_own_task(self._to_service(event))

        timer = loop.call_later(delay, resend)
        self.timers.add(timer)

    async def _to_service(self, event: Advance | Unwind) -> None:
        await self._emit(self.service, event)

    async def _emit(self, service: str, event: Advance | Unwind, again: str = "") -> None:
        """Send `event` to `service`'s adapter (acknowledged where events can be lost);
        `again` tells apart an event sent anew while the same one may await its
        acknowledgement."""
        engine = self.engine
        to = engine.adapters[service]
        if not engine.ack_to:  # told: no id or timeout to work out (the in-memory hot path)
            await to.tell(event, correlation_id=event.workflow_id)
            return
        message_id = advance_id(event) if isinstance(event, Advance) else unwind_id(event)
        await engine.emit(to, event, message_id + again, self.steps[event.step].timeout)

    async def cancel(self, event: Cancel) -> None:
        self.cancelled[event.workflow_id] = None
        if len(self.cancelled) > REMEMBERED_CANCELS:
            self.cancelled.popitem(last=False)
        if event.ack:
            self.engine.acks_out.acknowledge(self.engine.route, event.ack)

    async def hold(self, event: Hold) -> None:
        """Park the instance's events here, or let the parked ones go on (in order, through
        the mailbox, so that they queue behind what came meanwhile)."""
        if event.held:
            self.held.setdefault(event.workflow_id, [])
            return
        for parked in self.held.pop(event.workflow_id, []):
            await self._emit(self.service, parked)

    # -- the service's answers ---------------------------------------------------------

    async def _replied(self, pending: _Command, reply: Any, data: bytes) -> None:
        with acting_as(self.adapter_name):
            await self._answered(pending, reply, data)

    async def _command_failed(self, pending: _Command, reason: str) -> None:
        with acting_as(self.adapter_name):
            if pending.undo:
                await self._undo_failed(pending, reason)
            else:
                step = self.steps[pending.step]
                await self._failed(pending, Failure(step.name, reason, technical=True))

    def _retried(self) -> None:
        self.engine.metrics.retries += 1

    async def _answered(self, pending: _Command, reply: Any, data: bytes) -> None:
        step = self.steps[pending.step]
        if not pending.undo:
            self.engine.metrics.step_took(step.name, perf_counter() - pending.sent_at)
        if pending.undo:
            if isinstance(reply, Rejected):
                await self._undo_failed(pending, f"the compensation was refused: {reply.reason}")
            else:
                await self._undone(pending)
        elif isinstance(reply, Rejected):
            await self._failed(pending, Failure(step.name, reply.reason, technical=False))
        else:
            await self._done(pending, reply, data)

    async def _done(self, pending: _Command, reply: Any, data: bytes) -> None:
        workflow_id, index = pending.workflow_id, pending.step
        step = self.steps[index]
        engine = self.engine
        carried = engine.step_done(self, workflow_id, index, pending.data, data)
        if workflow_id in self.cancelled:
            failure = Failure(step.name, CANCELLED, technical=False)
            await self._turn_back(workflow_id, index, True, failure, True, pending.context, carried)
            return
        following = index + 1
        if following < len(self.steps):
            advance = Advance(
                workflow_id, following, carried, route=engine.route, ack=engine.ack_to
            )
            await self._emit(self.steps[following].service, advance)
            return
        completed = [s.name for s in self.steps]
        ended = Ended(
            workflow_id, Outcome.COMPLETED.value, completed, data=carried, ack=engine.ack_to
        )
        await engine.end(self, ended)

    async def _failed(self, pending: _Command, failure: Failure) -> None:
        carried = self.engine.step_failed(self, pending.workflow_id, pending.step, pending.data)
        await self._turn_back(
            pending.workflow_id, pending.step, False, failure, False, pending.context, carried
        )

    async def _undone(self, pending: _Command) -> None:
        event = pending.event
        assert event is not None
        step = self.steps[pending.step]
        self.engine.metrics.compensations += 1
        carried = self.engine.step_compensated(self, event.workflow_id, pending.step, event.data)
        compensated = [*event.compensated, step.name]
        await self._unwind_from(event, pending.step, compensated, pending.context, carried)

    async def _undo_failed(self, pending: _Command, reason: str) -> None:
        """A compensation that could not be done, retries spent: the workflow will end in
        NEEDS_ATTENTION, saying which and why, never silently."""
        event = pending.event
        assert event is not None
        name = self.steps[pending.step].name
        logger.error("%s: compensation of %r failed: %s", event.workflow_id, name, reason)
        event = msgspec.structs.replace(event, attention=[*event.attention, f"{name}: {reason}"])
        await self._unwind_from(event, pending.step, event.compensated, pending.context, event.data)

    # -- the way back ------------------------------------------------------------------

    async def _turn_back(
        self,
        workflow_id: str,
        index: int,
        done: bool,
        failure: Failure,
        cancelled: bool,
        context: WorkflowContext[Any],
        carried: Carried | None,
    ) -> None:
        """Step `index` failed (or was cancelled, `done` saying whether it completed first):
        start compensating the steps before it, newest first."""
        completed = index + 1 if done else index
        first = Unwind(
            workflow_id,
            completed,
            failure.step,
            failure.reason,
            failure.technical,
            cancelled,
            completed,
            [],
            carried,
            route=self.engine.route,
        )
        context.failure = failure
        await self._unwind_from(first, completed, [], context, carried)

    async def _unwind_from(
        self,
        event: Unwind,
        below: int,
        compensated: list[str],
        context: WorkflowContext[Any],
        carried: Carried | None,
    ) -> None:
        """Hand the compensation on to the newest compensable step before `below`, or, when
        none is left, send the failure notices and end the workflow."""
        workflow_id = event.workflow_id
        for index in range(below - 1, -1, -1):
            step = self.steps[index]
            if step.compensation is not None:
                await self._emit(
                    step.service,
                    Unwind(
                        workflow_id,
                        index,
                        event.failed_step,
                        event.reason,
                        event.technical,
                        event.cancelled,
                        event.completed,
                        compensated,
                        carried,
                        route=self.engine.route,
                        attention=event.attention,
                        ack=self.engine.ack_to,
                    ),
                )
                return
        context.failure = Failure(event.failed_step, event.reason, event.technical)
        await send_notices(self.workflow, self.engine.refs, context, workflow_id)
        if event.attention:
            outcome = Outcome.NEEDS_ATTENTION
        elif event.cancelled:
            outcome = Outcome.CANCELLED
        elif compensated:
            outcome = Outcome.COMPENSATED
        else:
            outcome = Outcome.FAILED
        ended = Ended(
            workflow_id,
            outcome.value,
            [s.name for s in self.steps[: event.completed]],
            compensated,
            event.failed_step,
            event.reason,
            event.technical,
            carried,
            event.attention,
            ack=self.engine.ack_to,
        )
        await self.engine.end(self, ended)

    async def _abandon(self, event: Advance | Unwind, reason: str) -> None:
        """End a workflow that cannot go on, not even backwards: the data its builders need
        is gone (a participant forgot it, or did not answer), or the adapter failed. Nothing
        more is sent to the services; the outcome says what happened."""
        if isinstance(event, Unwind):
            completed, compensated = event.completed, event.compensated
        else:
            completed, compensated = event.step, []
        name = self.steps[event.step].name
        logger.error("%s: abandoned at %r: %s", event.workflow_id, name, reason)
        ended = Ended(
            event.workflow_id,
            Outcome.FAILED.value,
            [s.name for s in self.steps[:completed]],
            compensated,
            name,
            reason,
            technical=True,
            ack=self.engine.ack_to,
        )
        await self.engine.end(self, ended)

    # -- helpers -----------------------------------------------------------------------

    def _mine(self, index: int, event: Advance | Unwind) -> bool:
        if 0 <= index < len(self.steps) and self.steps[index].service == self.service:
            return True
        logger.error(
            "%s: %r reached %r, which does not serve it", self.adapter_name, event, self.service
        )
        return False
