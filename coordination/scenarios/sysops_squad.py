"""The Sysops Squad ticket workflow, from the chapter's saga.

A customer submits a ticket; it is validated (the customer must hold a support contract), an
expert is assigned and notified, the expert resolves the problem; then the customer is billed
for the time, sent a survey and told the ticket is done, and the ticket is closed.

Assignment can fail: when no expert is free, the Assignment service raises `NoExpertFree`, a
technical failure that the step retries with backoff (an expert may be released meanwhile).
When the retries are spent the failure path escalates: the manager is notified and the ticket
marked `escalated`. A customer without a contract is refused (`Rejected`), told so, and the
ticket marked `rejected`.

The team's decision (a hybrid): orchestrate Ticket -> Validation -> Assignment -> Resolution,
then choreograph what follows `TicketResolved` (expert release, billing, survey, completion
notice), with a front controller for status:

```python
Hybrid(system, ticket_workflow, core=Mediator, rest=FrontController, handoff=TICKET_RESOLVED)
```

`accepted_ticket_workflow` is the ticket as the seeds tell it in full: once the expert has
resolved it, the customer accepts the fix (a signal, `CUSTOMER_ACCEPTS`; a week without an
answer counts as accepted), a refusal unwinds the ticket, and the survey goes out a day after
the bill.
"""

from __future__ import annotations

import msgspec

from actors import Actor, Message, Request, idempotent

from ..definition._workflow import (
    Compute,
    Notify,
    Rejected,
    RetryPolicy,
    Sleep,
    Step,
    WaitFor,
    Workflow,
    WorkflowContext,
)

__all__ = (
    "CUSTOMER_ACCEPTS",
    "TICKET_RESOLVED",
    "Acceptance",
    "AssignmentService",
    "BillingService",
    "NoExpertFree",
    "NotificationService",
    "ResolutionService",
    "SubmitTicket",
    "SurveyService",
    "TicketService",
    "ValidationService",
    "accepted_ticket_workflow",
    "ticket_workflow",
)

TICKET_RESOLVED = "resolve"
"""The step after which the seed's hybrid hands the workflow over to choreography."""


class SubmitTicket(msgspec.Struct, frozen=True):
    """The workflow's input."""

    ticket_id: str
    customer: str
    problem: str


# -- messages ----------------------------------------------------------------------------


class TicketCreated(Message):
    ticket_id: str


class CreateTicket(Request[TicketCreated]):
    ticket_id: str
    customer: str
    problem: str


class MarkTicket(Message):
    ticket_id: str
    status: str


class Validated(Message):
    ticket_id: str
    plan: str


class ValidateTicket(Request[Validated | Rejected]):
    ticket_id: str
    customer: str


class ExpertAssigned(Message):
    ticket_id: str
    expert: str


class AssignExpert(Request[ExpertAssigned]):
    ticket_id: str
    problem: str


class Unassigned(Message):
    ticket_id: str


class UnassignExpert(Request[Unassigned]):
    ticket_id: str


class ReleaseExpert(Message):
    ticket_id: str


class Resolved(Message):
    ticket_id: str
    expert: str
    minutes: int


class ResolveTicket(Request[Resolved]):
    ticket_id: str
    expert: str
    problem: str


class Billed(Message):
    ticket_id: str
    amount: int


class BillCustomer(Request[Billed | Rejected]):
    ticket_id: str
    customer: str
    plan: str
    minutes: int


class SendSurvey(Message):
    ticket_id: str
    customer: str


class Notice(Message):
    to: str
    text: str


class NoExpertFree(Exception):
    """Raised by the Assignment service when every expert is busy."""


# -- services ----------------------------------------------------------------------------


class TicketService(Actor):
    def __init__(self) -> None:
        self.tickets: dict[str, str] = {}

    async def create(self, msg: CreateTicket) -> TicketCreated:
        self.tickets[msg.ticket_id] = "open"
        return TicketCreated(msg.ticket_id)

    async def mark(self, msg: MarkTicket) -> None:
        self.tickets[msg.ticket_id] = msg.status


