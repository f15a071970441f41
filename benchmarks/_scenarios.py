"""The seeds' scenarios as benchmark workloads: their services, and inputs with a given share
of failures (half of each kind the scenario has)."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from actors import ActorSystem, Message, Request
from coordination import (
    Branch,
    ForEach,
    Parallel,
    Rejected,
    Step,
    SubWorkflow,
    Workflow,
    WorkflowContext,
)
from coordination.scenarios.order_placement import (
    HIGH_VALUE,
    EmailService,
    FraudService,
    FulfillmentService,
    OrderService,
    PaymentService,
    PlaceOrder,
    order_workflow,
    screened_order_workflow,
)
from coordination.scenarios.sysops_squad import (
    AssignmentService,
    BillingService,
    NotificationService,
    ResolutionService,
    SubmitTicket,
    SurveyService,
    TicketService,
    ValidationService,
    ticket_workflow,
)

from ._workflow_cases import Done, Job, Work, Worker, chain_workflow

__all__ = ("CONSTRUCTS", "DEFAULT_SCENARIOS", "SCENARIOS", "Scenario", "chain")

DECLINED = "mallory"
SUSPICIOUS = "eve"
UNDER_CONTRACT = "ann"
NO_CONTRACT = "eve"
CARD_DECLINED = "broke"
EXPERTS = 500
"""More experts than workflows in flight: the benchmark measures coordination, not a queue
for experts."""


@dataclass(frozen=True, slots=True)
class Scenario:
    """A workflow, how to start its services, and how to make its inputs."""

    name: str
    workflow: Workflow[Any]
    spawn: Callable[[ActorSystem], Awaitable[None]]
    make: Callable[[int, str | None], Any]
    """Input number n, failing with the given kind (None: succeeding)."""
    failures: tuple[str, ...]
    """The kinds of failure the scenario has."""

    def inputs(self, count: int, failure_rate: float, seed: int = 1) -> list[Any]:
        rng = random.Random(seed)
        made = []
        for number in range(count):
            failing = None
            if self.failures and rng.random() < failure_rate:
                failing = rng.choice(self.failures)
            made.append(self.make(number, failing))
        return made

    def link_cases(self) -> dict[str, Any]:
        """One input per case: the happy path and each kind of failure."""
        cases = {"completed": self.make(0, None)}
        for number, kind in enumerate(self.failures, start=1):
            cases[kind] = self.make(number, kind)
        return cases


async def _order_services(system: ActorSystem) -> None:
    await system.spawn(OrderService, name="order")
    await system.spawn(lambda: PaymentService(declined=frozenset({DECLINED})), name="payment")
    await system.spawn(
        lambda: FulfillmentService(stock={"book": 10**9, "rare": 0}), name="fulfillment"
    )
    await system.spawn(EmailService, name="email")


def _order(number: int, failing: str | None) -> PlaceOrder:
    customer = DECLINED if failing == "declined" else "ann"
    item = "rare" if failing == "backordered" else "book"
    return PlaceOrder(f"o{number}", customer, item, 1, 1000)


async def _screened_services(system: ActorSystem) -> None:
    await _order_services(system)
    await system.spawn(lambda: FraudService(suspicious=frozenset({SUSPICIOUS})), name="fraud")


def _screened_order(number: int, failing: str | None) -> PlaceOrder:
    """Every other order is of high value (screened); a suspicious customer's always is."""
    if failing == "fraud":
        return PlaceOrder(f"o{number}", SUSPICIOUS, "book", 1, HIGH_VALUE)
    order = _order(number, failing)
    amount = HIGH_VALUE if number % 2 else order.amount
    return PlaceOrder(order.order_id, order.customer, order.item, 1, amount)


async def _ticket_services(system: ActorSystem) -> None:
    experts = [f"expert{n}" for n in range(EXPERTS)]
    contracts = {UNDER_CONTRACT: "basic", CARD_DECLINED: "basic"}
    await system.spawn(TicketService, name="ticket")
    await system.spawn(lambda: ValidationService(contracts), name="validation")
    await system.spawn(lambda: AssignmentService(experts), name="assignment")
    await system.spawn(NotificationService, name="notification")
    await system.spawn(ResolutionService, name="resolution")
    await system.spawn(lambda: BillingService(declined=frozenset({CARD_DECLINED})), name="billing")
    await system.spawn(SurveyService, name="survey")


def _ticket(number: int, failing: str | None) -> SubmitTicket:
    customer = {"no_contract": NO_CONTRACT, "card_declined": CARD_DECLINED}.get(
        failing or "", UNDER_CONTRACT
    )
    return SubmitTicket(f"t{number}", customer, "printer on fire")


