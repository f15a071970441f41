"""A workflow, declared once as data: steps, compensations, retries, timeouts, failure path.

Strategies read a definition; they never add behaviour of their own to it. A service signals
a business failure (the card was declined, the item is backordered) by replying `Rejected`;
an exception, a timeout or no responder is a technical failure, retried per the step's policy
with the same message id, so that an idempotent service never acts twice.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import msgspec

from actors import Actor, Message, Request

from .._errors import InvalidWorkflowError

__all__ = (
    "FAIL",
    "Branch",
    "Compute",
    "Failure",
    "Notify",
    "Rejected",
    "Replies",
    "RetryPolicy",
    "Sleep",
    "Step",
    "WaitFor",
    "Workflow",
    "WorkflowContext",
    "builder_context",
    "check_input",
    "check_signal",
    "nothing_to_read",
)

In = TypeVar("In", bound=msgspec.Struct)


class Rejected(Message):
    """A service's answer when the business says no: not retried, it starts the failure
    path."""

    reason: str


class Failure(msgspec.Struct, frozen=True, gc=False):
    """Why a workflow left its happy path."""

    step: str
    reason: str
    technical: bool
    """True for an exception or timeout that outlived its retries, False for a Rejected."""


@dataclass(slots=True)
class WorkflowContext(Generic[In]):
    """What command builders see: the input, the replies of the steps the building step
    `reads`, and the failure once there is one."""

    workflow_id: str
    input: In
    results: dict[str, Any] = field(default_factory=dict)
    failure: Failure | None = None


class Replies(dict[str, Any]):
    """The replies a builder may read: those of the steps its step declares in `reads`.

    Every strategy hands builders the same view, so a definition behaves the same under all
    of them; the query-all choreography fetches exactly these from the services that hold
    them.
    """

    __slots__ = ("step",)

    def __init__(self, step: str, replies: dict[str, Any]) -> None:
        super().__init__(replies)
        self.step = step

    def __missing__(self, name: str) -> Any:
        raise KeyError(
            f"step {self.step!r} reads the reply of {name!r}, which it does not declare "
            f"(Step(..., reads=({name!r},)))"
        )


def builder_context(
    context: WorkflowContext[In], readable: tuple[str, ...], step: str
) -> WorkflowContext[In]:
    """`context` as the builders of `step` see it: the replies in `readable` only."""
    if readable:
        results = context.results
        visible = Replies(step, {name: results[name] for name in readable if name in results})
    else:
        visible = nothing_to_read(step)
    return WorkflowContext(context.workflow_id, context.input, visible, context.failure)


class _NoReplies(Replies):
    """The empty view of a step that reads no reply: made once per step name and shared, so
    it refuses to be written to."""

    __slots__ = ()

    def _refuse(self, *args: object, **kwargs: object) -> Any:
        raise TypeError(f"the replies step {self.step!r} reads are read-only")

    __setitem__ = __delitem__ = update = setdefault = pop = popitem = clear = _refuse


_NOTHING: dict[str, Replies] = {}


def nothing_to_read(step: str) -> Replies:
    """The read-only empty view of the replies of a step that reads none (shared)."""
    replies = _NOTHING.get(step)
    if replies is None:
        replies = _NOTHING[step] = _NoReplies(step, {})
    return replies


Builder = Callable[[WorkflowContext[Any]], msgspec.Struct]
"""Builds a command from the workflow context."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often a technical failure is retried, and how long to wait in between."""

    attempts: int = 3
    backoff: float = 0.05
    multiplier: float = 2.0
    max_backoff: float = 2.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.backoff < 0 or self.multiplier < 1:
            raise InvalidWorkflowError("a retry policy needs attempts >= 1, backoff >= 0")

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        return float(min(self.max_backoff, self.backoff * self.multiplier ** (attempt - 1)))


