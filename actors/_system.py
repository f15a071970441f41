"""ActorSystem: spawns actors on a bus, keeps dead letters and failures, shuts down cleanly."""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, TypeVar

import anyio
from prometheus_client import CollectorRegistry

from brokers import DEFAULT_MAX_PAYLOAD, Bus, MemoryBus, NatsBus, Overflow, validate_subject

from ._actor import Actor
from ._cell import ActorCell
from ._context import _current
from ._dead_letters import DeadLetters
from ._errors import ActorError, ActorNotFoundError, DuplicateActorError
from ._handlers import HandlerTable, extended, handler_table, reduced
from ._links import LinkRecorder
from ._metrics import Histogram, SystemMetrics
from ._ref import ActorRef
from ._supervision import SupervisorPolicy

__all__ = ("ActorFailure", "ActorGroup", "ActorSystem")

logger = logging.getLogger("actors")

A = TypeVar("A", bound=Actor)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ActorFailure:
    """An actor that stopped for good because its failures exceeded its restart intensity."""

    actor: str
    error: BaseException
    timestamp: float


class ActorGroup:
    """The instances of one named actor: they share a subject as a queue group."""

    __slots__ = (
        "alive",
        "base",
        "cells",
        "durations",
        "name",
        "ref",
        "stopped",
        "subject",
        "table",
    )

    def __init__(self, name: str, subject: str, table: HandlerTable) -> None:
        self.name = name
        self.subject = subject
        self.table = table
        """The handlers the instances dispatch with, added ones included."""
        self.base = table
        """The handlers of the actor class."""
        self.durations = Histogram()
        """How long its handlers took, all instances together."""
        self.cells: list[ActorCell] = []
        self.alive = 0
        self.stopped = False
        """True once every instance has stopped (an attribute: refs read it on every send)."""
        self.ref: ActorRef[Any]

    def instance_started(self) -> None:
        self.alive += 1
        self.stopped = False

    def instance_stopped(self) -> None:
        self.alive -= 1
        self.stopped = self.alive == 0


