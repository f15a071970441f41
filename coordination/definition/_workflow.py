"""A workflow, declared once as data: steps, compensations, retries, timeouts, failure path.

Strategies read a definition; they never add behaviour of their own to it. A service signals
a business failure (the card was declined, the item is backordered) by replying `Rejected`;
an exception, a timeout or no responder is a technical failure, retried per the step's policy
with the same message id, so that an idempotent service never acts twice.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import msgspec

from actors import Actor, Message, Request

from .._errors import InvalidWorkflowError

__all__ = (
    "ALL",
    "ANY",
    "FAIL",
    "Branch",
    "BranchEnd",
    "Compute",
    "Failure",
    "ForEach",
    "Join",
    "Notify",
    "Parallel",
    "Rejected",
    "Replies",
    "RetryPolicy",
    "Sleep",
    "Step",
    "WaitFor",
    "Workflow",
    "WorkflowContext",
    "at_least",
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
    `reads`, the failure once there is one, and, for the step of a `ForEach`, the item it
    is for."""

    workflow_id: str
    input: In
    results: dict[str, Any] = field(default_factory=dict)
    failure: Failure | None = None
    item: Any = None
    """The item of a `ForEach`'s list the step is performed (or compensated) for."""


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
    then: Sequence[Node] = ()
    otherwise: Sequence[Node] = ()
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


@dataclass(frozen=True, slots=True)
class Join:
    """When a `Parallel` goes on: once `count` of its branches have ended (None: all of
    them). Use `ALL`, `ANY` or `at_least(n)`."""

    count: int | None = None

    def needed(self, branches: int) -> int:
        """How many of `branches` branches must end for the join to be met."""
        return branches if self.count is None else self.count

    def __repr__(self) -> str:
        if self.count is None:
            return "ALL"
        return "ANY" if self.count == 1 else f"at_least({self.count})"


ALL = Join()
"""A `Parallel` goes on once every branch has ended."""
ANY = Join(1)
"""A `Parallel` goes on once one branch has ended (the first to end wins)."""


