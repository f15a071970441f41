"""The machinery the four choreographies share: an adapter per service, routing derived from
the definition, failure events that lead services to compensate themselves.

Nobody drives a choreographed workflow. Each service is wrapped by an adapter that reacts to
`Advance` by building its step's command and having the service carry it out, then publishes
the next `Advance` to the next step's service, or `Ended` when there is none. A business
refusal, a technical failure that outlived its retries, or a cancellation turns the flow
around: the adapter sends `Unwind` to the latest completed step that has a compensation, whose
adapter undoes it and passes `Unwind` on to the one before; the last of them (or the failing
adapter, when nothing needs undoing) sends the failure notices and `Ended`.

An adapter beside a local service is a sidecar in the service's own mailbox, and events go
from service to service; for a service elsewhere it is an actor of its own
(`<strategy>.<workflow>.<service>`, private to the process) that commands the service over
the bus. Several processes may start instances of one workflow: an instance's ids name the
process that started it, and its end (and any question about it) goes there.

On a bus that can lose a message (NATS: a connection cut, a server restart), the events that
carry an instance forward are acknowledged: each carries a subject of its sender's, the
receiver acknowledges it once it has handled it (in batches, `_acks`), and an event not
acknowledged within its step's timeout is told again with the same message id
(`_acks.EventSender`). Receivers take a repeated event as a duplicated one: the services'
handlers are idempotent by message id, and an instance ends once. In memory nothing is lost,
and events are plain tells.

Some of an instance's way is driven by the process that started it, which has the instance
in hand (`_Held`) for as long as that lasts: a wait or a sleep (signals and its clock are
there), and a parallel, a for-each or a sub-workflow (`Handover`). It is the join: each step
it sends reports its end back (`Advance.report`, `Landed`), the core decides there, and once
nothing of the kind is under way the services carry the instance on among themselves again.

The strategies differ in what the events carry and in who can answer `status`; they fill in the
hooks of `Choreography`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Mapping
from time import perf_counter
from types import TracebackType
from typing import Any, ClassVar, Generic, Self, TypeVar

import msgspec

from actors import Actor, ActorRef, ActorSystem
from brokers import MemoryBus, Msg, NatsBus, Subscription, new_id

from .. import core
from .._children import Children
from .._clock import Clock, SystemClock, Timers
from .._errors import CoordinationError, UnknownWorkflowError, WorkflowEndedError
from .._metrics import WorkflowMetrics
from .._outcomes import DEFAULT_KEEP, Outcomes
from .._remote import Remote, new_workflow_ids, owner_of
from .._status import Outcome, WorkflowResult, WorkflowStatus, history_entry
from ..core import (
    Await,
    Calculate,
    Choose,
    Collect,
    Compensate,
    ListItems,
    Perform,
    Progress,
    SendNotices,
    StartChild,
    Started,
    StartTimer,
)
from ..core._executor import send_notices
from ..definition._workflow import (
    FAIL,
    Branch,
    Compute,
    Failure,
    ForEach,
    Rejected,
    SubWorkflow,
    Workflow,
    WorkflowContext,
    check_input,
    check_signal,
)
from ._acks import EventSender, ack_subject, acknowledger, decode_acks, flush_acks
from ._adapter import Adapter
from ._carriage import ContextCodec
from ._events import (
    EVENT_RETRY,
    Advance,
    Begin,
    Cancel,
    Carried,
    Ended,
    Handover,
    Hold,
    Landed,
    Parked,
    Unwind,
    advance_id,
    unwind_id,
)
from ._gather import gather
from ._sidecars import attach, detach
from ._stored_events import StoredEvents

__all__ = ("Choreography",)

logger = logging.getLogger("coordination")

REMEMBERED_CANCELS = 10_000

EVENT_TIMEOUT = 5.0
"""The acknowledgement timeout of an event that is not for a step (`Ended`, `Begin`)."""

In = TypeVar("In", bound=msgspec.Struct)


def _always(adapter: Adapter[Any]) -> Callable[[], Adapter[Any]]:
    """A factory that gives back the same adapter: a restart keeps its pending commands."""
    return lambda: adapter


class _Client(Actor):
    """Receives `Ended` for the callers of `result` (the strategies without a front
    controller): a private actor, since each process hears the ends of the instances it
    started (their ids name it)."""

    def __init__(self, engine: Choreography[Any]) -> None:
        self.engine = engine

    async def ended(self, event: Ended) -> None:
        self.engine._finish(event)
        if event.ack:
            self.engine._acks_out.acknowledge(self.engine._route, event.ack)

    async def parked(self, event: Parked) -> None:
        await self.engine._parked_here(event)
        if event.ack:
            self.engine._acks_out.acknowledge(self.engine._route, event.ack)

    async def handover(self, event: Handover) -> None:
        await self.engine._handed_over(event)
        if event.ack:
            self.engine._acks_out.acknowledge(self.engine._route, event.ack)

    async def landed(self, event: Landed) -> None:
        await self.engine._landed(event)
        if event.ack:
            self.engine._acks_out.acknowledge(self.engine._route, event.ack)


class _Sidecars(Actor):
    """What a service hosted elsewhere with this workflow's adapters beside it takes (the
    class of the refs that send it events: its own handlers are its host's business)."""

    async def advance(self, event: Advance) -> None:
        raise NotImplementedError

    async def unwind(self, event: Unwind) -> None:
        raise NotImplementedError

    async def cancel(self, event: Cancel) -> None:
        raise NotImplementedError

    async def hold(self, event: Hold) -> None:
        raise NotImplementedError


_control_decoder = msgspec.msgpack.Decoder(Cancel | Hold)

CONTROL_TIMEOUT = 2.0
"""Seconds a cancel or a pause waits for the first host to confirm it (see `_broadcast`)."""
GATHER_QUIET = 0.05
"""Seconds without another host's confirmation after which all are taken to have answered."""
_encode = msgspec.msgpack.Encoder().encode