@dataclass(frozen=True, slots=True)
class Step:
    """One step: `service` (an actor name) receives the command `command(context)`.

    With `wait` the step is a request: its reply (or Rejected) decides what comes next. Without
    it the command is sent and the workflow moves on (a notification, an email).
    `compensation(context)` undoes the step when a later step fails; a step whose effect needs
    no undoing says `nothing_to_undo=True`.

    `reads` names the earlier steps whose replies the builders read (`context.results`):
    the data the step depends on, stated once. The compensation also reads the step's own
    reply.
    """

    name: str
    service: str
    command: Builder
    compensation: Builder | None = None
    retry: RetryPolicy = RetryPolicy()
    timeout: float = 5.0
    wait: bool = True
    nothing_to_undo: bool = False
    reads: tuple[str, ...] = ()

    @property
    def undo_reads(self) -> tuple[str, ...]:
        """What the compensation reads: the step's `reads` and its own reply."""
        return (*self.reads, self.name) if self.wait else self.reads

    def build(self, context: WorkflowContext[Any]) -> msgspec.Struct:
        """The step's command for `context`. A step that is waited for needs an answer, so
        its command must be a Request (which names the reply type): TypeError otherwise."""
        command = self.command(context)
        if self.wait and not isinstance(command, Request):
            raise TypeError(
                f"{type(command).__name__} is waited for: it must subclass actors.Request"
            )
        return command


@dataclass(frozen=True, slots=True)
class Branch:
    """A choice between two paths: `then` runs when `when(context)` is true, `otherwise` when
    it is not, and the workflow goes on after the branch either way.

    `when` reads the input and the replies of the steps named in `reads` (which must have
    answered on every path to the branch). Only the path taken runs, and only its steps are
    compensated if the instance turns around later. Paths may hold further branches.
    """

    name: str
    when: Callable[[WorkflowContext[Any]], bool]
    then: Sequence[Step | Branch | Compute | WaitFor | Sleep] = ()
    otherwise: Sequence[Step | Branch | Compute | WaitFor | Sleep] = ()
    reads: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "then", tuple(self.then))
        object.__setattr__(self, "otherwise", tuple(self.otherwise))

    def taken(self, context: WorkflowContext[Any]) -> bool:
        """Whether `context` takes the `then` path (TypeError unless `when` says a bool)."""
        chosen = self.when(context)
        if not isinstance(chosen, bool):
            raise TypeError(f"branch {self.name!r}: when() must return a bool, not {chosen!r}")
        return chosen


@dataclass(frozen=True, slots=True)
class Compute:
    """A step with no service: `fn(context)` gives its reply, from the input and the replies
    named in `reads` (validation, data mapping: what Step Functions calls a Pass state).

    It runs wherever the instance is (in the mediator; under a choreography, in the adapter
    that reached it), so `fn` must be a pure function of the context: query-all works it out
    again when a later step reads it. A `Rejected` it returns is a business failure, as a
    service's; an exception fails the instance there (not retried: the same context would
    give the same answer). `returns` is the reply's type, for the strategies that carry
    replies as bytes (it may be left out when `fn` is annotated with it).
    """

    name: str
    fn: Callable[[WorkflowContext[Any]], Any]
    reads: tuple[str, ...] = ()
    returns: Any = None

    def __post_init__(self) -> None:
        if self.returns is None:
            try:  # resolves the annotations a module with `from __future__` keeps as text
                hints = typing.get_type_hints(self.fn)
            except Exception:  # a name it cannot resolve, or nothing to read hints from
                hints = {}
            if "return" not in hints:
                raise InvalidWorkflowError(
                    f"compute {self.name!r}: say what it returns (Compute(..., returns=T)), "
                    "or annotate its function"
                )
            object.__setattr__(self, "returns", hints["return"])


FAIL: Any = object()
"""A wait's `on_timeout` that fails the instance (the default)."""