SCENARIOS: dict[str, Scenario] = {
    "order-placement": Scenario(
        "order-placement",
        order_workflow,
        _order_services,
        _order,
        ("declined", "backordered"),
    ),
    "sysops-ticket": Scenario(
        "sysops-ticket",
        ticket_workflow,
        _ticket_services,
        _ticket,
        ("no_contract", "card_declined"),
    ),
    "screened-order-placement": Scenario(
        "screened-order-placement",
        screened_order_workflow,
        _screened_services,
        _screened_order,
        ("declined", "backordered", "fraud"),
    ),
}

DEFAULT_SCENARIOS = ("order-placement", "sysops-ticket")
"""What `make bench` runs: the seeds' two scenarios (`--scenarios` adds the others)."""


class Undone(Message):
    number: int


class UndoWork(Request[Undone]):
    number: int


class Check(Request[Done | Rejected]):
    number: int


class UndoableWorker(Worker):
    """A worker whose work can be undone."""

    async def undo(self, msg: UndoWork) -> Undone:
        return Undone(msg.number)


class Checker(Worker):
    """The last step of a construct's workflow: refuses a job of a negative number."""

    async def check(self, msg: Check) -> Done | Rejected:
        return Rejected("refused") if msg.number < 0 else Done(msg.number)


def _worker_step(name: str, worker: int) -> Step:
    return Step(name, f"worker{worker}", _job, compensation=_undo)


def _job(context: WorkflowContext[Job]) -> Work:
    return Work(context.input.number)


def _undo(context: WorkflowContext[Job]) -> UndoWork:
    return UndoWork(context.input.number)


def _item(context: WorkflowContext[Job]) -> Work:
    return Work(context.item)


def _undo_item(context: WorkflowContext[Job]) -> UndoWork:
    return UndoWork(context.item)


def _check(context: WorkflowContext[Job]) -> Check:
    return Check(context.input.number)


_CHECK = Step("s3", "worker3", _check, nothing_to_undo=True)
"""What ends each construct's workflow: refused for a failing input (a negative number),
so that everything before it is compensated."""

_SERVICES: dict[str, type[Worker]] = {
    "worker0": UndoableWorker,
    "worker1": UndoableWorker,
    "worker2": UndoableWorker,
    "worker3": Checker,
}


def _construct(name: str, flow: list[Any]) -> Scenario:
    """A synthetic workflow of four services around one construct of the language, its last
    step refusing failing inputs: what the construct costs under each strategy, beside
    `chain-4`, and the links its failure path adds."""
    workflow = Workflow(f"construct-{name}", Job, [*flow, _CHECK], services=_SERVICES)

    async def spawn(system: ActorSystem) -> None:
        for service, kind in _SERVICES.items():
            await system.spawn(kind, name=service)

    def make(number: int, failing: str | None) -> Job:
        return Job(-number - 1 if failing else number)

    return Scenario(workflow.name, workflow, spawn, make, ("refused",))


_PAIR = Workflow(
    "construct-child",
    Job,
    [_worker_step("c1", 1), _worker_step("c2", 2)],
    services={f"worker{n}": UndoableWorker for n in (1, 2)},
)

CONSTRUCTS: dict[str, Scenario] = {
    scenario.name: scenario
    for scenario in (
        _construct(
            "branch",
            [
                _worker_step("s0", 0),
                Branch(
                    "even",
                    lambda c: c.input.number % 2 == 0,
                    then=[_worker_step("s1", 1)],
                    otherwise=[_worker_step("s2", 2)],
                ),
            ],
        ),
        _construct(
            "parallel",
            [
                _worker_step("s0", 0),
                Parallel("fork", [[_worker_step("s1", 1)], [_worker_step("s2", 2)]]),
            ],
        ),
        _construct(
            "for-each",
            [
                _worker_step("s0", 0),
                ForEach(
                    "each",
                    lambda c: [c.input.number, c.input.number + 1],
                    Step("item", "worker1", _item, compensation=_undo_item),
                ),
            ],
        ),
        _construct(
            "sub-workflow",
            [
                _worker_step("s0", 0),
                SubWorkflow("child", _PAIR, lambda c: c.input),
            ],
        ),
    )
}
"""Each construct of the workflow language in a four-service workflow (`--scenarios
constructs` runs them all, beside `chain-4`, the same services in a plain sequence)."""


def chain(steps: int) -> Scenario:
    """A synthetic chain of `steps` request steps, each to its own service, never failing:
    what a step costs, with nothing else in the way."""

    async def spawn(system: ActorSystem) -> None:
        for number in range(steps):
            await system.spawn(Worker, name=f"worker{number}")

    return Scenario(f"chain-{steps}", chain_workflow(steps), spawn, lambda n, _: Job(n), ())