class ValidationService(Actor):
    """Customers with a support contract, and their plans."""

    def __init__(self, contracts: dict[str, str] | None = None) -> None:
        self.contracts = dict(contracts or {})

    async def validate(self, msg: ValidateTicket) -> Validated | Rejected:
        plan = self.contracts.get(msg.customer)
        if plan is None:
            return Rejected("no support contract")
        return Validated(msg.ticket_id, plan)


class AssignmentService(Actor):
    """Assigns a free expert; an expert is busy from assignment to release."""

    def __init__(self, experts: list[str] | None = None) -> None:
        self.free = list(experts or [])
        self.assigned: dict[str, str] = {}
        self.history: list[tuple[str, str]] = []

    @idempotent
    async def assign(self, msg: AssignExpert) -> ExpertAssigned:
        if msg.ticket_id in self.assigned:
            return ExpertAssigned(msg.ticket_id, self.assigned[msg.ticket_id])
        if not self.free:
            raise NoExpertFree(f"no expert free for {msg.ticket_id}")
        expert = self.free.pop(0)
        self.assigned[msg.ticket_id] = expert
        self.history.append((msg.ticket_id, expert))
        return ExpertAssigned(msg.ticket_id, expert)

    @idempotent
    async def unassign(self, msg: UnassignExpert) -> Unassigned:
        self._release(msg.ticket_id)
        return Unassigned(msg.ticket_id)

    async def release(self, msg: ReleaseExpert) -> None:
        self._release(msg.ticket_id)

    def _release(self, ticket_id: str) -> None:
        expert = self.assigned.pop(ticket_id, None)
        if expert is not None:
            self.free.append(expert)


class ResolutionService(Actor):
    """The expert fixes the problem; how long it took decides the bill."""

    def __init__(self) -> None:
        self.resolved: dict[str, str] = {}

    @idempotent
    async def resolve(self, msg: ResolveTicket) -> Resolved:
        self.resolved[msg.ticket_id] = msg.expert
        return Resolved(msg.ticket_id, msg.expert, minutes=10 + len(msg.problem) % 50)


class BillingService(Actor):
    """Bills the time: premium plans pay nothing, cards in `declined` are refused."""

    RATE = 200
    """Cents per minute."""

    def __init__(self, declined: frozenset[str] = frozenset()) -> None:
        self.declined = declined
        self.invoices: dict[str, int] = {}

    @idempotent
    async def bill(self, msg: BillCustomer) -> Billed | Rejected:
        if msg.customer in self.declined:
            return Rejected("card declined")
        amount = 0 if msg.plan == "premium" else msg.minutes * self.RATE
        self.invoices[msg.ticket_id] = self.invoices.get(msg.ticket_id, 0) + amount
        return Billed(msg.ticket_id, amount)


class SurveyService(Actor):
    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, msg: SendSurvey) -> None:
        self.sent.append(msg.ticket_id)


class NotificationService(Actor):
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    async def notify(self, msg: Notice) -> None:
        self.sent.append((msg.to, msg.text))


# -- the workflow ------------------------------------------------------------------------

Context = WorkflowContext[SubmitTicket]

MANAGER = "manager"


def _failure_notice(context: Context) -> Notice:
    ticket = context.input.ticket_id
    failure = context.failure
    if failure is not None and failure.step == "assign" and failure.technical:
        return Notice(MANAGER, f"escalated: {ticket} waits for an expert")
    why = failure.reason if failure is not None else "unknown"
    return Notice(context.input.customer, f"ticket {ticket} not handled: {why}")


def _failed_status(context: Context) -> str:
    failure = context.failure
    if failure is None:
        return "failed"
    if failure.reason == "cancelled":
        return "cancelled"
    if failure.step == "validate":
        return "rejected"
    if failure.step == "assign" and failure.technical:
        return "escalated"
    return "failed"


def _resolve(c: Context) -> ResolveTicket:
    assigned: ExpertAssigned = c.results["assign"]
    return ResolveTicket(c.input.ticket_id, assigned.expert, c.input.problem)


def _bill(c: Context) -> BillCustomer:
    validated: Validated = c.results["validate"]
    resolved: Resolved = c.results["resolve"]
    return BillCustomer(c.input.ticket_id, c.input.customer, validated.plan, resolved.minutes)