@dataclass(frozen=True, slots=True)
class WaitFor:
    """The instance waits here for `signal`, an event from outside (a customer accepting, an
    expert approving): `strategy.signal(workflow_id, signal, payload)` sends it, and the
    payload, of type `payload`, becomes this step's reply, which later steps may read. A
    signal that comes before the instance waits for it is kept until it does.

    With `timeout` (seconds, on the strategy's clock), a wait that has not had its signal by
    then fails the instance there, as a refusal would (`Failure(name, "no signal ... within
    ... s")`), or, with `on_timeout`, goes on with that payload instead.

    A wait is never compensated (it changed nothing), and a cancel does not wait for it.
    """

    name: str
    signal: str
    payload: Any
    timeout: float | None = None
    on_timeout: Any = FAIL

    def __post_init__(self) -> None:
        if self.timeout is not None and self.timeout < 0:
            raise InvalidWorkflowError(f"wait {self.name!r}: timeout must be >= 0")
        if self.on_timeout is not FAIL:
            if self.timeout is None:
                raise InvalidWorkflowError(f"wait {self.name!r}: on_timeout needs a timeout")
            self.decode(self.on_timeout)  # TypeError now, not when it times out

    @property
    def timed_out(self) -> str:
        """The reason a wait that timed out fails with."""
        return f"no signal {self.signal!r} within {self.timeout} s"

    def decode(self, value: Any) -> Any:
        """`value` as the payload type says (TypeError for one of another type): what every
        strategy hands the builders that read it."""
        try:
            return msgspec.msgpack.decode(msgspec.msgpack.encode(value), type=self.payload)
        except (msgspec.ValidationError, TypeError) as exc:
            raise TypeError(
                f"signal {self.signal!r} carries {self.payload!r}, not {type(value).__name__}: "
                f"{exc}"
            ) from None


@dataclass(frozen=True, slots=True)
class Sleep:
    """The instance sleeps for `seconds`, or until `until` (seconds since the epoch), on its
    strategy's clock: a durable timer where the strategy keeps its instances durably (the
    Mediator on a durable store), which survives a restart. Never compensated; a cancel does
    not wait for it to end."""

    name: str
    seconds: float | None = None
    until: float | None = None

    def __post_init__(self) -> None:
        if (self.seconds is None) == (self.until is None):
            raise InvalidWorkflowError(f"sleep {self.name!r}: give seconds or until, not both")
        if self.seconds is not None and self.seconds < 0:
            raise InvalidWorkflowError(f"sleep {self.name!r}: seconds must be >= 0")

    def due(self, now: float) -> float:
        """When a sleep that begins at `now` ends."""
        return now + self.seconds if self.seconds is not None else float(self.until or 0.0)


Node = Step | Branch | Compute | WaitFor | Sleep
"""What a workflow's flow is made of."""


@dataclass(frozen=True, slots=True)
class Notify:
    """A command sent to `service` on the failure path (after compensation). Its builder
    reads the input and `context.failure`; no replies."""

    service: str
    command: Builder


