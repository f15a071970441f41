"""The seeds' scenarios as benchmark workloads: their services, and inputs with a given share
of failures (half of each kind the scenario has)."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from actors import ActorSystem
from coordination import Workflow
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

from ._workflow_cases import Job, Worker, chain_workflow

__all__ = ("DEFAULT_SCENARIOS", "SCENARIOS", "Scenario", "chain")

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


def chain(steps: int) -> Scenario:
    """A synthetic chain of `steps` request steps, each to its own service, never failing:
    what a step costs, with nothing else in the way."""

    async def spawn(system: ActorSystem) -> None:
        for number in range(steps):
            await system.spawn(Worker, name=f"worker{number}")

    return Scenario(f"chain-{steps}", chain_workflow(steps), spawn, lambda n, _: Job(n), ())