ticket_workflow: Workflow[SubmitTicket] = Workflow(
    "sysops-ticket",
    SubmitTicket,
    [
        Step(
            "create_ticket",
            "ticket",
            lambda c: CreateTicket(c.input.ticket_id, c.input.customer, c.input.problem),
            nothing_to_undo=True,  # the failure path marks the ticket
        ),
        Step(
            "validate",
            "validation",
            lambda c: ValidateTicket(c.input.ticket_id, c.input.customer),
            nothing_to_undo=True,
        ),
        Step(
            "assign",
            "assignment",
            lambda c: AssignExpert(c.input.ticket_id, c.input.problem),
            compensation=lambda c: UnassignExpert(c.input.ticket_id),
            # no expert free: retried, an expert may be released meanwhile; then escalated
            retry=RetryPolicy(attempts=6, backoff=0.02, multiplier=2.0, max_backoff=0.5),
        ),
        Step(
            "notify_expert",
            "notification",
            lambda c: Notice(c.results["assign"].expert, f"ticket {c.input.ticket_id}"),
            wait=False,
            reads=("assign",),
        ),
        Step(TICKET_RESOLVED, "resolution", _resolve, nothing_to_undo=True, reads=("assign",)),
        # -- TicketResolved: what follows is choreographed in the seed's hybrid -----------
        Step(
            "release_expert",
            "assignment",
            lambda c: ReleaseExpert(c.input.ticket_id),
            wait=False,
        ),
        Step("bill", "billing", _bill, reads=("validate", TICKET_RESOLVED)),
        Step(
            "survey",
            "survey",
            lambda c: SendSurvey(c.input.ticket_id, c.input.customer),
            wait=False,
        ),
        Step(
            "completion_notice",
            "notification",
            lambda c: Notice(c.input.customer, f"ticket {c.input.ticket_id} resolved"),
            wait=False,
        ),
        Step(
            "close_ticket",
            "ticket",
            lambda c: MarkTicket(c.input.ticket_id, "closed"),
            wait=False,
        ),
    ],
    services={
        "ticket": TicketService,
        "validation": ValidationService,
        "assignment": AssignmentService,
        "notification": NotificationService,
        "resolution": ResolutionService,
        "billing": BillingService,
        "survey": SurveyService,
    },
    on_failure=[
        Notify("notification", _failure_notice),
        Notify("ticket", lambda c: MarkTicket(c.input.ticket_id, _failed_status(c))),
    ],
)


CUSTOMER_ACCEPTS = "customer-accepts"
"""The signal by which the customer says whether the fix works."""
WEEK = 7 * 24 * 3600.0
DAY = 24 * 3600.0


class Acceptance(msgspec.Struct, frozen=True):
    """The customer's answer: does the fix work?"""

    accepted: bool
    note: str = ""


def _accepted(context: WorkflowContext[SubmitTicket]) -> Acceptance | Rejected:
    answer: Acceptance = context.results["acceptance"]
    if not answer.accepted:
        return Rejected(f"the customer did not accept the fix: {answer.note}")
    return answer


_ticket_steps = {step.name: step for step in ticket_workflow.steps}

accepted_ticket_workflow: Workflow[SubmitTicket] = Workflow(
    "sysops-accepted-ticket",
    SubmitTicket,
    [
        *(
            _ticket_steps[name]
            for name in ("create_ticket", "validate", "assign", "notify_expert", TICKET_RESOLVED)
        ),
        WaitFor(
            "acceptance",
            CUSTOMER_ACCEPTS,
            Acceptance,
            timeout=WEEK,
            on_timeout=Acceptance(accepted=True, note="no answer within a week"),
        ),
        Compute("accepted", _accepted, reads=("acceptance",), returns=Acceptance),
        _ticket_steps["release_expert"],
        _ticket_steps["bill"],
        Sleep("survey_delay", seconds=DAY),
        *(_ticket_steps[name] for name in ("survey", "completion_notice", "close_ticket")),
    ],
    services=ticket_workflow.services,
    on_failure=ticket_workflow.on_failure,
)
