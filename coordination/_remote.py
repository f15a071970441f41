"""Instances started in another process: a workflow id names its owner, and any process asks
the owner.

A strategy starts an instance in one process, its owner, and the workflow id says which:
`<workflow>-<node>-<number>`, `node` being the owner's `ActorSystem.node`. Each strategy
object keeps a private actor (`<strategy>.<workflow>.owner`, reached only on its own node)
that answers, for the instances its strategy started, what a strategy object in any other
process is asked: `status`, `cancel`, `pause`, `resume`, and the end that `result` waits
for. So two processes running one workflow each keep their own instances, and either can
be asked about any of them.

`result` for an instance owned elsewhere registers with the owner, which tells the end to
the asking process's owner actor once it comes (and answers at once for one that ended);
the registration is made again every few seconds while the caller waits, so a message lost
on the way (a connection cut) costs a few seconds, never the result.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal, Protocol

import msgspec

from actors import (
    Actor,
    ActorError,
    ActorNotFoundError,
    ActorRef,
    ActorSystem,
    AskTimeoutError,
    Message,
    Request,
)
from brokers import BusError

from ._errors import CoordinationError, UnknownWorkflowError, WorkflowEndedError
from ._status import Outcome, WorkflowResult, WorkflowStatus
from .definition._reply_codec import ReplyCodec
from .definition._workflow import Failure, Workflow

if TYPE_CHECKING:
    from ._outcomes import Outcomes

__all__ = ("Remote", "new_workflow_ids", "owner_of")

_NODE = re.compile(r"^[0-9a-f]{16}$")

ALIVE_TIMEOUT = 2.0
"""Seconds an owner has to answer before it is taken to be gone (it is asked on the bus: on
NATS, an owner that is gone is known at once, by no responders)."""
REWATCH = 5.0
"""Seconds between registrations while `result` waits for an instance owned elsewhere."""

Action = Literal["cancel", "pause", "resume"]


def new_workflow_ids(workflow: Workflow[Any], system: ActorSystem) -> Callable[[], str]:
    """A maker of workflow ids for instances `system` owns: `<workflow>-<node>-<number>`."""
    prefix = f"{workflow.name}-{system.node}-"
    numbers = itertools.count(1)
    return lambda: prefix + str(next(numbers))


def owner_of(workflow_id: str) -> str | None:
    """The node of the system that started `workflow_id` (None for an id of another form)."""
    parts = workflow_id.rsplit("-", 2)
    if len(parts) == 3 and _NODE.match(parts[1]):
        return parts[1]
    return None


class AskStatus(Request[WorkflowStatus | None]):
    """The status of an instance of the owner's (None: it does not know it)."""

    workflow_id: str


class Control(Request[bool | None]):
    """Cancel, pause or resume an instance of the owner's (None: it does not know it)."""

    workflow_id: str
    action: str
    by: str


class Signal(Request[str | None]):
    """Send an instance of the owner's a signal: its payload's bytes. The answer: None when
    the owner does not know the instance, "" when the signal was taken, else why not (an
    `ENDED` one when the instance has ended)."""

    workflow_id: str
    signal: str
    payload: msgspec.Raw


ENDED = "ended: "
"""How the owner's refusal of a signal for an ended instance begins."""


class End(msgspec.Struct, frozen=True):
    """A finished instance's result, its replies as their bytes."""

    workflow_id: str
    outcome: Outcome
    results: dict[str, msgspec.Raw]
    failure: Failure | None
    attention: tuple[str, ...] = ()


class Watching(msgspec.Struct, frozen=True):
    known: bool
    end: End | None = None
    """The end, when the instance has ended already."""


class Watch(Request[Watching]):
    """Tell `watcher` (a node) the end of `workflow_id`; answers it at once if it has ended."""

    workflow_id: str
    watcher: str


class Ended(Message):
    """The end of an instance, for the process that watches it."""

    end: End


_encode = msgspec.msgpack.Encoder().encode

_GONE = object()
"""What `_ask` gives when the owner does not answer and the store may know the instance."""