def at_least(n: int) -> Join:
    """A `Parallel` goes on once `n` of its branches have ended."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InvalidWorkflowError(f"at_least({n!r}): a join needs at least one branch")
    return Join(n)


@dataclass(frozen=True, slots=True)
class Parallel:
    """Branches that run at the same time: each is a sequence of nodes (steps, branches,
    computes, waits, sleeps, further parallels), and the instance goes on after the
    parallel once `join` is met (`ALL`, the default; `ANY`; `at_least(n)`).

    The branches left running when the join is met stop: the step under way in each ends
    (its effect is kept, and compensated if the instance turns around later), and nothing
    after it in that branch starts. A failure in any branch turns the whole instance around:
    no further step starts in the other branches, the steps under way end (their answers
    land), then every completed step of every branch is compensated, newest first.

    A later step may read a branch's replies only after an `ALL` join (with `ANY` or
    `at_least`, which branches ended is not known in advance).
    """

    name: str
    branches: Sequence[Sequence[Node]]
    join: Join = ALL

    def __post_init__(self) -> None:
        branches: object = self.branches
        if not isinstance(branches, Sequence) or not all(
            isinstance(branch, Sequence) and not isinstance(branch, str) for branch in branches
        ):
            raise InvalidWorkflowError(
                f"parallel {self.name!r}: branches is a list of lists of steps"
            )
        object.__setattr__(self, "branches", tuple(tuple(branch) for branch in self.branches))
        if not isinstance(self.join, Join):
            raise InvalidWorkflowError(
                f"parallel {self.name!r}: join is ALL, ANY or at_least(n), not {self.join!r}"
            )

    @property
    def needed(self) -> int:
        """How many branches must end for the join to be met."""
        return self.join.needed(len(self.branches))


@dataclass(frozen=True, slots=True)
class BranchEnd:
    """The end of branch `index` of the parallel `parallel`: what follows a branch's last
    node (an internal marker of the linked flow, never declared)."""

    parallel: str
    index: int

    @property
    def name(self) -> str:
        return f"{self.parallel}:{self.index}"


MAX_ITEMS = 10_000
"""The most items a `ForEach` takes by default (a longer list fails the instance there)."""


@dataclass(frozen=True, slots=True)
class ForEach:
    """One step per item of a list (a map): `over(context)` builds the list from the input
    and the replies named in `reads`, and `step` runs once per item, its builders (and its
    compensation's) seeing the item as `context.item`. Up to `max_concurrency` items run at
    once (None: all of them).

    The items' replies, in the order of the list, are the for-each's reply
    (`results[name]`, a list, which later steps may read); each item's own reply is
    `results["<name>[<index>]"]`, and each item has its own message id
    (`<workflow id>.<name>[<index>]`), so an idempotent service acts once per item.

    A refused or failed item turns the instance around as a step would: no further item
    starts, the items under way end, then every completed item (and every completed step
    before them) is compensated, newest first. `over` must be a pure function of what it
    reads (strategies work it out again where they need an item); a list longer than
    `max_items` fails the instance at the for-each.
    """

    name: str
    over: Callable[[WorkflowContext[Any]], Sequence[Any]]
    step: Step
    reads: tuple[str, ...] = ()
    max_concurrency: int | None = None
    max_items: int = MAX_ITEMS

    def __post_init__(self) -> None:
        if not callable(self.over):
            raise InvalidWorkflowError(
                f"for-each {self.name!r}: over must be a function that builds the list"
            )
        if not isinstance(self.step, Step):
            raise InvalidWorkflowError(f"for-each {self.name!r}: step must be a Step")
        if self.max_concurrency is not None and self.max_concurrency < 1:
            raise InvalidWorkflowError(f"for-each {self.name!r}: max_concurrency must be >= 1")
        if self.max_items < 0:
            raise InvalidWorkflowError(f"for-each {self.name!r}: max_items must be >= 0")
        # the step's builders read what `over` reads too: it is worked out where they run
        reads = tuple(dict.fromkeys((*self.reads, *self.step.reads)))
        object.__setattr__(self, "step", dataclasses.replace(self.step, reads=reads))

    def item_name(self, index: int) -> str:
        """The name of item `index`'s step (and of its reply)."""
        return f"{self.name}[{index}]"

    def item_context(
        self,
        context: WorkflowContext[Any],
        index: int,
        *,
        undo: bool = False,
        items: list[Any] | None = None,
    ) -> WorkflowContext[Any]:
        """The context item `index`'s builders see (its compensation's, with `undo`): the
        replies the step reads (and, undoing it, the item's own reply under the step's
        name), and the item, from `items` (the list, when the caller has it) or worked out
        again from the list `over` builds of `context`."""
        step = self.step
        results = context.results
        own = self.item_name(index)
        visible = Replies(own, {name: results[name] for name in step.reads if name in results})
        if undo and step.wait and own in results:
            visible[step.name] = results[own]
        if items is None:
            items = self.items(builder_context(context, self.reads, self.name))
        if index >= len(items):
            raise LookupError(f"for-each {self.name!r}: no item {index} any more")
        return WorkflowContext(
            context.workflow_id, context.input, visible, context.failure, items[index]
        )

    def items(self, context: WorkflowContext[Any]) -> list[Any]:
        """The list `over` builds for `context` (TypeError for something else than a list or
        a tuple, ValueError for one longer than `max_items`)."""
        items = self.over(context)
        if not isinstance(items, (list, tuple)):
            raise TypeError(
                f"for-each {self.name!r}: over() must return a list, not {type(items).__name__}"
            )
        if len(items) > self.max_items:
            raise ValueError(
                f"for-each {self.name!r}: {len(items)} items, more than its max_items "
                f"({self.max_items})"
            )
        return list(items)


@dataclass(frozen=True, slots=True)
class SubWorkflow:
    """A child workflow, started and awaited as a step: `input(context)` builds its input
    from the parent's input and the replies named in `reads`, and the child runs as an
    instance of its own (its own id, status and compensation) under a strategy of the
    parent's kind.

    Its reply is the child's `WorkflowResult`. A child that does not complete (it failed,
    compensated itself, was cancelled) fails the step, as a refusal would; cancelling the
    parent while the child runs cancels the child. A completed child is compensated when the
    parent turns around later: its own completed steps are undone, newest first.
    """

    name: str
    workflow: Workflow[Any]
    input: Callable[[WorkflowContext[Any]], Any]
    reads: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.workflow, Workflow):
            raise InvalidWorkflowError(f"sub-workflow {self.name!r}: workflow must be a Workflow")
        if not callable(self.input):
            raise InvalidWorkflowError(
                f"sub-workflow {self.name!r}: input must be a function that builds the "
                "child's input"
            )

    def build(self, context: WorkflowContext[Any]) -> Any:
        """The child's input for `context` (TypeError for one of another type)."""
        child_input = self.input(context)
        check_input(self.workflow, child_input)
        return child_input