class Choreography(Generic[In]):
    """Base of the choreographed strategies: the strategy API over adapters and events.

    Subclasses say what events carry (`_carries_data`) and how `status` is answered, and may
    hook into each step's start, end, failure and compensation. With `sidecars` (the
    default), the adapter of a service that runs in this system works inside the service's
    mailbox; without, or for a service elsewhere on the bus, it is an actor of its own that
    reaches the service over the bus. `acknowledged` events are sent until their receivers
    acknowledge them: by default on any bus but a MemoryBus.

    With `remote_sidecars`, the services this process does not run have this workflow's
    adapters beside them in the processes that host them, as sidecars there: events go to
    the services themselves, and this process keeps only the start, the end and the
    questions about its instances. Every host of such a service must take part in the
    workflow under this strategy: it enters the same strategy with `remote_sidecars=True`
    (for `corps serve`, its build function returns it).

    With `durable_events`, on NATS, the events that carry instances forward are stored in a
    JetStream stream until a host of their service has handled them, so that a host killed
    mid-run loses none (see `_stored_events`): every service's adapter must run beside it
    (here, or in its hosts with `remote_sidecars`), and the server must run JetStream. On a
    MemoryBus, where nothing is lost in flight, the events are told as usual.
    """

    strategy: str
    _carries_data: ClassVar[bool] = True
    _durable = False
    """Whether the strategy keeps its instances in a store other processes may share."""
    _endpoint_class: ClassVar[type[Actor]] = _Client
    """The class of the actor `_make_endpoint` makes."""

    def __init__(
        self,
        system: ActorSystem,
        workflow: Workflow[In],
        *,
        keep_finished: int = DEFAULT_KEEP,
        sidecars: bool = True,
        stuck_after: float = 60.0,
        acknowledged: bool | None = None,
        remote_sidecars: bool = False,
        durable_events: bool = False,
        clock: Clock | None = None,
    ) -> None:
        self.system = system
        self.clock: Clock = clock if clock is not None else SystemClock()
        """What the timers of `Sleep` read (a `ManualClock` in a test skips time)."""
        self._timers = Timers(self.clock)
        self.sidecars = sidecars
        self.remote_sidecars = remote_sidecars
        self.durable_events = durable_events
        self._stored: StoredEvents | None = None
        """With durable events on NATS: the stream the events go through."""
        self._tracks_starts = type(self)._step_started is not Choreography._step_started
        """Whether adapters call `step_started`: only strategies that override it (saving an
        await per step for the others)."""
        self.stuck_after = stuck_after
        """Seconds without progress this strategy can see after which a running instance
        counts as stuck."""
        self.workflow = workflow
        self._codec = ContextCodec(workflow)
        self._refs: dict[str, ActorRef[Any]] = {}
        self._adapters: dict[str, ActorRef[Any]] = {}
        """Where each service's events go: the service itself (a sidecar) or its adapter."""
        self._local_adapters: dict[str, Adapter[In]] = {}
        self._spawned: list[ActorRef[Any]] = []
        """The adapters of their own this choreography spawned (to stop on leaving)."""
        self._endpoint: ActorRef[Any] | None = None
        self._endpoints: dict[str, ActorRef[Any]] = {}
        """The endpoints of the other processes that start instances, by node."""
        self._new_id = new_workflow_ids(workflow, system)
        self._own_ids = f"{workflow.name}-{system.node}-"
        """How the ids of the instances this process starts begin (a check per event)."""
        self.metrics = WorkflowMetrics.of(system, workflow.name, self.strategy)
        self.outcomes = Outcomes(workflow.name, keep_finished, self.metrics)
        """Whose results `result` gives: the latest `keep_finished` finished are kept."""
        self.metrics.stuck = lambda: len(self.stuck())
        self._remote = Remote(
            system,
            workflow,
            self._route,
            self.outcomes,
            self._own_status,
            self,
            durable=lambda: self._durable,
        )
        self._cancelled: OrderedDict[str, None] = OrderedDict()
        """The instances someone cancelled (the latest `REMEMBERED_CANCELS`): each adapter
        here turns one around at the next step it sees end."""
        self._paused: set[str] = set()
        self._here: dict[str, _Held] = {}
        """The instances of this process's it has in hand: waiting here for a signal or a
        timer, or running the branches of a parallel, which this process drives."""
        self._driven = (
            frozenset(workflow.enclosing)
            | frozenset(workflow.for_eaches)
            | frozenset(workflow.subworkflows)
        )
        """The nodes inside parallels, and the for-eaches: while one (or an item of a
        for-each, `<for-each>[<index>]`) is under way, this process drives the instance."""
        self._signals: dict[str, dict[str, msgspec.Raw]] = {}
        """The signals each running instance of this process's has had, by wait: kept from
        the moment they come, which may be before the instance waits for them."""
        self._step_index = {step.name: index for index, step in enumerate(workflow.steps)}
        self._history: OrderedDict[str, list[str]] = OrderedDict()
        """What operators did, per instance: `<UTC time> <who>: <what>`."""
        self._progress: dict[str, float] = {}
        """When each running instance last moved on, as far as the strategy can see: its
        start, or a later event it witnessed (`progressed`)."""
        self._running = False
        self._events: EventSender | None = None
        """Sends the events that must not be lost, on a bus that can lose them."""
        self._acks_out = acknowledger(system)
        """Where this system's receivers of acknowledged events acknowledge them."""
        self._ack_to = ""
        """Where receivers acknowledge this choreography's events ("": not acknowledged);
        the events are made with it."""
        self._acks: Subscription | None = None
        self._control: Subscription | None = None
        """With remote sidecars: where cancels and pauses reach every host's adapters."""
        self.acknowledged = acknowledged
        self._options: dict[str, Any] = {
            "keep_finished": keep_finished,
            "sidecars": sidecars,
            "stuck_after": stuck_after,
            "acknowledged": acknowledged,
            "remote_sidecars": remote_sidecars,
            "durable_events": durable_events,
            "clock": self.clock,
        }
        """What this choreography was made with: its children are made alike."""
        self._children = Children(workflow, self._make_child)
        self.children: Mapping[str, Any] = self._children.strategies
        """The strategies that run the children of the sub-workflows, by sub-workflow
        name (of this choreography's kind): ask them a child's `status`, `result`, or
        `cancel` it."""
        self._keeps_ends = False
        """Whether this runs children: the end of each instance is kept, so that a parent
        that turns around can have it undo its steps (`_undo`)."""
        self._ends: OrderedDict[str, Ended] = OrderedDict()
        self._child_tasks: set[asyncio.Task[None]] = set()
        """Whether events are acknowledged and sent again until they are (see the module's
        docstring); None, the default: when the bus is not a MemoryBus (decided on
        entering). False on NATS trades the guarantee for 15-20% more throughput."""

    @functools.cached_property
    def _route(self) -> str:
        """What this choreography's events name it by: `<strategy>.<workflow>` (read for
        every event: worked out once)."""
        return f"{self.strategy}.{self.workflow.name}"

    @property
    def events_stream(self) -> str | None:
        """The JetStream stream that keeps this choreography's events until they are handled
        (its backlog is the work in flight), or None: without `durable_events` on NATS."""
        return self._stored.stream if self._stored is not None else None

    def _adapter_name(self, service: str) -> str:
        return f"{self._route}.{service}"

    @property
    def _endpoint_name(self) -> str:
        return f"{self._route}.client"

    async def __aenter__(self) -> Self:
        system = self.system
        self._refs = {name: system.ref(cls, name) for name, cls in self.workflow.services.items()}
        services = dict.fromkeys(step.service for step in self.workflow.steps)
        if self.durable_events:
            self._check_sidecars_everywhere(services)
        try:
            for service in services:
                local = self.sidecars and system.is_local(service)
                adapter: Adapter[In] = Adapter(self, service, local=local)
                if local:
                    self._local_adapters[service] = adapter
                    self._adapters[service] = attach(system, service, self._route, adapter)
                elif self.remote_sidecars:  # its host runs the adapter: send it the events
                    self._adapters[service] = system.ref(_Sidecars, service)
                else:
                    # Private: this process's adapters carry the instances it starts, and
                    # those only (a process that starts instances keeps its own state).
                    self._adapters[service] = await system.spawn(
                        _always(adapter), name=self._adapter_name(service), private=True
                    )
                    self._spawned.append(self._adapters[service])
            self._endpoint = await system.spawn(
                self._make_endpoint, name=self._endpoint_name, private=True
            )
            await self._remote.open()
            if self.remote_sidecars:
                self._control = await system.bus.subscribe(self._control_subject, self._on_control)
            if self.durable_events and isinstance(system.bus, NatsBus):
                self.acknowledged = False  # the stream keeps them instead
                self._stored = StoredEvents(system, self._route, self.workflow)
                await self._stored.open(
                    {name: self._adapters[name] for name in self._local_adapters}
                )
            if self.acknowledged is None:
                self.acknowledged = not isinstance(system.bus, MemoryBus)
            if self.acknowledged:
                await self._open_acknowledgements()
            await self._open()
            await self._children.open()
        except BaseException:
            await self._stop_actors()
            raise
        self._running = True
        return self

    def _make_child(self, workflow: Workflow[Any]) -> Choreography[Any]:
        """A choreography of this kind, made alike, for the children of a sub-workflow."""
        child = type(self)(self.system, workflow, **self._options)
        child._keeps_ends = True
        return child

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._running = False
        await self._stop_actors()
        self.outcomes.stop()
        self.metrics.stopped()

    def _check_sidecars_everywhere(self, services: Mapping[str, None]) -> None:
        if not self.sidecars:
            raise ValueError("durable_events needs sidecars: the events go to the services")
        elsewhere = [name for name in services if not self.system.is_local(name)]
        if elsewhere and not self.remote_sidecars:
            raise ValueError(
                f"durable_events needs every service's adapter beside it, and {elsewhere} "
                "run in other processes: pass remote_sidecars=True here and in their hosts"
            )

    async def _stop_actors(self) -> None:
        tasks, self._child_tasks = self._child_tasks, set()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        await self._children.close()
        stored, self._stored = self._stored, None
        if stored is not None:  # the events in hand first, while the services still run
            await stored.close()
        await self._timers.close()
        await self._close()
        await self._remote.close()
        control, self._control = self._control, None
        if control is not None:
            await control.unsubscribe()
        events, self._events = self._events, None
        if events is not None:
            await events.close()
        acks, self._acks = self._acks, None
        if acks is not None:
            await acks.unsubscribe()
            await flush_acks(self.system)
        for service, adapter in self._local_adapters.items():
            detach(self.system, service, self._route)
            await adapter.close()
        refs, self._spawned = self._spawned, []
        if self._endpoint is not None:
            refs.append(self._endpoint)
        for ref in refs:
            if not ref.stopped:
                await self.system.stop(ref)

    # -- the strategy API -------------------------------------------------------------

    async def start(self, workflow_input: In, *, results: Mapping[str, Any] | None = None) -> str:
        """Start an instance; returns its id at once.

        `results` are replies of steps done elsewhere, which this instance's commands may read
        (a hybrid hands the core's replies to the strategy that runs the rest).
        """
        if not self._running:
            raise RuntimeError(f"use the strategy as `async with {type(self).__name__}(...)`")
        check_input(self.workflow, workflow_input)
        workflow_id = self._new_id()
        self.outcomes.add(workflow_id)
        self._progress[workflow_id] = perf_counter()
        await self._begin(workflow_id, self._codec.carried(workflow_input, results))
        return workflow_id

    async def result(self, workflow_id: str, timeout: float | None = None) -> WorkflowResult:
        """Wait for the instance to end and return its outcome (of one another process
        started, as that process tells it)."""
        result = await self._remote.result(workflow_id, timeout)
        if result is not None:
            return result
        await self._known(workflow_id)
        return await self.outcomes.wait(workflow_id, timeout)

    async def cancel(self, workflow_id: str, *, by: str = "api") -> bool:
        """Tell every service to stop the instance at the next step it sees and unwind it.

        False when the instance is known to have ended. A choreography cannot stop a step
        under way, and a cancel that reaches the services after the last step comes too late:
        the outcome then stays what it was. A paused instance is released to unwind. `by`
        names who asked, in the instance's history.
        """
        done = await self._remote.control(workflow_id, "cancel", by)
        if done is not None:
            return done
        if not await self._still_running(workflow_id):
            return False
        await self._audit(workflow_id, by, "cancel")
        self._cancel_seen(workflow_id)  # the adapters here know at once
        await self._broadcast(Cancel(workflow_id, self._route))
        await self._cancel_waiting(workflow_id)
        held = self._here.get(workflow_id)
        if held is not None:  # a child under way is cancelled too
            await self._children.cancel(workflow_id, held.progress.active, by)
        await self.resume(workflow_id, by=by)  # a paused one goes on, to unwind
        return True

    async def signal(self, workflow_id: str, signal: str, payload: Any) -> None:
        """Send the instance a signal (see `Strategy.signal`). It goes to the process that
        started the instance, where the instance waits for it; one that comes first is kept
        there until the instance does."""
        wait, value = check_signal(self.workflow, signal, payload)
        if await self._remote.signal(workflow_id, signal, value):
            return
        if not await self._still_running(workflow_id):
            raise WorkflowEndedError(f"{workflow_id} has ended: signal {signal!r} comes too late")
        received = self._signals.setdefault(workflow_id, {})
        if wait.name in received:
            raise CoordinationError(f"{workflow_id} has had signal {signal!r} already")
        received[wait.name] = msgspec.Raw(_encode(value))
        held = self._here.get(workflow_id)
        if held is not None and wait.name in held.progress.active:
            await self._go_on(workflow_id, wait.name)

    def _take(self, workflow_id: str, progress: Progress, data: Carried | None) -> _Held | None:
        """An instance of this process's comes to be driven here (None: a duplicate, or one
        that has ended or is forgotten)."""
        outcomes = self.outcomes
        if (
            workflow_id in self._here
            or not outcomes.knows(workflow_id)
            or not outcomes.is_running(workflow_id)
        ):
            return None
        if not self._carries_data:  # its steps ask the services for what they read
            data = None
        held = self._here[workflow_id] = _Held(progress, data)
        self._progressed(workflow_id)
        return held

    async def _parked_here(self, event: Parked) -> None:
        """An instance of this process's comes to wait here (for a signal, or a timer)."""
        if self._take(event.workflow_id, event.progress, event.data) is not None:
            await self._wait_here(event.workflow_id, event.step)

    async def _handed_over(self, event: Handover) -> None:
        """An instance of this process's reached a parallel: its branches start from here."""
        workflow_id = event.workflow_id
        if self._take(workflow_id, event.progress, event.data) is None:
            return
        progress = event.progress
        actions = tuple(core.start_action(self.workflow, name) for name in progress.active)
        actions += tuple(
            Compensate(name) for name in progress.compensating if name in self.workflow.subworkflows
        )
        await self._carry_out_here(workflow_id, progress, actions, event.data)

    async def _landed(self, event: Landed) -> None:
        """A step this process drives ended: the core says what follows, from here."""
        workflow_id = event.workflow_id
        held = self._here.get(workflow_id)
        if held is None:
            return  # a duplicate after the end
        self._progressed(workflow_id)
        data = _merged(held.data, event.data) if self._carries_data else None
        progress, actions = core.apply(self.workflow, held.progress, event.happened)
        await self._carry_out_here(workflow_id, progress, actions, data)

    async def _wait_here(self, workflow_id: str, step: str) -> None:
        """The instance waits here at `step`: on at once if its signal came; else the
        timer of a sleep, or of a wait's timeout, is set on this process's clock."""
        held = self._here[workflow_id]
        sleep = self.workflow.sleeps.get(step)
        wait = self.workflow.waits.get(step)
        due: float | None = None
        if sleep is not None:
            due = sleep.due(self.clock.now())
        elif step in self._signals.get(workflow_id, {}):
            await self._go_on(workflow_id, step)
            return
        elif wait is not None and wait.timeout is not None:  # its signal has until then
            due = self.clock.now() + wait.timeout
        if due is not None:
            core.set_timer(held.progress, step, due)
            self._arm(workflow_id, step, due)
        if workflow_id in self._cancelled:  # cancelled before it came to wait
            await self._cancel_waiting(workflow_id)

    async def _go_on(self, workflow_id: str, step: str) -> None:
        """The wait `step` had its signal."""
        held = self._here.get(workflow_id)
        if held is None or step not in held.progress.active:
            return
        self._timers.cancel(_timer_key(workflow_id, step))  # its timeout
        data = _with_reply(held.data, step, self._signals[workflow_id][step])
        progress, actions = core.apply(self.workflow, held.progress, core.SignalReceived(step))
        await self._carry_out_here(workflow_id, progress, actions, data)

    async def _wake(self, workflow_id: str, step: str) -> None:
        """A timer is due: a sleep's end, or a wait's timeout (which goes on with the wait's
        `on_timeout`, or fails the instance)."""
        held = self._here.get(workflow_id)
        if held is None or step not in held.progress.active:
            return
        data = held.data
        wait = self.workflow.waits.get(step)
        if wait is not None and wait.on_timeout is not FAIL:
            payload = msgspec.Raw(_encode(wait.decode(wait.on_timeout)))
            self._signals.setdefault(workflow_id, {})[step] = payload
            data = _with_reply(data, step, payload)
        progress, actions = core.apply(self.workflow, held.progress, core.TimerFired(step))
        await self._carry_out_here(workflow_id, progress, actions, data)

    async def _cancel_waiting(self, workflow_id: str) -> None:
        """A cancel of an instance driven here: it turns around at once where it waits
        (else once the steps under way have ended)."""
        held = self._here.get(workflow_id)
        if held is None:
            return
        self._disarm(workflow_id, held.progress)
        progress, actions = core.apply(self.workflow, held.progress, core.CancelRequested())
        await self._carry_out_here(workflow_id, progress, actions, held.data)

    def _let_go(self, workflow_id: str) -> None:
        """This process no longer drives the instance: its timers go too."""
        held = self._here.pop(workflow_id, None)
        if held is not None:
            self._disarm(workflow_id, held.progress)

    def _arm(self, workflow_id: str, step: str, due: float) -> None:
        """Wake the instance at `step` when `due` (a sleep's end, a wait's timeout)."""
        self._timers.arm(
            _timer_key(workflow_id, step), due, functools.partial(self._wake, workflow_id, step)
        )

    def _disarm(self, workflow_id: str, progress: Progress) -> None:
        """The instance's timers will not be waited for here any more."""
        for timer in progress.timers:
            self._timers.cancel(_timer_key(workflow_id, timer.name))

    async def pause(self, workflow_id: str, *, by: str = "api") -> bool:
        """Hold the instance: the step under way finishes, and its next event waits in the
        service it reaches until `resume`. False when it has ended."""
        done = await self._remote.control(workflow_id, "pause", by)
        if done is not None:
            return done
        if not await self._still_running(workflow_id):
            return False
        await self._audit(workflow_id, by, "pause")
        self._paused.add(workflow_id)
        await self._broadcast(Hold(workflow_id, self._route))
        return True

    async def resume(self, workflow_id: str, *, by: str = "api") -> bool:
        """Let a paused instance go on. False when it is not paused."""
        done = await self._remote.control(workflow_id, "resume", by)
        if done is not None:
            return done
        if workflow_id not in self._paused:
            return False
        await self._audit(workflow_id, by, "resume")
        self._paused.discard(workflow_id)
        await self._broadcast(Hold(workflow_id, self._route, held=False))
        return True

    def _cancel_seen(self, workflow_id: str) -> None:
        """Remember that `workflow_id` is cancelled (bounded: the latest ones)."""
        cancelled = self._cancelled
        cancelled[workflow_id] = None
        if len(cancelled) > REMEMBERED_CANCELS:
            cancelled.popitem(last=False)

    async def _still_running(self, workflow_id: str) -> bool:
        await self._known(workflow_id)
        return self.outcomes.is_running(workflow_id)

    @functools.cached_property
    def _control_subject(self) -> str:
        return f"{self.system.prefix}.{self._route}.control"

    async def _on_control(self, msg: Msg) -> None:
        """A cancel or a pause, for every host's adapters of this workflow."""
        try:
            event = _control_decoder.decode(msg.data)
        except msgspec.DecodeError:
            logger.warning("%s: an undecodable control message refused", self._route)
            return
        if event.route != self._route:
            return
        if isinstance(event, Cancel):
            self._cancel_seen(event.workflow_id)
        else:
            for adapter in self._local_adapters.values():
                await adapter.hold(event)
        if msg.reply is not None:  # taken: the caller may go on
            await self.system.bus.publish(msg.reply, self.system.node.encode())

    async def _broadcast(self, event: Cancel | Hold) -> None:
        """Tell every adapter. A cancel is acknowledged like the events (taking it twice is
        harmless); a hold is told once, since a resent pause could land after the resume
        that followed it. With remote sidecars, a service hosted twice has an adapter in each
        host: each hears it on the workflow's control subject (a cancel also goes to each
        service acknowledged, which reaches one copy for sure; a hold goes on the control
        subject alone, so that a pause and its resume arrive in the order they were made).

        The hosts say when they have taken it, and this returns once they have: a step that
        ends after `cancel` returned sees the cancel, wherever it ran, as it would under a
        mediator. Hosts are counted by their answers (up to `CONTROL_TIMEOUT` seconds for the
        first, then until none has come for `GATHER_QUIET`)."""
        if self.remote_sidecars:
            await self._tell_hosts(event)
            if isinstance(event, Hold):  # on one subject only: a pause and its resume in order
                return
        for service, adapter in self._adapters.items():
            if isinstance(event, Cancel):
                await self._emit_event(adapter, event, f"{event.workflow_id}.cancel.{service}")
            else:
                await adapter.tell(event, correlation_id=event.workflow_id)

    async def _tell_hosts(self, event: Cancel | Hold) -> None:
        data = _encode(event)
        system = self.system
        if all(system.is_local(service) for service in self._adapters):
            await system.bus.publish(self._control_subject, data)  # no host to wait for
            return
        own = system.node.encode()
        answers = await gather(
            system.bus,
            self._control_subject,
            data,
            f"{self._control_subject}.taken.{new_id()}",
            timeout=CONTROL_TIMEOUT,
            quiet=GATHER_QUIET,
            accept=lambda msg: msg.data != own,
        )
        if not answers:
            logger.warning(
                "%s: no host confirmed %s of %s within %s s",
                self._route,
                type(event).__name__,
                event.workflow_id,
                CONTROL_TIMEOUT,
            )

    async def _audit(self, workflow_id: str, who: str, what: str) -> str:
        """Add `<UTC time> <who>: <what>` to the instance's history, and return it."""
        history = self._history.get(workflow_id)
        if history is None:
            history = self._history[workflow_id] = []
            if len(self._history) > self.outcomes.keep:
                self._history.popitem(last=False)
        entry = history_entry(who, what)
        history.append(entry)
        return entry

    async def status(self, workflow_id: str) -> WorkflowStatus:
        """What this strategy's pattern can know about the instance; for a running one, how
        long since it was last seen to move on (`since_progress`). An instance another
        process started is asked of that process."""
        status = await self._remote.status(workflow_id)
        if status is not None:
            return status
        return await self._own_status(workflow_id)

    async def _own_status(self, workflow_id: str) -> WorkflowStatus:
        began = perf_counter()
        try:
            status = await self._status(workflow_id)
        finally:
            self.metrics.status_took(perf_counter() - began)
        seen = self._progress.get(workflow_id)
        if seen is not None and status.outcome is Outcome.RUNNING:
            status = msgspec.structs.replace(
                status,
                since_progress=perf_counter() - seen,
                paused=workflow_id in self._paused,
            )
        held = self._here.get(workflow_id)
        if held is not None and status.outcome is Outcome.RUNNING:  # driven here: known
            progress = held.progress
            status = msgspec.structs.replace(
                status,
                current_step=progress.current_step,
                active_steps=progress.active,
                completed_steps=progress.completed,
                unknown=status.unknown - {"current_step", "completed_steps"},
                awaiting=progress.awaiting,
                wakes_at=min((timer.due for timer in progress.timers), default=None),
            )
        history = self._history.get(workflow_id)
        if history:
            status = msgspec.structs.replace(status, history=tuple(history))
        return status

    def stuck(self) -> list[str]:
        """The running instances not seen to move on for more than `stuck_after` seconds.
        What counts as moving on is what the pattern sees: its start for a blind strategy,
        each step for the event log or a front controller with call backs."""
        now = perf_counter()
        limit = self.stuck_after
        return [wid for wid, seen in self._progress.items() if now - seen > limit]

    def _progressed(self, workflow_id: str) -> None:
        """The strategy saw `workflow_id` move on."""
        if workflow_id in self._progress:
            self._progress[workflow_id] = perf_counter()

    async def _status(self, workflow_id: str) -> WorkflowStatus:
        raise NotImplementedError

    async def _known(self, workflow_id: str) -> None:
        """Make sure the outcomes know `workflow_id`: one started here, or one a durable store
        remembers (`_recall`); UnknownWorkflowError otherwise."""
        if not self.outcomes.knows(workflow_id):
            await self._recall(workflow_id)
            self.outcomes.check(workflow_id)

    async def _recall(self, workflow_id: str) -> None:
        """An instance this object did not start (another process did, before a restart):
        register it with the outcomes if the strategy's store knows it. Memory-only
        strategies know nothing more."""

    def _remember(self, workflow_id: str, ended: Ended | None) -> None:
        """Register a recalled instance: running, or ended as `ended` says."""
        self.outcomes.add(workflow_id)
        self._progress[workflow_id] = perf_counter()
        if ended is not None:
            self._finish(ended)

    # -- for adapters and endpoints ---------------------------------------------------

    def _finish(self, event: Ended) -> None:
        """The instance ended: resolve whoever waits for it."""
        if self._keeps_ends and event.progress.outcome is Outcome.COMPLETED:
            ends = self._ends  # a parent that turns around has it undo its steps
            ends[event.workflow_id] = event
            if len(ends) > self.outcomes.keep:
                ends.popitem(last=False)
        self._progress.pop(event.workflow_id, None)
        self._let_go(event.workflow_id)
        self._paused.discard(event.workflow_id)
        result = self._result_of(event)
        self._signals.pop(event.workflow_id, None)
        progress = event.progress
        status = WorkflowStatus(
            event.workflow_id,
            self.strategy,
            result.outcome,
            None,
            progress.completed,
            progress.compensated,
            result.failure,
            attention=result.attention,
        )
        self.outcomes.finish(event.workflow_id, result, status)

    def _result_of(self, event: Ended) -> WorkflowResult:
        progress = event.progress
        results = self._codec.results(event.data.results) if event.data is not None else {}
        return WorkflowResult(
            event.workflow_id, progress.outcome, results, progress.failure, progress.attention
        )

    async def _end(self, adapter: Adapter[In], event: Ended) -> None:
        """Send `Ended` to whoever waits for the outcome: the endpoint of the process that
        started the instance."""
        await self._announce_end(event)

    async def _announce_end(self, event: Ended) -> None:
        endpoint = self._owners_endpoint(event.workflow_id)
        await self._emit_event(endpoint, event, f"{event.workflow_id}.ended")

    def _owners_endpoint(self, workflow_id: str) -> ActorRef[Any]:
        """The endpoint of the process that started `workflow_id` (this one's, for an id
        that names none)."""
        endpoint = self._endpoint
        assert endpoint is not None
        if workflow_id.startswith(self._own_ids):
            return endpoint
        owner = owner_of(workflow_id)
        if owner is None or owner == self.system.node:
            return endpoint
        ref = self._endpoints.get(owner)
        if ref is None:
            if len(self._endpoints) > 1024:  # processes come and go: keep the table bounded
                self._endpoints.clear()
            ref = self._endpoints[owner] = self.system.ref(
                self._endpoint_class, self._endpoint_name, node=owner
            )
        return ref

    def _acknowledge(self, ack: str) -> None:
        """An acknowledged event was handled here: tell its sender (in a batch)."""
        self._acks_out.acknowledge(self._route, ack)

    async def _send(self, service: str, event: Advance | Unwind, again: str = "") -> None:
        """Send `event` to `service`'s adapter (acknowledged where events can be lost);
        `again` tells apart an event sent anew while the same one may await its
        acknowledgement."""
        to = self._adapters[service]
        stored = self._stored
        if not self._ack_to and stored is None:  # told: no id to work out (the hot path)
            await to.tell(event, correlation_id=event.workflow_id)
            return
        message_id = advance_id(event) if isinstance(event, Advance) else unwind_id(event)
        if stored is not None:
            await stored.store(service, event, message_id + again)
            return
        timeout = self.workflow.steps[event.step].timeout
        await self._emit_event(to, event, message_id + again, timeout)

    async def _notify(self, context: WorkflowContext[Any], workflow_id: str) -> None:
        """Send the workflow's failure notices."""
        await send_notices(self.workflow, self._refs, context, workflow_id)

    async def _emit_event(
        self,
        to: ActorRef[Any],
        event: Advance | Unwind | Ended | Begin | Cancel | Parked | Landed | Handover,
        message_id: str,
        timeout: float | None = None,
    ) -> None:
        """Send an event that carries an instance forward: told, or, when events are
        `acknowledged`, told until `to` acknowledges it (`message_id` names it among the
        events in flight, the same for every resend)."""
        events = self._events
        if events is None:
            await to.tell(event, correlation_id=event.workflow_id)
            return
        if event.ack != self._ack_to:
            event = msgspec.structs.replace(event, ack=self._ack_to)
        await events.send(
            to,
            event,
            message_id,
            event.workflow_id,
            EVENT_TIMEOUT if timeout is None else timeout,
        )

    async def _open_acknowledgements(self) -> None:
        self._events = EventSender(EVENT_RETRY.attempts, self._unacknowledged)
        self._ack_to = ack_subject(self.system, self._route, new_id())
        self._acks = await self.system.bus.subscribe(self._ack_to, self._on_acks)

    async def _on_acks(self, msg: Msg) -> None:
        events = self._events
        if events is None:
            return
        try:
            message_ids = decode_acks(msg.data)
        except Exception:  # DecodeError, and UnicodeDecodeError for a bad string
            logger.warning("%s: undecodable acknowledgements refused", self._route)
            return
        events.acknowledge(message_ids)

    def _unacknowledged(self, message_id: str, reason: str) -> None:
        # Its instance cannot go on: `stuck()` lists it once `stuck_after` has passed.
        logger.error(
            "event %s was never acknowledged (%s): its instance is stuck", message_id, reason
        )

    async def _fetch(
        self, adapter: Adapter[In], workflow_id: str, step: int, *, undo: bool, item: int = -1
    ) -> Carried:
        """The data step number `step`'s builders (its compensation's, with `undo`) read,
        for a strategy whose events do not carry it (`item`: the for-each's item it is
        for)."""
        raise NotImplementedError(f"{self.strategy} events carry their data")

    # -- hooks ------------------------------------------------------------------------

    def _make_endpoint(self) -> Actor:
        """The actor `Ended` goes to."""
        return _Client(self)

    async def _open(self) -> None:
        """Start what the strategy needs besides its adapters."""

    async def _close(self) -> None:
        """Stop it again."""

    async def _begin(self, workflow_id: str, data: Carried) -> None:
        await self._advance_first(workflow_id, data)

    async def _advance_first(self, workflow_id: str, data: Carried) -> None:
        """Send the instance's first step to its service (a flow that begins with a branch
        is decided here first: from the input, all it can read)."""
        if self.workflow.first is self.workflow.steps[0]:
            advance = Advance(workflow_id, 0, data, route=self._route, ack=self._ack_to)
            await self._send(self.workflow.steps[0].service, advance)
            return
        progress, actions = core.apply(self.workflow, Progress(), Started())
        await self._carry_out_here(workflow_id, progress, actions, data)

    async def _carry_out_here(
        self, workflow_id: str, progress: Progress, actions: core.Actions, data: Carried | None
    ) -> None:
        """Carry out what the core says of an instance this process has in hand (at its
        start, waiting here, or in a parallel's branches), as an adapter would; let it go
        once nothing keeps it here."""
        held = self._here.get(workflow_id)
        if held is not None:
            held.progress, held.data = progress, data
        elif self._keeps(progress):  # it starts here with a wait, or a parallel
            self._take(workflow_id, progress, data)
        await self._carry_out(None, workflow_id, progress, actions, data)
        held = self._here.get(workflow_id)
        if held is not None and not self._keeps(held.progress):
            self._let_go(workflow_id)

    def _keeps(self, progress: Progress) -> bool:
        """Whether an instance at `progress` is driven here: it waits here, or steps of a
        parallel's branches are under way (which report their end here)."""
        workflow = self.workflow
        return progress.outcome is Outcome.RUNNING and (
            any(
                self._drives(name) or name in workflow.waits or name in workflow.sleeps
                for name in progress.active
            )
            or any(name in workflow.subworkflows for name in progress.compensating)
        )

    def _drives(self, name: str) -> bool:
        """Whether this process drives an instance while `name` is under way: a node of a
        parallel's branches, a for-each, or one of its items (the only names with `[`)."""
        return name in self._driven or "[" in name

    def _locate(self, name: str) -> tuple[int, int]:
        """The index of the step `name` runs, and the item it is for (-1: none)."""
        index = self._step_index.get(name)
        if index is not None:
            return index, -1
        found = self.workflow.item(name)
        if found is None:
            raise KeyError(name)
        return self._step_index[found[0].step.name], found[1]

    async def _report(self, workflow_id: str, happened: core.StepEnd, data: Carried | None) -> None:
        """A step the starter drives ended: tell the starter how."""
        landed = Landed(workflow_id, happened, data, ack=self._ack_to)
        await self._emit_event(
            self._owners_endpoint(workflow_id), landed, f"{workflow_id}.landed.{happened.step}"
        )

    async def _carry_out(
        self,
        adapter: Adapter[In] | None,
        workflow_id: str,
        progress: Progress,
        actions: core.Actions,
        data: Carried | None,
        context: WorkflowContext[Any] | None = None,
    ) -> None:
        """Carry out what the core says of an instance, as events: where `adapter` has it
        (`context` being the one its step was built with), or, for None, where the process
        that started it has it. A branch is decided and a compute run in place, and what the
        core says of them is carried out in turn; a wait or a sleep goes to the starter, and
        so does an instance that reaches a parallel (the starter drives the branches, and
        the steps under way report their end to it)."""
        route, ack = self._route, self._ack_to
        driven = self._driven
        if adapter is None and self._children.strategies and progress.failure is not None:
            active = progress.active  # turned around: the children under way are cancelled
            if self._children.under_way(active):
                self._in_task(self._children.cancel(workflow_id, active, self._route))
        if adapter is not None and driven and _starts_any(actions, driven, self.workflow):
            handover = Handover(workflow_id, progress, data, ack=ack)
            await self._emit_event(
                self._owners_endpoint(workflow_id), handover, f"{workflow_id}.handover"
            )
            return
        for action in actions:
            here = self._here.get(workflow_id) if adapter is None else None
            if here is not None:  # what came meanwhile (a branch's reply, a signal) is in it
                data = here.data
            kind = type(action)
            if kind is Perform:
                index, item = self._locate(action.step)  # type: ignore[union-attr]
                advance = Advance(
                    workflow_id,
                    index,
                    data,
                    route=route,
                    ack=ack,
                    progress=None if self.workflow.linear else progress,
                    report=adapter is None and any(self._drives(n) for n in progress.active),
                    item=item,
                )
                await self._send(self.workflow.steps[index].service, advance)
            elif kind is ListItems:
                for_each = self.workflow.for_eaches[action.step]  # type: ignore[union-attr]
                listed = await self._list(adapter, workflow_id, for_each, progress, data)
                await self._carry_out(adapter, workflow_id, *listed, data, context)
            elif kind is Collect:
                data = self._collected(workflow_id, action, data)  # type: ignore[arg-type]
                if here is not None:
                    here.data = data
            elif kind is Choose:
                branch = self.workflow.branches[action.branch]  # type: ignore[union-attr]
                decided = await self._choose(adapter, workflow_id, branch, progress, data)
                await self._carry_out(adapter, workflow_id, *decided, data, context)
            elif kind is Calculate:
                compute = self.workflow.computes[action.step]  # type: ignore[union-attr]
                data, happened = await self._calculate(adapter, workflow_id, compute, data)
                if here is not None:  # what the next steps read, from here on
                    fresh = here.data  # it may have moved on while the compute read
                    if data is not None and fresh is not None and compute.name in data.results:
                        data = _with_reply(fresh, compute.name, data.results[compute.name])
                    here.data = data
                progress, more = core.apply(self.workflow, progress, happened)
                await self._carry_out(adapter, workflow_id, progress, more, data, context)
            elif kind is Await or kind is StartTimer:
                step: str = action.step  # type: ignore[union-attr]
                if adapter is None:
                    if workflow_id in self._here or self._take(workflow_id, progress, data):
                        await self._wait_here(workflow_id, step)
                else:
                    parked = Parked(workflow_id, step, progress, data, ack=ack)
                    await self._emit_event(
                        self._owners_endpoint(workflow_id),
                        parked,
                        f"{workflow_id}.parked.{parked.step}",
                    )
            elif kind is StartChild:
                sub = self.workflow.subworkflows[action.step]  # type: ignore[union-attr]
                self._in_task(self._run_child(workflow_id, sub))
            elif kind is Compensate and action.step in self.workflow.subworkflows:  # type: ignore[union-attr]
                sub = self.workflow.subworkflows[action.step]  # type: ignore[union-attr]
                self._in_task(self._undo_child(workflow_id, sub))
            elif kind is Compensate:
                index, item = self._locate(action.step)  # type: ignore[union-attr]
                unwind = Unwind(workflow_id, index, progress, data, route=route, ack=ack, item=item)
                await self._send(self.workflow.steps[index].service, unwind)
            elif kind is SendNotices:
                if context is None:
                    known = await self._data_here(workflow_id, data)
                    context = self._codec.context(workflow_id, known.input, known.results)
                context.failure = progress.failure
                await self._notify(context, workflow_id)
            else:  # End
                ended = Ended(workflow_id, progress, data, ack=ack)
                if adapter is None:
                    await self._announce_end(ended)
                else:
                    await self._end(adapter, ended)

    async def _data_here(self, workflow_id: str, data: Carried | None) -> Carried:
        """The request and replies of an instance this process has in hand (what its events
        carry; a strategy whose events carry none says where it is)."""
        if data is None:
            raise LookupError(f"{workflow_id}: no data at hand")
        return data

    async def _choose(
        self,
        adapter: Adapter[In] | None,
        workflow_id: str,
        branch: Branch,
        progress: Progress,
        data: Carried | None,
    ) -> tuple[Progress, core.Actions]:
        """Decide `branch` for an instance at `progress` (where `adapter`, or the starter,
        has it): what the core makes of the choice. A `when` that raises fails the instance
        there, as a step whose command cannot be built does."""
        try:
            context = await self._context_for(adapter, workflow_id, branch.name, branch.reads, data)
            happened: core.Event = core.BranchChosen(branch.name, branch.taken(context))
        except Exception as exc:
            reason = f"deciding the branch failed: {type(exc).__name__}: {exc}"
            happened = core.StepFailed(branch.name, reason)
        return core.apply(self.workflow, progress, happened)

    # -- sub-workflows ------------------------------------------------------------------

    def _in_task(self, work: Coroutine[Any, Any, None]) -> None:
        """Wait for a child in a task of its own: the instance's other steps go on."""
        task = asyncio.get_running_loop().create_task(work)
        self._child_tasks.add(task)
        task.add_done_callback(self._child_done)

    def _child_done(self, task: asyncio.Task[None]) -> None:
        self._child_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("%s: a child's end was lost", self._route, exc_info=task.exception())

    async def _run_child(self, workflow_id: str, sub: SubWorkflow) -> None:
        """Start the child of `sub` (or find the one started before) and, once it has ended,
        answer for the step as its service would."""
        held = self._here.get(workflow_id)
        if held is None:
            return
        try:
            context = await self._context_for(None, workflow_id, sub.name, sub.reads, held.data)
            child_input = sub.build(context)
        except Exception as exc:
            happened: core.Event = core.StepFailed(
                sub.name, f"building the child's input failed: {type(exc).__name__}: {exc}"
            )
            result = None
        else:
            taken = held
            result, happened = await self._children.run(
                workflow_id, sub, lambda: child_input, lambda: taken.progress
            )
        held = self._here.get(workflow_id)
        if held is None:
            return
        data = held.data
        if result is not None and type(happened) is core.StepAnswered:
            reply = msgspec.Raw(_encode(result))
            self._signals.setdefault(workflow_id, {})[sub.name] = reply  # kept by the starter
            data = _with_reply(data, sub.name, reply)
        progress, actions = core.apply(self.workflow, held.progress, happened)
        await self._carry_out_here(workflow_id, progress, actions, data)

    async def _undo_child(self, workflow_id: str, sub: SubWorkflow) -> None:
        """Have the completed child of `sub` compensate itself."""
        held = self._here.get(workflow_id)
        if held is None or held.progress.failure is None:
            return
        happened = await self._children.undo(workflow_id, sub, held.progress.failure)
        held = self._here.get(workflow_id)
        if held is None:
            return
        progress, actions = core.apply(self.workflow, held.progress, happened)
        await self._carry_out_here(workflow_id, progress, actions, held.data)

    async def _start_as(self, workflow_input: In, workflow_id: str) -> bool:
        """Start an instance with the id `workflow_id` (a child, whose id its parent's
        gives), unless this choreography knows it already (False)."""
        if self.outcomes.knows(workflow_id):
            return False
        check_input(self.workflow, workflow_input)
        self.outcomes.add(workflow_id)
        self._progress[workflow_id] = perf_counter()
        await self._begin(workflow_id, self._codec.carried(workflow_input))
        return True

    async def _undo(self, workflow_id: str, failure: Failure) -> WorkflowResult:
        """Compensate a completed instance (a child whose parent turned around): its
        completed steps are undone, newest first, and it ends again."""
        ended = self._ends.pop(workflow_id, None)
        if ended is None:
            raise UnknownWorkflowError(
                f"{workflow_id}: its end is not kept here, to undo (forgotten, or not ended)"
            )
        progress = msgspec.structs.replace(ended.progress)
        progress, actions = core.compensate_completed(self.workflow, progress, failure)
        self.outcomes.reopen(workflow_id)
        self._progress[workflow_id] = perf_counter()
        await self._carry_out_here(workflow_id, progress, actions, ended.data)
        return await self.outcomes.wait(workflow_id)

    async def _list(
        self,
        adapter: Adapter[In] | None,
        workflow_id: str,
        for_each: ForEach,
        progress: Progress,
        data: Carried | None,
    ) -> tuple[Progress, core.Actions]:
        """Build a for-each's list: what the core makes of its length (an `over` that raises
        fails the instance there)."""
        name = for_each.name
        try:
            context = await self._context_for(adapter, workflow_id, name, for_each.reads, data)
            happened: core.Event = core.ItemsListed(name, len(for_each.items(context)))
        except Exception as exc:
            happened = core.StepFailed(name, f"listing failed: {type(exc).__name__}: {exc}")
        return core.apply(self.workflow, progress, happened)

    def _collected(
        self, workflow_id: str, collect: Collect, data: Carried | None
    ) -> Carried | None:
        """A for-each's items all completed: what the events carry from then on, with its
        reply, the list of its items' replies."""
        if data is None:
            return None
        results = data.results
        name = collect.step
        items = [results.get(f"{name}[{index}]") for index in range(collect.count)]
        return Carried(data.input, {**results, name: msgspec.Raw(_encode(items))}, data.trail)

    async def _calculate(
        self, adapter: Adapter[In] | None, workflow_id: str, compute: Compute, data: Carried | None
    ) -> tuple[Carried | None, core.Event]:
        """Run `compute` for an instance (where `adapter`, or the starter, has it): what the
        events carry from then on, and its answer for the core."""
        name = compute.name
        try:
            context = await self._context_for(adapter, workflow_id, name, compute.reads, data)
            reply = compute.fn(context)
        except Exception as exc:
            return data, core.StepFailed(name, f"computing it failed: {type(exc).__name__}: {exc}")
        if isinstance(reply, Rejected):
            return data, core.StepRejected(name, reply.reason)
        return self._computed(
            adapter, workflow_id, compute, data, _encode(reply)
        ), core.StepAnswered(name)

    def _computed(
        self,
        adapter: Adapter[In] | None,
        workflow_id: str,
        compute: Compute,
        data: Carried | None,
        reply: bytes,
    ) -> Carried | None:
        """`compute` answered `reply`: what the next event carries."""
        if data is None:
            return None
        return Carried(data.input, {**data.results, compute.name: msgspec.Raw(reply)}, data.trail)

    async def _context_for(
        self,
        adapter: Adapter[In] | None,
        workflow_id: str,
        name: str,
        reads: tuple[str, ...],
        data: Carried | None,
    ) -> WorkflowContext[In]:
        """The context a branch or a compute `name` reads: from what the events carry."""
        if data is None:
            raise LookupError(f"{workflow_id}: no data for {name!r} to read")
        return self._codec.context(workflow_id, data.input, data.results, reads, name)

    async def _step_started(
        self,
        adapter: Adapter[In],
        workflow_id: str,
        step: int,
        data: Carried | None,
        progress: Progress | None = None,
        name: str = "",
    ) -> None:
        """An adapter is about to perform step number `step` (`name`: it, or the item of a
        for-each it is performed for)."""

    def _step_done(
        self, adapter: Adapter[In], workflow_id: str, name: str, data: Carried | None, reply: bytes
    ) -> Carried | None:
        """The step `name` (or a for-each's item) answered `reply`: what the next event
        carries."""
        if data is None or not self.workflow.step_of(name).wait:
            return data
        results = dict(data.results)
        results[name] = msgspec.Raw(reply)
        return Carried(data.input, results, data.trail)

    def _step_failed(
        self, adapter: Adapter[In], workflow_id: str, name: str, data: Carried | None
    ) -> Carried | None:
        """The step `name` failed: what the failure events carry."""
        return data

    def _step_compensated(
        self, adapter: Adapter[In], workflow_id: str, name: str, data: Carried | None
    ) -> Carried | None:
        """The step `name` was undone: what the next failure event carries."""
        return data


