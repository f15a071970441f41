"""Order placement, from chapter 11: Order Placement, Payment, Fulfillment and Email.

Happy path: the order is created, the payment charged, the item fulfilled, the customer
emailed. Payment rejected: the customer is told and the order marked failed. Item backordered:
the payment is refunded, the customer told, the order marked failed. A cancellation undoes
whatever completed: refund, and restock a fulfilled item.

`screened_order_workflow` is the same as the seeds describe it grown: an order of
`HIGH_VALUE` or more is screened for fraud first (a branch: a fraud screen says no to a
suspicious customer), then the payment is charged and the item reserved at the same time (a
parallel: a refused charge stops the reservation, and whichever completed is undone).

The services are plain actors: they know nothing of the strategy that runs them. Payment is
idempotent by message id, so a retried charge is not charged twice.
"""

from __future__ import annotations

import msgspec

from actors import Actor, Message, Request, idempotent

from ..definition._workflow import (
    Branch,
    Notify,
    Parallel,
    Rejected,
    RetryPolicy,
    Step,
    Workflow,
    WorkflowContext,
)

__all__ = (
    "HIGH_VALUE",
    "EmailService",
    "FraudService",
    "FulfillmentService",
    "OrderService",
    "PaymentService",
    "PlaceOrder",
    "order_workflow",
    "screened_order_workflow",
)


class PlaceOrder(msgspec.Struct, frozen=True):
    """The workflow's input."""

    order_id: str
    customer: str
    item: str
    quantity: int
    amount: int
    """In cents."""


# -- messages ----------------------------------------------------------------------------


class OrderCreated(Message):
    order_id: str


class CreateOrder(Request[OrderCreated]):
    order_id: str
    customer: str


class MarkOrder(Message):
    order_id: str
    status: str


class Charged(Message):
    order_id: str
    amount: int


class Charge(Request[Charged | Rejected]):
    order_id: str
    customer: str
    amount: int


class Refunded(Message):
    order_id: str
    amount: int


class Refund(Request[Refunded]):
    order_id: str


class Fulfilled(Message):
    order_id: str


class Fulfill(Request[Fulfilled | Rejected]):
    order_id: str
    item: str
    quantity: int


class Restocked(Message):
    order_id: str
    quantity: int


class Restock(Request[Restocked]):
    order_id: str
    item: str


class Cleared(Message):
    order_id: str


class Screen(Request[Cleared | Rejected]):
    order_id: str
    customer: str
    amount: int


class SendEmail(Message):
    to: str
    subject: str


# -- services ----------------------------------------------------------------------------


class OrderService(Actor):
    def __init__(self) -> None:
        self.orders: dict[str, str] = {}

    @idempotent
    async def create(self, msg: CreateOrder) -> OrderCreated:
        self.orders[msg.order_id] = "pending"
        return OrderCreated(msg.order_id)

    async def mark(self, msg: MarkOrder) -> None:
        self.orders[msg.order_id] = msg.status


class PaymentService(Actor):
    """Charges cards; customers in `declined` have their card declined."""

    def __init__(self, declined: frozenset[str] = frozenset()) -> None:
        self.declined = declined
        self.charges: dict[str, int] = {}
        self.refunds: dict[str, int] = {}

    @idempotent
    async def charge(self, msg: Charge) -> Charged | Rejected:
        if msg.customer in self.declined:
            return Rejected("card declined")
        self.charges[msg.order_id] = self.charges.get(msg.order_id, 0) + msg.amount
        return Charged(msg.order_id, msg.amount)

    @idempotent
    async def refund(self, msg: Refund) -> Refunded:
        amount = self.charges.get(msg.order_id, 0) - self.refunds.get(msg.order_id, 0)
        self.refunds[msg.order_id] = self.refunds.get(msg.order_id, 0) + amount
        return Refunded(msg.order_id, amount)