class Workflow(Generic[In]):
    """A named, validated workflow over an input of type `input_type`.

    `steps` is the flow: steps, and branches that hold further steps. `services` maps the
    service names the steps use to the actor classes that implement them; `on_failure` lists
    what is sent once compensation is done (tell the customer, mark the order failed);
    `done_elsewhere` names the steps that run before this workflow under another strategy
    (see `Hybrid`).
    """

    def __init__(
        self,
        name: str,
        input_type: type[In],
        steps: Sequence[Step | Branch | Compute | WaitFor | Sleep],
        *,
        services: Mapping[str, type[Actor]],
        on_failure: Sequence[Notify] = (),
        done_elsewhere: Sequence[Step | Compute | WaitFor | Sleep] = (),
    ) -> None:
        self.name = name
        self.input_type = input_type
        self.flow: tuple[Node, ...] = tuple(steps)
        """The flow as declared: steps and branches."""
        self.steps: tuple[Step, ...] = tuple(_steps_in(self.flow))
        """Every step, each path's in turn (a branch's `then` before its `otherwise`)."""
        self.branches: dict[str, Branch] = {b.name: b for b in _branches_in(self.flow)}
        self.computes: dict[str, Compute] = {c.name: c for c in _computes_in(self.flow)}
        self.waits: dict[str, WaitFor] = {
            w.name: w for w in _walk(self.flow) if isinstance(w, WaitFor)
        }
        self.signals: dict[str, WaitFor] = {w.signal: w for w in self.waits.values()}
        """The waits, by the signal each waits for."""
        self.sleeps: dict[str, Sleep] = {
            n.name: n for n in _walk(self.flow) if isinstance(n, Sleep)
        }
        self.leaf_nodes: tuple[Step | Compute | WaitFor | Sleep, ...] = tuple(_leaves_in(self.flow))
        """The steps, computes, waits and sleeps, in the order of the flow."""
        self.leaves: tuple[str, ...] = tuple(n.name for n in self.leaf_nodes)
        """Their names."""
        self.linear = not (self.branches or self.computes or self.waits or self.sleeps)
        """Whether the flow is a plain sequence of steps (every instance takes one path)."""
        self.done_elsewhere = tuple(done_elsewhere)
        """Steps another strategy runs before this workflow (a hybrid's core): their replies
        come in with `start(..., results=...)`, typed as their services declare."""
        self.services = dict(services)
        self.on_failure = tuple(on_failure)
        self._validate()
        self.by_name: dict[str, Step] = {step.name: step for step in self.steps}
        """The steps by name."""
        self.next_step: dict[str, Node | None] = {}
        """What follows each step on its path: a step, a branch to decide, or None (the
        end)."""
        self.entry: dict[tuple[str, bool], Node | None] = {}
        """Per branch and path (True: `then`), what the path starts with: its first node, or,
        for an empty path, what follows the branch."""
        self._link(self.flow, None)
        self.first: Node = self.flow[0]
        self.input_decoder = msgspec.msgpack.Decoder(input_type)

    def _link(self, nodes: Sequence[Node], after: Node | None) -> None:
        """Say what follows each node of `nodes`, `after` following the last."""
        for index, node in enumerate(nodes):
            following = nodes[index + 1] if index + 1 < len(nodes) else after
            if isinstance(node, Branch):
                self.entry[(node.name, True)] = node.then[0] if node.then else following
                self.entry[(node.name, False)] = node.otherwise[0] if node.otherwise else following
                self._link(node.then, following)
                self._link(node.otherwise, following)
            else:
                self.next_step[node.name] = following

    def node(self, name: str) -> Node:
        """The step, branch or compute named `name` (KeyError for none)."""
        found: Node | None = (
            self.by_name.get(name)
            or self.computes.get(name)
            or self.waits.get(name)
            or self.sleeps.get(name)
        )
        return found if found is not None else self.branches[name]

    def __repr__(self) -> str:
        return f"<Workflow {self.name!r}: {' -> '.join(self.leaves)}>"

    def step(self, name: str) -> Step:
        """The step named `name` (KeyError for none)."""
        return self.by_name[name]

    def _validate(self) -> None:
        if not self.name or not self.name.replace("-", "").replace("_", "").isalnum():
            raise InvalidWorkflowError(f"workflow name {self.name!r}: letters, digits, - and _")
        if not self.steps:
            raise InvalidWorkflowError(f"workflow {self.name!r} has no step")
        names = [step.name for step in self.steps] + [b.name for b in _branches_in(self.flow)]
        names += [c.name for c in _computes_in(self.flow)]
        waits = [node for node in _walk(self.flow) if isinstance(node, WaitFor)]
        names += [w.name for w in waits]
        names += [n.name for n in _walk(self.flow) if isinstance(n, Sleep)]
        signals = [w.signal for w in waits]
        for signal in signals:
            if not signal or signals.count(signal) > 1:
                raise InvalidWorkflowError(
                    f"workflow {self.name!r}: signal {signal!r} is empty or awaited twice"
                )
        for name in names:
            if not name or names.count(name) > 1:
                raise InvalidWorkflowError(
                    f"workflow {self.name!r}: step name {name!r} is empty or used twice"
                )
        for branch in _branches_in(self.flow):
            if not branch.then and not branch.otherwise:
                raise InvalidWorkflowError(
                    f"workflow {self.name!r}: branch {branch.name!r} has no step on either path"
                )
        used = [
            (s.name, s.service) for s in (*self.done_elsewhere, *self.steps) if isinstance(s, Step)
        ]
        used += [("on_failure", n.service) for n in self.on_failure]
        for step_name, service in used:
            if service not in self.services:
                raise InvalidWorkflowError(
                    f"workflow {self.name!r}: {step_name!r} uses service {service!r}, which is "
                    f"not among its services ({', '.join(sorted(self.services))})"
                )
        before = {s.name for s in self.done_elsewhere if not isinstance(s, Step) or s.wait}
        self._check_reads(self.flow, frozenset(before))
        self._check_compensations(self.flow, ())

    def _check_reads(self, nodes: Sequence[Node], answered: frozenset[str]) -> frozenset[str]:
        """Check that each node reads only replies given on every path to it; return the
        replies given on every path through `nodes`."""
        for node in nodes:
            kind = type(node).__name__.lower()
            for name in () if isinstance(node, (WaitFor, Sleep)) else node.reads:
                if name not in answered:
                    raise InvalidWorkflowError(
                        f"workflow {self.name!r}: {kind} {node.name!r} reads {name!r}, which "
                        "is not a step that answers (wait=True) on every path before it"
                    )
            if isinstance(node, Branch):
                answered = self._check_reads(node.then, answered) & self._check_reads(
                    node.otherwise, answered
                )
            elif isinstance(node, (Compute, WaitFor)) or (isinstance(node, Step) and node.wait):
                answered |= {node.name}
        return answered

    def _check_compensations(
        self, nodes: Sequence[Node], after: tuple[Sequence[Node], ...]
    ) -> None:
        """A step that answers must be undoable when a step that answers may follow it on
        some path (that one can fail): `after` holds what follows `nodes`, innermost first."""
        for index, node in enumerate(nodes):
            rest = (nodes[index + 1 :], *after)
            if isinstance(node, Branch):
                self._check_compensations(node.then, rest)
                self._check_compensations(node.otherwise, rest)
                continue
            if isinstance(node, (Compute, WaitFor, Sleep)):
                continue  # nothing to undo: it changed nothing
            if not node.wait or node.compensation is not None or node.nothing_to_undo:
                continue
            later = next((n for part in rest for n in _may_fail_in(part)), None)
            if later is not None:
                raise InvalidWorkflowError(
                    f"workflow {self.name!r}: step {node.name!r} has no compensation, but "
                    f"{later.name!r} after it can fail; give it one, or say "
                    "nothing_to_undo=True"
                )