class _Held:
    """An instance this process drives for now: where it stands, and what its events carry
    (mutable: each event that moves it on replaces both)."""

    __slots__ = ("data", "progress")

    def __init__(self, progress: Progress, data: Carried | None) -> None:
        self.progress = progress
        self.data = data


def _starts_any(actions: core.Actions, names: frozenset[str], workflow: Workflow[Any]) -> bool:
    """Whether `actions` start one of the nodes `names`, or compensate a sub-workflow (which
    the starter has its child do)."""
    for action in actions:
        kind = type(action)
        if kind is Compensate:
            if action.step in workflow.subworkflows:  # type: ignore[union-attr]
                return True
        elif kind is Choose:
            if action.branch in names:  # type: ignore[union-attr]
                return True
        elif getattr(action, "step", None) in names:  # a step, wait, sleep, compute, list...
            return True
    return False


def _timer_key(workflow_id: str, step: str) -> str:
    return f"{workflow_id}.{step}"


def _with_reply(data: Carried | None, step: str, reply: msgspec.Raw) -> Carried | None:
    """`data` with `step`'s reply added."""
    if data is None:
        return None
    return Carried(data.input, {**data.results, step: reply}, data.trail)


def _merged(held: Carried | None, landed: Carried | None) -> Carried | None:
    """What the events carry once a branch's step landed: the replies of every branch (and
    the trail of each, in the order they came here)."""
    if held is None or landed is None:
        return landed if held is None else held
    seen = set(held.trail)
    trail = [*held.trail, *(entry for entry in landed.trail if entry not in seen)]
    return Carried(held.input, {**held.results, **landed.results}, trail)