Node = Step | Branch | Compute | WaitFor | Sleep | Parallel | ForEach | SubWorkflow
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

    undoable: bool

    def __init__(
        self,
        name: str,
        input_type: type[In],
        steps: Sequence[Node],
        *,
        services: Mapping[str, type[Actor]],
        on_failure: Sequence[Notify] = (),
        done_elsewhere: Sequence[Step | Compute | WaitFor | Sleep | SubWorkflow] = (),
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
        self.parallels: dict[str, Parallel] = {
            n.name: n for n in _walk(self.flow) if isinstance(n, Parallel)
        }
        self.for_eaches: dict[str, ForEach] = {
            n.name: n for n in _walk(self.flow) if isinstance(n, ForEach)
        }
        self.subworkflows: dict[str, SubWorkflow] = {
            n.name: n for n in _walk(self.flow) if isinstance(n, SubWorkflow)
        }
        self.item_steps: frozenset[str] = frozenset(f.step.name for f in self.for_eaches.values())
        """The steps a `ForEach` runs per item (never by their own name)."""
        self.leaf_nodes: tuple[Step | Compute | WaitFor | Sleep | SubWorkflow, ...] = tuple(
            _leaves_in(self.flow)
        )
        """The steps, computes, waits and sleeps, in the order of the flow."""
        self.leaves: tuple[str, ...] = tuple(n.name for n in self.leaf_nodes)
        """Their names."""
        self.linear = not (
            self.branches
            or self.computes
            or self.waits
            or self.sleeps
            or self.parallels
            or self.for_eaches
            or self.subworkflows
        )
        """Whether the flow is a plain sequence of steps (every instance takes one path)."""
        self.done_elsewhere = tuple(done_elsewhere)
        """Steps another strategy runs before this workflow (a hybrid's core): their replies
        come in with `start(..., results=...)`, typed as their services declare."""
        self.services = dict(services)
        self.on_failure = tuple(on_failure)
        self._validate()
        self.by_name: dict[str, Step] = {step.name: step for step in self.steps}
        """The steps by name."""
        self.compensable: frozenset[str] = frozenset(
            [step.name for step in self.steps if step.compensation is not None]
            + [sub.name for sub in self.subworkflows.values() if sub.workflow.undoable]
        )
        """The steps that have a compensation, and the sub-workflows that can be undone."""
        self.undoable = bool(self.compensable)
        """Whether a completed instance has anything to undo."""
        self.next_step: dict[str, Node | BranchEnd | None] = {}
        """What follows each node on its path: a node, the end of a parallel's branch, or
        None (the end)."""
        self.enclosing: dict[str, tuple[str, ...]] = {}
        """The parallels each node inside one runs in, outermost first."""
        self.entry: dict[tuple[str, bool], Node | BranchEnd | None] = {}
        """Per branch and path (True: `then`), what the path starts with: its first node, or,
        for an empty path, what follows the branch."""
        self._link(self.flow, None, ())
        self.first: Node = self.flow[0]
        self.input_decoder = msgspec.msgpack.Decoder(input_type)

    def _link(
        self, nodes: Sequence[Node], after: Node | BranchEnd | None, inside: tuple[str, ...]
    ) -> None:
        """Say what follows each node of `nodes`, `after` following the last; `inside` names
        the parallels they run in."""
        for index, node in enumerate(nodes):
            following = nodes[index + 1] if index + 1 < len(nodes) else after
            if inside:
                self.enclosing[node.name] = inside
            if isinstance(node, Branch):
                self.entry[(node.name, True)] = node.then[0] if node.then else following
                self.entry[(node.name, False)] = node.otherwise[0] if node.otherwise else following
                self._link(node.then, following, inside)
                self._link(node.otherwise, following, inside)
                continue
            self.next_step[node.name] = following
            if isinstance(node, Parallel):
                for number, branch in enumerate(node.branches):
                    self._link(branch, BranchEnd(node.name, number), (*inside, node.name))

    def node(self, name: str) -> Node:
        """The step, branch or compute named `name` (KeyError for none)."""
        found: Node | None = (
            self.by_name.get(name)
            or self.computes.get(name)
            or self.waits.get(name)
            or self.sleeps.get(name)
            or self.parallels.get(name)
            or self.for_eaches.get(name)
            or self.subworkflows.get(name)
        )
        return found if found is not None else self.branches[name]

    def item(self, name: str) -> tuple[ForEach, int] | None:
        """The for-each and the index of the item step `name` (`<for-each>[<index>]`), or
        None for a name that is not one."""
        base, bracket, rest = name.partition("[")
        if not bracket or not rest.endswith("]"):
            return None
        for_each = self.for_eaches.get(base)
        index = rest[:-1]
        if for_each is None or not index.isdigit():
            return None
        return for_each, int(index)

    def step_of(self, name: str) -> Step:
        """The step named `name`, or, for an item of a for-each, the step it runs per item
        (KeyError for none)."""
        step = self.by_name.get(name)
        if step is not None:
            return step
        item = self.item(name)
        if item is None:
            raise KeyError(name)
        return item[0].step

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
        names += [
            n.name
            for n in _walk(self.flow)
            if isinstance(n, (Sleep, Parallel, ForEach, SubWorkflow))
        ]
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
            if "[" in name or "]" in name:
                raise InvalidWorkflowError(
                    f"workflow {self.name!r}: step name {name!r}: [ and ] name a for-each's items"
                )
        for branch in _branches_in(self.flow):
            if not branch.then and not branch.otherwise:
                raise InvalidWorkflowError(
                    f"workflow {self.name!r}: branch {branch.name!r} has no step on either path"
                )
        for parallel in self.parallels.values():
            self._check_parallel(parallel)
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

    def _check_parallel(self, parallel: Parallel) -> None:
        where = f"workflow {self.name!r}: parallel {parallel.name!r}"
        if not parallel.branches:
            raise InvalidWorkflowError(f"{where} has no branch")
        if not all(parallel.branches):
            raise InvalidWorkflowError(f"{where} has an empty branch")
        if parallel.needed > len(parallel.branches):
            raise InvalidWorkflowError(
                f"{where}: its join {parallel.join!r} can never be met, with "
                f"{len(parallel.branches)} branches"
            )

    def _check_reads(self, nodes: Sequence[Node], answered: frozenset[str]) -> frozenset[str]:
        """Check that each node reads only replies given on every path to it; return the
        replies given on every path through `nodes`."""
        for node in nodes:
            kind = type(node).__name__.lower()
            if isinstance(node, ForEach):
                for name in node.step.reads:  # what over() and the step's builders read
                    if name not in answered:
                        raise InvalidWorkflowError(
                            f"workflow {self.name!r}: for-each {node.name!r} reads {name!r}, "
                            "which is not a step that answers (wait=True) on every path "
                            "before it"
                        )
                if node.step.wait:  # its reply: the items' replies, in order
                    answered |= {node.name}
                continue
            if isinstance(node, Parallel):  # a branch reads what came before the parallel
                given = [self._check_reads(branch, answered) for branch in node.branches]
                if node.join.count is None:  # every branch ended: all their replies
                    answered = answered.union(*given)
                else:  # which ones is not known: only what all of them give
                    answered = answered.union(frozenset.intersection(*given))
                continue
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
            elif isinstance(node, (Compute, WaitFor, SubWorkflow)) or (
                isinstance(node, Step) and node.wait
            ):
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
            if isinstance(node, ForEach):  # its other items can fail beside each one
                step = node.step
                if step.wait and step.compensation is None and not step.nothing_to_undo:
                    raise InvalidWorkflowError(
                        f"workflow {self.name!r}: for-each {node.name!r}: its step "
                        f"{step.name!r} has no compensation, but another item can fail; give "
                        "it one, or say nothing_to_undo=True"
                    )
                continue
            if isinstance(node, Parallel):  # the other branches run beside each one
                for number, branch in enumerate(node.branches):
                    others = tuple(b for n, b in enumerate(node.branches) if n != number)
                    self._check_compensations(branch, (*others, *rest))
                continue
            if isinstance(node, (Compute, WaitFor, Sleep, SubWorkflow)):
                continue  # nothing to undo (a child undoes itself, as its definition says)
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
        elif isinstance(node, Parallel):
            for branch in node.branches:
                yield from _walk(branch)
        elif isinstance(node, ForEach):
            yield node.step


def _steps_in(nodes: Sequence[Node]) -> list[Step]:
    return [node for node in _walk(nodes) if isinstance(node, Step)]


def _branches_in(nodes: Sequence[Node]) -> list[Branch]:
    return [node for node in _walk(nodes) if isinstance(node, Branch)]


def _computes_in(nodes: Sequence[Node]) -> list[Compute]:
    return [node for node in _walk(nodes) if isinstance(node, Compute)]


def _leaves_in(nodes: Sequence[Node]) -> list[Step | Compute | WaitFor | Sleep | SubWorkflow]:
    return [node for node in _walk(nodes) if not isinstance(node, (Branch, Parallel, ForEach))]


def _may_fail_in(nodes: Sequence[Node]) -> list[Step | Compute | SubWorkflow]:
    """The steps that answer and the computes in `nodes`: what may turn an instance around."""
    return [
        node
        for node in _walk(nodes)
        if isinstance(node, (Compute, SubWorkflow)) or (isinstance(node, Step) and node.wait)
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
