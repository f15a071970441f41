"""The events choreographed services exchange, and the data some of them carry.

A choreography moves a workflow forward with `Advance` (perform step k), backward with
`Unwind` (compensate step k), and ends it with `Ended`, sent to whoever waits for the outcome.
Their tags are namespaced (`corps.Advance`): a sidecar adds them to a service's own messages.
What an event carries depends on the strategy: the stamp of stamp coupling and the domain data
of the front controller and event sourcing travel in `Carried`; query-all's events carry ids
only, each service keeping its own part.
"""

from __future__ import annotations

import msgspec

from actors import Message

from ..core import Progress, StepEnd
from ..definition._workflow import RetryPolicy

__all__ = (
    "EVENT_RETRY",
    "Advance",
    "Audit",
    "Begin",
    "Cancel",
    "Carried",
    "Ended",
    "Handover",
    "Hold",
    "Landed",
    "Parked",
    "RecordQuery",
    "RecordReply",
    "StepStarted",
    "Unwind",
    "WorkflowEvent",
    "advance_id",
    "unwind_id",
)


EVENT_RETRY = RetryPolicy(attempts=12, backoff=0.1, max_backoff=2.0)
"""How often a choreography tries again what it must not lose to a bus that loses messages
(an unacknowledged event, a query-all participant that did not answer): for about a
minute with the default step timeout of 5 s."""


class Carried(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    """Workflow data travelling with an event: the input and the replies so far, as the
    msgpack the services produced (passed on without decoding), and, for stamp coupling, the
    trail of what happened to the workflow (`step:status` entries)."""

    input: msgspec.Raw
    results: dict[str, msgspec.Raw] = {}
    trail: list[str] = []


class Advance(Message, tag="corps.Advance", omit_defaults=True):
    """Perform step number `step` of `workflow_id`."""

    workflow_id: str
    step: int
    data: Carried | None = None
    attempt: int = 1
    """Which try this is (a sidecar retries a failed step by sending its event again)."""
    route: str = ""
    """The choreography it belongs to, `<strategy>.<workflow>` (services share sidecars)."""
    ack: str = ""
    """Where to acknowledge it once handled, when events are acknowledged (`_acks`)."""
    progress: Progress | None = None
    """Where the instance stands, in a flow with branches (the way it took); None for a
    plain sequence of steps, where the step says it all."""
    report: bool = False
    """The process that started the instance drives it for now (the branches of a parallel
    run): the step's end goes back there (`Landed`), which decides what follows."""
    item: int = -1
    """For the step of a `ForEach`: the index of the item it is performed for."""


class Unwind(Message, tag="corps.Unwind", omit_defaults=True):
    """Compensate step number `step`. `progress` is where the instance stands (the core's
    state: why it turned around, what is compensated so far and what is left to undo)."""

    workflow_id: str
    step: int
    progress: Progress
    data: Carried | None = None
    attempt: int = 1
    route: str = ""
    ack: str = ""
    """Where to acknowledge it once handled, when events are acknowledged (`_acks`)."""
    item: int = -1
    """For the step of a `ForEach`: the index of the item it is compensated for."""


def advance_id(event: Advance) -> str:
    """The message id of `event` among the acknowledged events in flight: the same for every
    resend of it, distinct for a retry of its step (and for each item of a for-each)."""
    if event.item >= 0:
        return f"{event.workflow_id}.advance.{event.step}.{event.attempt}.{event.item}"
    return f"{event.workflow_id}.advance.{event.step}.{event.attempt}"


def unwind_id(event: Unwind) -> str:
    """The message id of `event` (see `advance_id`)."""
    if event.item >= 0:
        return f"{event.workflow_id}.unwind.{event.step}.{event.attempt}.{event.item}"
    return f"{event.workflow_id}.unwind.{event.step}.{event.attempt}"


class Ended(Message, tag="corps.Ended", omit_defaults=True):
    """The workflow is over: `progress` says how (the core's final state)."""

    workflow_id: str
    progress: Progress
    data: Carried | None = None
    ack: str = ""
    """Where to acknowledge it once handled, when events are acknowledged (`_acks`)."""


class Parked(Message, tag="corps.Parked", omit_defaults=True):
    """The instance waits for a signal (the wait `step`): it goes to the process that started
    it, where signals come, and stays there until its signal does."""

    workflow_id: str
    step: str
    progress: Progress
    data: Carried | None = None
    ack: str = ""
    """Where to acknowledge it once handled, when events are acknowledged (`_acks`)."""


class Landed(Message, tag="corps.Landed", omit_defaults=True):
    """A step the starter drives (see `Advance.report`) ended at its service: how it ended
    (answered, refused, failed, or cancelled before it started), and the data the events
    carry from then on."""

    workflow_id: str
    happened: StepEnd
    data: Carried | None = None
    ack: str = ""
    """Where to acknowledge it once handled, when events are acknowledged (`_acks`)."""


class Handover(Message, tag="corps.Handover", omit_defaults=True):
    """The instance reached a parallel: it goes to the process that started it, which drives
    the branches and joins them (the nodes `progress` says are under way are to start)."""

    workflow_id: str
    progress: Progress
    data: Carried | None = None
    ack: str = ""
    """Where to acknowledge it once handled, when events are acknowledged (`_acks`)."""


class Cancel(Message, tag="corps.Cancel", omit_defaults=True):
    """Stop `workflow_id` at the next step this service sees, and unwind it."""

    workflow_id: str
    route: str = ""
    ack: str = ""
    """Where to acknowledge it once handled, when events are acknowledged (`_acks`)."""


class Hold(Message, tag="corps.Hold"):
    """Park `workflow_id`'s next events in this service until released (`held=False`):
    an operator paused the instance."""

    workflow_id: str
    route: str = ""
    held: bool = True


class Audit(Message, tag="corps.Audit"):
    """An operator's action, for the front controller to add to the instance's record."""

    workflow_id: str
    entry: str


class Begin(Message, tag="corps.Begin", omit_defaults=True):
    """A front controller's order to record and start a workflow."""

    workflow_id: str
    data: Carried
    ack: str = ""
    """Where to acknowledge it once handled, when events are acknowledged (`_acks`)."""


class StepStarted(Message, tag="corps.StepStarted"):
    """A service's call back to the front controller: it started step number `step`."""

    workflow_id: str
    step: int
    completed: tuple[str, ...] | None = None
    """The steps done before it, in a flow with branches (else the steps before it)."""


class RecordQuery(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    """Query-all: what do you know of `workflow_id`? With `wanted` (step names) or
    `want_input`, a participant that holds none of that stays silent, where a service runs
    in several processes and each holds the records of the steps it ran."""

    workflow_id: str
    wanted: list[str] = []
    want_input: bool = False


class RecordReply(msgspec.Struct, frozen=True, gc=False):
    """One participant's own record of a workflow: its steps' states (`started`, `done`,
    `failed`, `compensated`), the replies of its steps, the request if it took it, the
    failure it saw, and the outcome if it ended the workflow."""

    found: bool
    states: dict[str, str] = {}
    results: dict[str, msgspec.Raw] = {}
    request: list[msgspec.Raw] = []
    """The workflow's input, when this participant took the request (msgspec.Raw cannot be
    optional, so it is a list of none or one)."""
    failed_step: str | None = None
    reason: str | None = None
    technical: bool = False
    outcome: str | None = None
    attention: list[str] = []


WorkflowEvent = Advance | Unwind | Ended | Cancel
"""What an event log keeps of a choreographed workflow."""