def _walk(nodes: Sequence[Node]) -> Iterator[Node]:
    """Every node of `nodes`, in the order of the flow (a branch, then its `then` path, then
    its `otherwise`)."""
    for node in nodes:
        yield node
        if isinstance(node, Branch):
            yield from _walk(node.then)
            yield from _walk(node.otherwise)


def _steps_in(nodes: Sequence[Node]) -> list[Step]:
    return [node for node in _walk(nodes) if isinstance(node, Step)]


def _branches_in(nodes: Sequence[Node]) -> list[Branch]:
    return [node for node in _walk(nodes) if isinstance(node, Branch)]


def _computes_in(nodes: Sequence[Node]) -> list[Compute]:
    return [node for node in _walk(nodes) if isinstance(node, Compute)]


def _leaves_in(nodes: Sequence[Node]) -> list[Step | Compute | WaitFor | Sleep]:
    return [node for node in _walk(nodes) if not isinstance(node, Branch)]


def _may_fail_in(nodes: Sequence[Node]) -> list[Step | Compute]:
    """The steps that answer and the computes in `nodes`: what may turn an instance around."""
    return [
        node
        for node in _walk(nodes)
        if isinstance(node, Compute) or (isinstance(node, Step) and node.wait)
    ]


def check_signal(workflow: Workflow[Any], signal: str, payload: Any) -> tuple[WaitFor, Any]:
    """The wait `signal` is for, and `payload` as its type says: ValueError for a signal the
    flow does not wait for, TypeError for a payload of another type."""
    wait = workflow.signals.get(signal)
    if wait is None:
        waited = ", ".join(sorted(workflow.signals)) or "none"
        raise ValueError(f"{workflow.name} waits for no signal {signal!r} (it waits for: {waited})")
    return wait, wait.decode(payload)


def check_input(workflow: Workflow[Any], workflow_input: object) -> None:
    """Raise TypeError unless `workflow_input` is of the workflow's input type."""
    if not isinstance(workflow_input, workflow.input_type):
        raise TypeError(
            f"{workflow.name} takes {workflow.input_type.__name__}, "
            f"not {type(workflow_input).__name__}"
        )