class ActorSystem:
    """Runs actors on a bus: `async with ActorSystem() as system:`.

    `bus` is a Bus, a NATS URL (`"nats://127.0.0.1:4222"`: the system connects a NatsBus), or
    nothing (an in-memory bus of its own). Each actor listens on `<prefix>.<name>` of the bus,
    so on NATS an actor in another process can reach it, and the actors of one name in several
    processes share their messages (a queue group); a private actor (`spawn(private=True)`)
    listens on `<prefix>.<name>.@<node>` instead, `node` being this system's own id. The
    system closes the bus only when it made it. Leaving the `async with` drains every mailbox
    for up to `shutdown_timeout` seconds, then cancels what is left: no actor task outlives
    the block.
    """

    def __init__(
        self,
        bus: Bus | str | None = None,
        *,
        prefix: str = "corps.actors",
        mailbox_size: int = 1000,
        overflow: Overflow = Overflow.BLOCK,
        supervision: SupervisorPolicy | None = None,
        max_message_size: int = DEFAULT_MAX_PAYLOAD,
        dead_letter_capacity: int = 1000,
        shutdown_timeout: float = 5.0,
        record_links: bool = False,
        registry: CollectorRegistry | None = None,
        metrics: bool = True,
    ) -> None:
        validate_subject(prefix)
        if mailbox_size <= 0:
            raise ValueError("mailbox_size must be positive")
        self._owns_bus = bus is None or isinstance(bus, str)
        if bus is None:
            bus = MemoryBus()
        elif isinstance(bus, str):
            bus = NatsBus(bus)
        self.bus: Bus = bus
        self.prefix = prefix
        self.node = secrets.token_hex(8)
        """This system's id on the bus, unique per system: where its private actors listen
        (`spawn(private=True)`), and how another process names them (`ref(..., node=)`)."""
        self.mailbox_size = mailbox_size
        self.overflow = overflow
        self.supervision = supervision or SupervisorPolicy()
        self.max_message_size = max_message_size
        self.shutdown_timeout = shutdown_timeout
        self.dead_letters = DeadLetters(dead_letter_capacity)
        self.links: LinkRecorder | None = LinkRecorder() if record_links else None
        """The communication links used, when `record_links` is on."""
        self.failures: deque[ActorFailure] = deque(maxlen=100)
        """Actors that stopped for good, the latest 100."""
        self._groups: dict[str, ActorGroup] = {}
        self._retired: list[ActorGroup] = []
        """Stopped groups, whose tasks shutdown still joins."""
        self._names = itertools.count(1)
        self._own_registry = registry is None
        self.metrics = SystemMetrics(self, registry, timed=metrics)
        """The system's Prometheus metrics: `metrics.registry` is a registry of its own unless
        `registry` was given (see `serve_metrics`). With `metrics=False` nothing is timed
        (handler and workflow durations stay empty); counts are kept either way."""
        self._running = False
        self._closed = False
        self._attached: dict[type, object] = {}

    def attached(self, kind: type[T], make: Callable[[], T]) -> T:
        """The one `kind` attached to this system, made by `make` the first time it is asked
        for: the per-system state of the layers built on actors (the choreographies' sidecar
        hubs and acknowledgements, the workflow metrics), owned by the system and gone with
        it, rather than kept in module-level dictionaries keyed by it."""
        found = self._attached.get(kind)
        if found is None:
            found = self._attached[kind] = make()
        return found  # type: ignore[return-value]

    def attached_if(self, kind: type[T]) -> T | None:
        """The `kind` attached to this system, if one was (see `attached`)."""
        return self._attached.get(kind)  # type: ignore[return-value]

    async def __aenter__(self) -> Self:
        if self._closed:
            raise ActorError("an ActorSystem cannot be restarted")
        if self._owns_bus:
            await self.bus.__aenter__()
        self._running = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        graceful = exc_type is None or not issubclass(exc_type, anyio.get_cancelled_exc_class())
        await self.shutdown(graceful=graceful)

    async def spawn(
        self,
        factory: Callable[[], A],
        *,
        name: str | None = None,
        instances: int = 1,
        mailbox_size: int | None = None,
        overflow: Overflow | None = None,
        supervision: SupervisorPolicy | None = None,
        handler_timeout: float | None = None,
        private: bool = False,
    ) -> ActorRef[A]:
        """Start `instances` actors made by `factory` (an Actor class, or any callable returning
        a fresh instance: restarts call it again) and return their ref.

        Several instances form a queue group: each message goes to one of them, and so do
        the actors of the same name in other processes on the bus (a service hosted twice).
        A `private` actor is this system's alone: it listens on a subject of this system's
        own (`<prefix>.<name>.@<node>`), which another process reaches with
        `ref(cls, name, node=<this system's node>)`; a private actor of the same name in
        another process gets none of its messages (where results and replies for what this
        process started must come back). A handler running longer than `handler_timeout`
        seconds is cancelled and counts as a failure.
        """
        if not self._running:
            raise ActorError("spawn needs a running system: use `async with ActorSystem()`")
        if instances < 1:
            raise ValueError("instances must be >= 1")
        first = factory()
        if not isinstance(first, Actor):
            raise TypeError(f"factory must build Actor instances, not {type(first).__name__}")
        actor_class = type(first)
        table = handler_table(actor_class)
        if name is None:
            name = f"{actor_class.__name__.lower()}-{next(self._names)}"
        if name in self._groups:
            raise DuplicateActorError(f"an actor named {name!r} already runs in this system")
        subject = self._subject(name, self.node if private else None)
        group = ActorGroup(name, subject, table)
        group.ref = ActorRef(
            self.bus, name, subject, table, self.max_message_size, group, self.links, self.prefix
        )
        self._groups[name] = group
        policy = supervision or self.supervision
        try:
            for index in range(instances):
                cell = ActorCell(
                    self, group, factory, table, policy, self.max_message_size, handler_timeout
                )
                group.cells.append(cell)
                group.instance_started()
                await cell.start(
                    first if index == 0 else None,
                    mailbox_size or self.mailbox_size,
                    overflow or self.overflow,
                )
        except BaseException:
            with anyio.CancelScope(shield=True):
                for cell in group.cells:
                    await cell.kill()
            del self._groups[name]
            raise
        return group.ref

    async def idle(self, timeout: float | None = 10.0) -> None:
        """Return once every local actor's mailbox is empty and none is handling a message:
        what was told so far has been handled (a workflow's `result()` returns when the
        instance ends, before the services have handled the steps nobody waits for and the
        failure notices: `await system.idle()` waits for those too).

        Only this system's actors are watched: what an actor in another process still has
        to do is not seen. On NATS each look waits for the server to have passed on what was
        published (a flush), so a message on its way back to a local actor is seen too. Raises
        TimeoutError after `timeout` seconds of activity (None: as long as it takes).
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        quiet = 0
        while quiet < 3:  # idle on three looks in a row: a handler's last tell has landed
            await self.bus.flush()
            if all(cell.idle for group in list(self._groups.values()) for cell in group.cells):
                quiet += 1
                await asyncio.sleep(0)
                continue
            quiet = 0
            if deadline is not None and loop.time() > deadline:
                raise TimeoutError(f"the actors were still busy after {timeout} s")
            await asyncio.sleep(0.001)

    def ref(self, actor_class: type[A], name: str, *, node: str | None = None) -> ActorRef[A]:
        """A ref to the actor `name` of class `actor_class`, running here or in another process
        on the same bus; with `node`, to the private actor `name` of the system whose `node`
        that is (see `spawn`)."""
        if node is None or node == self.node:
            group = self._groups.get(name)
            if group is not None:
                return group.ref
        subject = self._subject(name, node)
        table = handler_table(actor_class)
        return ActorRef(
            self.bus, name, subject, table, self.max_message_size, None, self.links, self.prefix
        )

    def _subject(self, name: str, node: str | None) -> str:
        """Where the actor `name` listens: shared, or the private one of the system `node`."""
        subject = f"{self.prefix}.{name}" if node is None else f"{self.prefix}.{name}.@{node}"
        validate_subject(subject)
        return subject

    def add_handlers(
        self, name: str, handlers: Mapping[type, Callable[[Any, Any], Awaitable[Any]]]
    ) -> ActorRef[Any]:
        """Have the local actor `name` also handle the message types in `handlers`, each by
        `handler(actor, message)`, in its own mailbox and one message at a time with its own
        handlers: a sidecar (a choreography's adapter runs beside its service this way).

        Returns a ref that can send the added types too (refs taken before cannot). Raises
        ActorNotFoundError when `name` does not run here, InvalidActorError when a type is
        handled already or two types share a tag.
        """
        group = self._local_group(name)
        table = extended(group.table, dict(handlers))
        self._use_table(group, table)
        return group.ref

    def remove_handlers(self, name: str, types: Iterable[type]) -> None:
        """Undo `add_handlers` for `types` (the actor's own handlers cannot be removed)."""
        group = self._groups.get(name)
        if group is None:
            return  # stopped meanwhile: nothing to undo
        removable = [t for t in types if t not in group.base.handlers]
        self._use_table(group, reduced(group.table, removable))

    def _local_group(self, name: str) -> ActorGroup:
        group = self._groups.get(name)
        if group is None:
            raise ActorNotFoundError(f"no actor named {name!r} runs in this system")
        return group

    def _use_table(self, group: ActorGroup, table: HandlerTable) -> None:
        group.table = table
        for cell in group.cells:
            cell.use_table(table)
        group.ref = ActorRef(
            self.bus,
            group.name,
            group.subject,
            table,
            self.max_message_size,
            group,
            self.links,
            self.prefix,
        )

    def local_names(self) -> list[str]:
        """The names of the actors running in this system."""
        return list(self._groups)

    def is_local(self, name: str) -> bool:
        """Whether an actor named `name` runs in this system."""
        return name in self._groups

    async def stop(self, ref: ActorRef[Any], timeout: float | None = None) -> None:
        """Stop a local actor: its mailbox is handled first, for up to `timeout` seconds.

        Called from one of the actor's own handlers, it cannot wait for that mailbox: the actor
        stops at once (`on_stop` runs before the handler returns) and the messages still in
        its mailbox are refused, askers getting ActorStoppedError.
        """
        group = self._groups.pop(ref.name, None)
        if group is None:
            raise ActorError(f"no local actor named {ref.name!r}")
        self._retired.append(group)
        handling = _current.get()
        if handling is not None and handling.subject == group.subject:
            for cell in group.cells:
                await cell.stop_now()
            return
        await self._stop_groups([group], self.shutdown_timeout if timeout is None else timeout)

    async def shutdown(self, *, graceful: bool = True) -> None:
        """Stop every actor (draining mailboxes when `graceful`) and close an owned bus."""
        if self._closed:
            return
        self._running = False
        self._closed = True
        groups = [*self._groups.values(), *self._retired]
        self._groups.clear()
        self._retired.clear()
        with anyio.CancelScope(shield=True):
            await self._stop_groups(groups, self.shutdown_timeout if graceful else 0)
            if self._owns_bus:
                await self.bus.close()
            await self.metrics.stop_serving()
        self._retired.extend(groups)  # their counts stay readable in the system's registry
        if not self._own_registry:
            self.metrics.close()  # a registry that outlives the system forgets it

    def all_groups(self) -> list[tuple[str, list[ActorGroup]]]:
        """Every actor name this system has run, with its groups (a name can be spawned
        again after a stop), for the metrics."""
        by_name: dict[str, list[ActorGroup]] = {}
        for group in [*self._retired, *self._groups.values()]:
            by_name.setdefault(group.name, []).append(group)
        return list(by_name.items())

    @property
    def actors(self) -> dict[str, ActorRef[Any]]:
        """Refs of the local actors, by name."""
        return {name: group.ref for name, group in self._groups.items()}

    async def _supervise(self, actor: Actor, error: Exception) -> None:
        """Apply `actor`'s supervisor directive to a failure of a message dispatched to it in
        place (by a sidecar), as its mailbox does for the messages it delivers."""
        group = self._groups.get(actor.name)
        for cell in group.cells if group is not None else ():
            if cell.actor is actor:
                await cell.supervise(error)
                return

    def _escalate(self, name: str, error: BaseException) -> None:
        self.failures.append(ActorFailure(name, error, time.time()))

    async def _stop_groups(self, groups: list[ActorGroup], timeout: float) -> None:
        cells = [cell for group in groups for cell in group.cells]
        if timeout > 0 and cells:
            # One plain task per instance, all joined here before the deadline or cancelled:
            # an anyio task group did the same at 65 us a task, which made stopping 100,000
            # idle actors take 6.6 s.
            loop = asyncio.get_running_loop()
            stopping = [loop.create_task(cell.stop()) for cell in cells]
            _, late = await asyncio.wait(stopping, timeout=timeout)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)
            for task in stopping:
                if not task.cancelled() and task.exception() is not None:
                    logger.error("stopping an actor failed", exc_info=task.exception())
        for cell in cells:
            await cell.kill()
