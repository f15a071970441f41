"""A workflow, declared once as data: steps, compensations, retries, timeouts, failure path.

Strategies read a definition; they never add behaviour of their own to it. A service signals
a business failure (the card was declined, the item is backordered) by replying `Rejected`;
an exception, a timeout or no responder is a technical failure, retried per the step's policy
with the same message id, so that an idempotent service never acts twice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import msgspec

from actors import Actor, Message, Request

from .._errors import InvalidWorkflowError

__all__ = (
    "Failure",
    "Notify",
    "Rejected",
    "Replies",
    "RetryPolicy",
    "Step",
    "Workflow",
    "WorkflowContext",
    "builder_context",
    "check_input",
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
class Notify:
    """A command sent to `service` on the failure path (after compensation). Its builder
    reads the input and `context.failure`; no replies."""

    service: str
    command: Builder


class Workflow(Generic[In]):
    """A named, validated workflow over an input of type `input_type`.

    `services` maps the service names the steps use to the actor classes that implement them;
    `on_failure` lists what is sent once compensation is done (tell the customer, mark the
    order failed); `done_elsewhere` names the steps that run before this workflow under
    another strategy (see `Hybrid`).
    """

    def __init__(
        self,
        name: str,
        input_type: type[In],
        steps: Sequence[Step],
        *,
        services: Mapping[str, type[Actor]],
        on_failure: Sequence[Notify] = (),
        done_elsewhere: Sequence[Step] = (),
    ) -> None:
        self.name = name
        self.input_type = input_type
        self.steps = tuple(steps)
        self.done_elsewhere = tuple(done_elsewhere)
        """Steps another strategy runs before this workflow (a hybrid's core): their replies
        come in with `start(..., results=...)`, typed as their services declare."""
        self.services = dict(services)
        self.on_failure = tuple(on_failure)
        self._validate()
        self.by_name: dict[str, Step] = {step.name: step for step in self.steps}
        """The steps by name."""
        following = (*self.steps[1:], None)
        self.next_step: dict[str, Step | None] = {
            step.name: after for step, after in zip(self.steps, following, strict=True)
        }
        """The step after each step (None after the last)."""
        self.input_decoder = msgspec.msgpack.Decoder(input_type)

    def __repr__(self) -> str:
        return f"<Workflow {self.name!r}: {' -> '.join(s.name for s in self.steps)}>"

    def step(self, name: str) -> Step:
        """The step named `name` (KeyError for none)."""
        return self.by_name[name]

    def _validate(self) -> None:
        if not self.name or not self.name.replace("-", "").replace("_", "").isalnum():
            raise InvalidWorkflowError(f"workflow name {self.name!r}: letters, digits, - and _")
        if not self.steps:
            raise InvalidWorkflowError(f"workflow {self.name!r} has no step")
        names = [step.name for step in self.steps]
        for name in names:
            if not name or names.count(name) > 1:
                raise InvalidWorkflowError(
                    f"workflow {self.name!r}: step name {name!r} is empty or used twice"
                )
        used = [(s.name, s.service) for s in (*self.done_elsewhere, *self.steps)]
        used += [("on_failure", n.service) for n in self.on_failure]
        for step_name, service in used:
            if service not in self.services:
                raise InvalidWorkflowError(
                    f"workflow {self.name!r}: {step_name!r} uses service {service!r}, which is "
                    f"not among its services ({', '.join(sorted(self.services))})"
                )
        answered = {s.name for s in self.done_elsewhere if s.wait}
        for step in self.steps:
            for name in step.reads:
                if name not in answered:
                    raise InvalidWorkflowError(
                        f"workflow {self.name!r}: step {step.name!r} reads {name!r}, which is "
                        "not an earlier step that answers (wait=True)"
                    )
            if step.wait:
                answered.add(step.name)
        for index, step in enumerate(self.steps):
            later = [s for s in self.steps[index + 1 :] if s.wait]
            if step.wait and later and step.compensation is None and not step.nothing_to_undo:
                raise InvalidWorkflowError(
                    f"workflow {self.name!r}: step {step.name!r} has no compensation, but "
                    f"{later[0].name!r} after it can fail; give it one, or say "
                    "nothing_to_undo=True"
                )


def check_input(workflow: Workflow[Any], workflow_input: object) -> None:
    """Raise TypeError unless `workflow_input` is of the workflow's input type."""
    if not isinstance(workflow_input, workflow.input_type):
        raise TypeError(
            f"{workflow.name} takes {workflow.input_type.__name__}, "
            f"not {type(workflow_input).__name__}"
        )
