"""The order-placement services as the fault-injection runs use them: each writes the effects
it applies into a `History`, where it applies them (after de-duplication), and some misbehave
on purpose for chosen orders.

Items say what a service does with an order: `book` ships, `rare` is backordered (the payment
is refunded), `poison` makes the fulfillment service crash every time (the step fails after its
retries and the payment is refunded). Customers in `DECLINED` have their card declined.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

from actors import Message, Request, idempotent
from coordination import History, HistoryRules, Rejected, RetryPolicy, Workflow
from coordination.scenarios.order_placement import (
    Charge,
    Charged,
    CreateOrder,
    EmailService,
    Fulfill,
    Fulfilled,
    FulfillmentService,
    MarkOrder,
    OrderCreated,
    OrderService,
    PaymentService,
    PlaceOrder,
    Refund,
    Refunded,
    Restock,
    Restocked,
    SendEmail,
    order_workflow,
)

__all__ = (
    "DECLINED",
    "RULES",
    "Effects",
    "LedgerEmail",
    "LedgerFulfillment",
    "LedgerOrders",
    "LedgerPayment",
    "PoisonError",
    "chaos_workflow",
)

DECLINED = frozenset({"declined"})

RULES = HistoryRules(
    undone_by={"charge": "refund", "ship": "restock"},
    on_completion=("create", "charge", "ship", "email:placed", "mark:placed"),
)


class Emailed(Message):
    order_id: str


class EmailAcknowledged(Request[Emailed]):
    """SendEmail, answered: the chaos workflow waits for it, so that it is retried."""

    to: str
    subject: str


class Marked(Message):
    order_id: str


class MarkAcknowledged(Request[Marked]):
    """MarkOrder, answered."""

    order_id: str
    status: str


class PoisonError(RuntimeError):
    """What the fulfillment service raises for a poison item, on every delivery."""


@dataclasses.dataclass
class Effects:
    """Where the services write, and how they misbehave."""

    history: History
    stall: Callable[[str], float] = lambda order_id: 0.0
    """Seconds the payment service sleeps before charging `order_id` the first time."""
    slow_undo: float = 0.0
    """Seconds each refund and restock takes: a window to cancel a compensating workflow."""


def _body(handler: Any) -> Any:
    """The undecorated handler of a base service (its `@idempotent` wrapper peeled off)."""
    return inspect.unwrap(handler)


class LedgerOrders(OrderService):
    def __init__(self, effects: Effects) -> None:
        super().__init__()
        self.effects = effects

    @idempotent
    async def create(self, msg: CreateOrder) -> OrderCreated:
        created: OrderCreated = await _body(OrderService.create)(self, msg)
        self.effects.history.effect(msg.order_id, "create")
        return created

    async def mark(self, msg: MarkOrder) -> None:
        if self.orders.get(msg.order_id) != msg.status:  # a state change is the effect
            self.effects.history.effect(msg.order_id, f"mark:{msg.status}")
        await OrderService.mark(self, msg)

    async def mark_acknowledged(self, msg: MarkAcknowledged) -> Marked:
        await self.mark(MarkOrder(msg.order_id, msg.status))
        return Marked(msg.order_id)


class LedgerPayment(PaymentService):
    def __init__(self, effects: Effects) -> None:
        super().__init__(declined=DECLINED)
        self.effects = effects
        self._stalled: set[str] = set()

    @idempotent
    async def charge(self, msg: Charge) -> Charged | Rejected:
        stall = self.effects.stall(msg.order_id)
        if stall and msg.order_id not in self._stalled:
            self._stalled.add(msg.order_id)
            await asyncio.sleep(stall)  # past the step's timeout: the answer comes late
        result: Charged | Rejected = await _body(PaymentService.charge)(self, msg)
        if isinstance(result, Charged):
            self.effects.history.effect(msg.order_id, "charge")
        return result

    @idempotent
    async def refund(self, msg: Refund) -> Refunded:
        if self.effects.slow_undo:
            await asyncio.sleep(self.effects.slow_undo)
        refunded: Refunded = await _body(PaymentService.refund)(self, msg)
        if refunded.amount:
            self.effects.history.effect(msg.order_id, "refund")
        return refunded


class LedgerFulfillment(FulfillmentService):
    def __init__(self, effects: Effects) -> None:
        super().__init__(stock={"book": 10**9})
        self.effects = effects

    @idempotent
    async def fulfill(self, msg: Fulfill) -> Fulfilled | Rejected:
        if msg.item == "poison":
            raise PoisonError(f"cannot handle order {msg.order_id}")
        result: Fulfilled | Rejected = await _body(FulfillmentService.fulfill)(self, msg)
        if isinstance(result, Fulfilled):
            self.effects.history.effect(msg.order_id, "ship")
        return result

    @idempotent
    async def restock(self, msg: Restock) -> Restocked:
        if self.effects.slow_undo:
            await asyncio.sleep(self.effects.slow_undo)
        restocked: Restocked = await _body(FulfillmentService.restock)(self, msg)
        if restocked.quantity:
            self.effects.history.effect(msg.order_id, "restock")
        return restocked


class LedgerEmail(EmailService):
    def __init__(self, effects: Effects) -> None:
        super().__init__()
        self.effects = effects

    @idempotent
    async def send(self, msg: SendEmail) -> None:
        await _body(EmailService.send)(self, msg)
        self.effects.history.effect(_order_of(msg.subject), f"email:{_kind_of(msg.subject)}")

    @idempotent
    async def send_acknowledged(self, msg: EmailAcknowledged) -> Emailed:
        await _body(EmailService.send)(self, SendEmail(msg.to, msg.subject))
        self.effects.history.effect(_order_of(msg.subject), f"email:{_kind_of(msg.subject)}")
        return Emailed(_order_of(msg.subject))


def _order_of(subject: str) -> str:
    return subject.split()[1]  # "order <id> placed" / "order <id> failed: ..."


def _kind_of(subject: str) -> str:
    return "placed" if subject.endswith(" placed") else "failed"


def _acknowledged(command: Any) -> Any:
    """The answered form of a told command."""
    if isinstance(command, SendEmail):
        return EmailAcknowledged(command.to, command.subject)
    if isinstance(command, MarkOrder):
        return MarkAcknowledged(command.order_id, command.status)
    return command


def chaos_workflow(step_timeout: float = 1.0, attempts: int = 8) -> Workflow[PlaceOrder]:
    """Order placement with every step acknowledged and retried through an outage.

    The email and the final mark are told (fire and forget) in the scenario: on core NATS a
    told message in a server that dies is lost, which is at-most-once by definition. Here
    they are requests, retried until answered, so every effect is at-least-once and, with
    the services' idempotency, applied once. Retries back off up to 2 s, so a step outlives
    an outage of several seconds before it counts as failed.
    """
    policy = RetryPolicy(attempts=attempts, backoff=0.1, multiplier=2.0, max_backoff=2.0)
    steps = [
        dataclasses.replace(
            step,
            command=step.command if step.wait else _then(step.command, _acknowledged),
            wait=True,
            retry=policy,
            timeout=step_timeout,
            # an email sent cannot be unsent, a mark is overwritten by the failure path
            nothing_to_undo=step.nothing_to_undo or step.compensation is None,
        )
        for step in order_workflow.steps
    ]
    return Workflow(
        "order-placement-chaos",
        PlaceOrder,
        steps,
        services={
            "order": LedgerOrders,
            "payment": LedgerPayment,
            "fulfillment": LedgerFulfillment,
            "email": LedgerEmail,
        },
        on_failure=order_workflow.on_failure,
    )


def _then(first: Callable[[Any], Any], then: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda context: then(first(context))