class _OwnerActor(Actor):
    def __init__(self, remote: Remote) -> None:
        self.remote = remote

    async def status(self, msg: AskStatus) -> WorkflowStatus | None:
        try:
            return await self.remote.local_status(msg.workflow_id)
        except UnknownWorkflowError:
            return None

    async def control(self, msg: Control) -> bool | None:
        if msg.action not in ("cancel", "pause", "resume"):
            raise ValueError(f"no action {msg.action!r}")
        try:
            return await self.remote.local_control(msg.workflow_id, msg.action, msg.by)
        except UnknownWorkflowError:
            return None

    async def signal(self, msg: Signal) -> str | None:
        remote = self.remote
        wait = remote.workflow.signals.get(msg.signal)
        if wait is None:
            return f"{remote.workflow.name} waits for no signal {msg.signal!r}"
        payload = msgspec.msgpack.decode(msg.payload, type=wait.payload)
        try:
            await remote.strategy.signal(msg.workflow_id, msg.signal, payload)
        except UnknownWorkflowError:
            return None
        except WorkflowEndedError as exc:
            return f"{ENDED}{exc}"
        except CoordinationError as exc:
            return str(exc)
        return ""

    async def watch(self, msg: Watch) -> Watching:
        try:
            return Watching(True, self.remote.watch(msg.workflow_id, msg.watcher))
        except UnknownWorkflowError:
            return Watching(False)

    async def ended(self, msg: Ended) -> None:
        self.remote.heard(msg.end)


class _Controlled(Protocol):
    async def signal(self, workflow_id: str, signal: str, payload: Any) -> None: ...
    async def cancel(self, workflow_id: str, *, by: str = "api") -> bool: ...
    async def pause(self, workflow_id: str, *, by: str = "api") -> bool: ...
    async def resume(self, workflow_id: str, *, by: str = "api") -> bool: ...