class FulfillmentService(Actor):
    """Ships from stock; an item short of stock is backordered."""

    def __init__(self, stock: dict[str, int] | None = None) -> None:
        self.stock = dict(stock or {})
        self.shipped: dict[str, int] = {}

    @idempotent
    async def fulfill(self, msg: Fulfill) -> Fulfilled | Rejected:
        if self.stock.get(msg.item, 0) < msg.quantity:
            return Rejected("backordered")
        self.stock[msg.item] -= msg.quantity
        self.shipped[msg.order_id] = msg.quantity
        return Fulfilled(msg.order_id)

    @idempotent
    async def restock(self, msg: Restock) -> Restocked:
        quantity = self.shipped.pop(msg.order_id, 0)
        self.stock[msg.item] = self.stock.get(msg.item, 0) + quantity
        return Restocked(msg.order_id, quantity)


class FraudService(Actor):
    """Screens orders; customers in `suspicious` do not pass."""

    def __init__(self, suspicious: frozenset[str] = frozenset()) -> None:
        self.suspicious = suspicious
        self.screened: list[str] = []

    @idempotent
    async def screen(self, msg: Screen) -> Cleared | Rejected:
        self.screened.append(msg.order_id)
        if msg.customer in self.suspicious:
            return Rejected("suspected fraud")
        return Cleared(msg.order_id)


class EmailService(Actor):
    """Sends each email once, even when a coordinator that restarted sends it again."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    @idempotent
    async def send(self, msg: SendEmail) -> None:
        self.sent.append((msg.to, msg.subject))


# -- the workflow ------------------------------------------------------------------------

Context = WorkflowContext[PlaceOrder]


def _failure_subject(context: Context) -> str:
    failure = context.failure
    why = failure.reason if failure is not None else "unknown"
    return f"order {context.input.order_id} failed: {why}"


def _failed_status(context: Context) -> str:
    failure = context.failure
    return "cancelled" if failure is not None and failure.reason == "cancelled" else "failed"


order_workflow: Workflow[PlaceOrder] = Workflow(
    "order-placement",
    PlaceOrder,
    [
        Step(
            "create_order",
            "order",
            lambda c: CreateOrder(c.input.order_id, c.input.customer),
            nothing_to_undo=True,  # the failure path marks the order failed
        ),
        Step(
            "payment",
            "payment",
            lambda c: Charge(c.input.order_id, c.input.customer, c.input.amount),
            compensation=lambda c: Refund(c.input.order_id),
            retry=RetryPolicy(attempts=3, backoff=0.01),
            timeout=2.0,
        ),
        Step(
            "fulfillment",
            "fulfillment",
            lambda c: Fulfill(c.input.order_id, c.input.item, c.input.quantity),
            compensation=lambda c: Restock(c.input.order_id, c.input.item),
        ),
        Step(
            "confirmation",
            "email",
            lambda c: SendEmail(c.input.customer, f"order {c.input.order_id} placed"),
            wait=False,
        ),
        Step(
            "mark_placed",
            "order",
            lambda c: MarkOrder(c.input.order_id, "placed"),
            wait=False,
        ),
    ],
    services={
        "order": OrderService,
        "payment": PaymentService,
        "fulfillment": FulfillmentService,
        "email": EmailService,
    },
    on_failure=[
        Notify("email", lambda c: SendEmail(c.input.customer, _failure_subject(c))),
        Notify("order", lambda c: MarkOrder(c.input.order_id, _failed_status(c))),
    ],
)


HIGH_VALUE = 100_000
"""Orders of this amount (in cents) or more are screened for fraud."""

_steps = {step.name: step for step in order_workflow.steps}

screened_order_workflow: Workflow[PlaceOrder] = Workflow(
    "screened-order-placement",
    PlaceOrder,
    [
        _steps["create_order"],
        Branch(
            "high_value",
            lambda c: c.input.amount >= HIGH_VALUE,
            then=[
                Step(
                    "fraud_check",
                    "fraud",
                    lambda c: Screen(c.input.order_id, c.input.customer, c.input.amount),
                    nothing_to_undo=True,  # a screen changes nothing
                )
            ],
        ),
        Parallel("reserve", [[_steps["payment"]], [_steps["fulfillment"]]]),
        _steps["confirmation"],
        _steps["mark_placed"],
    ],
    services={**order_workflow.services, "fraud": FraudService},
    on_failure=order_workflow.on_failure,
)