class Remote:
    """The cross-process side of one strategy object: its owner actor, and the way to the
    owners of instances started elsewhere.

    `local_status(workflow_id)` is the strategy's own status of its instances; `strategy`
    cancels, pauses and resumes them (the owner actor calls both)."""

    def __init__(
        self,
        system: ActorSystem,
        workflow: Workflow[Any],
        route: str,
        outcomes: Outcomes,
        local_status: Callable[[str], Awaitable[WorkflowStatus]],
        strategy: _Controlled,
        durable: Callable[[], bool],
    ) -> None:
        self.system = system
        self.workflow = workflow
        self.name = f"{route}.owner"
        self.outcomes = outcomes
        self.local_status = local_status
        self.strategy = strategy
        self.durable = durable
        """Whether the strategy's store is one other processes share: an instance whose
        owner is gone may be known to it (the asking methods then answer None)."""
        self._codec = ReplyCodec(workflow)
        self._actor: ActorRef[_OwnerActor] | None = None
        self._owners: dict[str, ActorRef[_OwnerActor]] = {}
        self._watchers: dict[str, set[str]] = {}
        """Per running instance of ours: the nodes to tell its end."""
        self._awaited: dict[str, asyncio.Future[End]] = {}
        """Per instance owned elsewhere that `result` waits for here: its end, when told."""
        self._telling: set[asyncio.Task[None]] = set()

    async def open(self) -> None:
        self._actor = await self.system.spawn(
            lambda: _OwnerActor(self), name=self.name, private=True
        )

    async def close(self) -> None:
        actor, self._actor = self._actor, None
        if actor is not None and not actor.stopped:
            await self.system.stop(actor)
        for future in self._awaited.values():
            future.cancel()
        self._awaited.clear()

    def elsewhere(self, workflow_id: str) -> str | None:
        """The owner's node when `workflow_id` was started by another system and this one
        does not know it (a durable store may have taken it up here: then it is ours)."""
        owner = owner_of(workflow_id)
        if owner is None or owner == self.system.node or self.outcomes.knows(workflow_id):
            return None
        return owner

    # -- asking the owner -------------------------------------------------------------

    # Each returns None for an instance of this process's, or when the owner does not answer
    # and the strategy's store is shared: the caller then answers itself.

    async def status(self, workflow_id: str) -> WorkflowStatus | None:
        owner = self.elsewhere(workflow_id)
        if owner is None:
            return None
        status = await self._ask(owner, AskStatus(workflow_id), workflow_id)
        if status is _GONE:
            return None
        if status is None:
            raise self._unknown(workflow_id, owner)
        return status  # type: ignore[no-any-return]

    async def control(self, workflow_id: str, action: Action, by: str) -> bool | None:
        owner = self.elsewhere(workflow_id)
        if owner is None:
            return None
        done = await self._ask(owner, Control(workflow_id, action, by), workflow_id)
        if done is _GONE:
            return None
        if done is None:
            raise self._unknown(workflow_id, owner)
        return bool(done)

    async def signal(self, workflow_id: str, signal: str, payload: Any) -> bool | None:
        """Have the owner take a signal: True once it did; None when the instance is ours
        (or its owner is gone, on a shared store)."""
        owner = self.elsewhere(workflow_id)
        if owner is None:
            return None
        data = msgspec.Raw(_encode(payload))
        answer = await self._ask(owner, Signal(workflow_id, signal, data), workflow_id)
        if answer is _GONE:
            return None
        if answer is None:
            raise self._unknown(workflow_id, owner)
        if answer.startswith(ENDED):
            raise WorkflowEndedError(answer.removeprefix(ENDED))
        if answer:
            raise CoordinationError(answer)
        return True

    async def result(self, workflow_id: str, timeout: float | None) -> WorkflowResult | None:
        owner = self.elsewhere(workflow_id)
        if owner is None:
            return None
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        future = self._awaited.get(workflow_id)
        if future is None:
            future = self._awaited[workflow_id] = loop.create_future()
        try:
            while True:
                watching = await self._ask(owner, Watch(workflow_id, self.system.node), workflow_id)
                if watching is _GONE:
                    return None
                if not watching.known:
                    raise self._unknown(workflow_id, owner)
                if watching.end is not None:
                    return self._result(watching.end)
                wait = REWATCH if deadline is None else min(REWATCH, deadline - loop.time())
                if wait <= 0:
                    raise TimeoutError(f"{workflow_id} did not end within {timeout} s")
                done, _ = await asyncio.wait((future,), timeout=wait)
                if done:
                    return self._result(future.result())
        finally:
            self._awaited.pop(workflow_id, None)

    async def answers(self, node: str) -> bool:
        """Whether the process `node` runs this strategy and answers (it is alive)."""
        ref = self._owner(node)
        try:
            await ref.ask(AskStatus(""), timeout=ALIVE_TIMEOUT)
        except (ActorNotFoundError, AskTimeoutError):
            return False
        return True

    def _owner(self, node: str) -> ActorRef[_OwnerActor]:
        ref = self._owners.get(node)
        if ref is None:
            if len(self._owners) > 1024:  # processes come and go: keep the table bounded
                self._owners.clear()
            ref = self._owners[node] = self.system.ref(_OwnerActor, self.name, node=node)
        return ref

    async def _ask(self, owner: str, question: Request[Any], workflow_id: str) -> Any:
        try:
            return await self._owner(owner).ask(question)
        except ActorNotFoundError:
            if self.durable():
                return _GONE
            raise UnknownWorkflowError(
                f"{workflow_id} was started by another process (node {owner}), which does not "
                f"answer: it stopped, or runs no {self.name.removesuffix('.owner')}. Its "
                "instances live in that process (or in the strategy's store, when it has a "
                "durable one)"
            ) from None

    def _unknown(self, workflow_id: str, owner: str) -> UnknownWorkflowError:
        return UnknownWorkflowError(
            f"no workflow {workflow_id!r} in {self.workflow.name} in the process that started "
            f"it (node {owner}): it forgot it among the finished ones it keeps"
        )

    def _result(self, end: End) -> WorkflowResult:
        return WorkflowResult(
            end.workflow_id,
            end.outcome,
            self._codec.results(end.results),
            end.failure,
            end.attention,
        )

    # -- answering as the owner -------------------------------------------------------

    def watch(self, workflow_id: str, watcher: str) -> End | None:
        outcomes = self.outcomes
        outcomes.check(workflow_id)
        if not outcomes.is_running(workflow_id):
            return self._end(outcomes.finished_result(workflow_id))
        self._watchers.setdefault(workflow_id, set()).add(watcher)
        outcomes.on_end = self._ended
        return None

    async def local_control(self, workflow_id: str, action: str, by: str) -> bool:
        """Cancel, pause or resume an instance of ours, as another process asked."""
        strategy = self.strategy
        match action:
            case "cancel":
                return await strategy.cancel(workflow_id, by=by)
            case "pause":
                return await strategy.pause(workflow_id, by=by)
            case _:
                return await strategy.resume(workflow_id, by=by)

    def _ended(self, result: WorkflowResult) -> None:
        watchers = self._watchers.pop(result.workflow_id, None)
        if not watchers:
            return
        event = Ended(self._end(result))
        for watcher in watchers:
            ref = self.system.ref(_OwnerActor, self.name, node=watcher)
            task = asyncio.get_running_loop().create_task(_tell_quietly(ref, event))
            self._telling.add(task)
            task.add_done_callback(self._telling.discard)

    def heard(self, end: End) -> None:
        future = self._awaited.get(end.workflow_id)
        if future is not None and not future.done():
            future.set_result(end)

    @staticmethod
    def _end(result: WorkflowResult) -> End:
        results = {name: msgspec.Raw(_encode(reply)) for name, reply in result.results.items()}
        return End(result.workflow_id, result.outcome, results, result.failure, result.attention)


async def _tell_quietly(ref: ActorRef[Any], event: Ended) -> None:
    """Tell a watcher an end. One that went away meanwhile gave up; a message lost on the way
    is made up for by the watcher, which registers again every few seconds."""
    with contextlib.suppress(ActorError, BusError):
        await ref.tell(event)
