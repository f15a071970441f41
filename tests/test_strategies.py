"""The strategy-equivalence suite: the chapter's order placement and its error cases under
every strategy, on both buses. The same business outcome and the same final state of every
service are expected whatever coordinates them; only what `status` can see differs."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import Any

import anyio
import msgspec
import pytest

from actors import Actor, ActorSystem, Link, idempotent
from brokers import Bus, Msg, NatsBus
from coordination import (
    EventSourced,
    FrontController,
    InvalidWorkflowError,
    Mediator,
    Notify,
    Outcome,
    QueryAll,
    RetryPolicy,
    StampCoupled,
    Step,
    Strategy,
    UnknownWorkflowError,
    Workflow,
    WorkflowContext,
    WorkflowStatus,
)
from coordination._remote import owner_of
from coordination.choreography._events import Advance
from coordination.scenarios.order_placement import (
    Charge,
    Charged,
    EmailService,
    Fulfill,
    Fulfilled,
    FulfillmentService,
    OrderService,
    PaymentService,
    PlaceOrder,
    Refund,
    Refunded,
    Rejected,
    order_workflow,
)

from .helpers import until

pytestmark = pytest.mark.anyio


StrategyFactory = Callable[[ActorSystem, Workflow[PlaceOrder]], Strategy[PlaceOrder]]

STRATEGIES: dict[str, StrategyFactory] = {
    "mediator": Mediator,
    "front_controller": FrontController,
    "front_controller+callbacks": lambda s, w: FrontController(s, w, callbacks=True),
    "stamp_coupled": StampCoupled,
    "stamp_coupled+bus": lambda s, w: StampCoupled(s, w, sidecars=False),
    "query_all": QueryAll,
    "query_all+bus": lambda s, w: QueryAll(s, w, sidecars=False),
    "event_sourced": EventSourced,
}
"""Every strategy, run on every test that takes `strategy_name`. The choreographies run their
adapters as sidecars inside the services' mailboxes; `+bus` runs them as actors of their own
that reach the services over the bus (how a service in another process is wrapped)."""

SEES_THE_CURRENT_STEP = {
    "mediator",
    "front_controller+callbacks",
    "query_all",
    "query_all+bus",
    "event_sourced",
}
"""The strategies whose `status` can tell the step an instance is in (the design's table)."""


@pytest.fixture(params=sorted(STRATEGIES))
def strategy_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@dataclass
class Shop:
    system: ActorSystem
    mediator: Strategy[PlaceOrder]
    orders: OrderService
    payment: PaymentService
    fulfillment: FulfillmentService
    email: EmailService


def order(number: int, customer: str = "ann", item: str = "book", quantity: int = 1) -> PlaceOrder:
    return PlaceOrder(f"o{number}", customer, item, quantity, amount=1000)


@contextlib.asynccontextmanager
async def open_shop(
    bus: Bus,
    *,
    payment: PaymentService | None = None,
    fulfillment: FulfillmentService | None = None,
    workflow: Workflow[PlaceOrder] = order_workflow,
    strategy: str = "mediator",
    record_links: bool = False,
) -> AsyncIterator[Shop]:
    orders, email = OrderService(), EmailService()
    payment = payment or PaymentService(declined=frozenset({"mallory"}))
    fulfillment = fulfillment or FulfillmentService(stock={"book": 1000, "rare": 0})
    async with ActorSystem(bus, record_links=record_links) as system:
        for name, service in [
            ("order", orders),
            ("payment", payment),
            ("fulfillment", fulfillment),
            ("email", email),
        ]:
            await system.spawn(lambda service=service: service, name=name)
        async with STRATEGIES[strategy](system, workflow) as mediator:
            yield Shop(system, mediator, orders, payment, fulfillment, email)


@pytest.fixture
async def shop(bus: Bus, strategy_name: str) -> AsyncIterator[Shop]:
    async with open_shop(bus, strategy=strategy_name) as opened:
        yield opened


async def reach_step(mediator: Strategy[PlaceOrder], workflow_id: str, step: str) -> WorkflowStatus:
    """Poll the status until the instance is in `step`."""
    with anyio.fail_after(5):
        while (status := await mediator.status(workflow_id)).current_step != step:  # noqa: ASYNC110 - the status API is what is under test
            await anyio.sleep(0.005)
    return status


class GatedFulfillment(FulfillmentService):
    """Holds every fulfillment until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__(stock={"book": 10})
        self.gate = anyio.Event()
        self.entered = anyio.Event()

    async def fulfill(self, msg: Fulfill) -> Fulfilled | Rejected:
        self.entered.set()
        await self.gate.wait()
        return await super().fulfill(msg)


class SlowFirstPayment(PaymentService):
    """Its first charge takes longer than the step's timeout: the mediator retries while the
    charge is still being made."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    @idempotent
    async def charge(self, msg: Charge) -> Charged | Rejected:
        self.calls += 1
        if self.calls == 1:
            await anyio.sleep(0.3)
        self.charges[msg.order_id] = self.charges.get(msg.order_id, 0) + msg.amount
        return Charged(msg.order_id, msg.amount)


async def test_happy_path(shop: Shop) -> None:
    workflow_id = await shop.mediator.start(order(1))
    result = await shop.mediator.result(workflow_id, timeout=5)
    assert result.outcome is Outcome.COMPLETED
    assert result.failure is None
    assert result.results["payment"] == Charged("o1", 1000)
    await shop.system.idle()  # the steps nobody waits for are handled too
    assert shop.orders.orders.get("o1") == "placed"
    assert shop.payment.charges == {"o1": 1000}
    assert shop.fulfillment.stock["book"] == 999
    assert shop.email.sent == [("ann", "order o1 placed")]
    status = await shop.mediator.status(workflow_id)
    assert status.outcome is Outcome.COMPLETED
    assert status.completed_steps == (
        "create_order",
        "payment",
        "fulfillment",
        "confirmation",
        "mark_placed",
    )
    assert status.unknown == frozenset()  # the mediator knows everything


async def test_payment_rejected_notifies_and_marks_the_order_failed(shop: Shop) -> None:
    workflow_id = await shop.mediator.start(order(2, customer="mallory"))
    result = await shop.mediator.result(workflow_id, timeout=5)
    assert result.outcome is Outcome.FAILED  # nothing to undo
    assert result.failure is not None
    assert (result.failure.step, result.failure.reason) == ("payment", "card declined")
    assert not result.failure.technical
    await shop.system.idle()  # the failure notices are handled too
    assert shop.orders.orders.get("o2") == "failed"
    assert shop.payment.charges == {}
    assert shop.fulfillment.shipped == {}
    assert shop.email.sent == [("mallory", "order o2 failed: card declined")]


async def test_backorder_refunds_the_payment_then_notifies(shop: Shop) -> None:
    workflow_id = await shop.mediator.start(order(3, item="rare"))
    result = await shop.mediator.result(workflow_id, timeout=5)
    assert result.outcome is Outcome.COMPENSATED
    assert result.failure is not None
    assert result.failure.reason == "backordered"
    status = await shop.mediator.status(workflow_id)
    assert status.compensated_steps == ("payment",)
    assert shop.payment.charges == {"o3": 1000}
    assert shop.payment.refunds == {"o3": 1000}  # every refund matches a charge
    await until(lambda: shop.orders.orders.get("o3") == "failed")
    assert shop.email.sent == [("ann", "order o3 failed: backordered")]


async def test_status_sees_what_its_pattern_sees(bus: Bus, strategy_name: str) -> None:
    fulfillment = GatedFulfillment()
    async with open_shop(bus, fulfillment=fulfillment, strategy=strategy_name) as shop:
        workflow_id = await shop.mediator.start(order(4))
        with anyio.fail_after(5):
            await fulfillment.entered.wait()
        if strategy_name in SEES_THE_CURRENT_STEP:
            status = await reach_step(shop.mediator, workflow_id, "fulfillment")
            assert status.completed_steps == ("create_order", "payment")
            assert "current_step" not in status.unknown
        else:  # the front controller without call backs, stamp coupling: blind until the end
            status = await shop.mediator.status(workflow_id)
            assert status.current_step is None
            assert status.completed_steps is None
            assert {"current_step", "completed_steps"} <= status.unknown
        assert status.outcome is Outcome.RUNNING
        assert status.strategy == strategy_name.split("+")[0]
        fulfillment.gate.set()
        result = await shop.mediator.result(workflow_id, timeout=5)
        assert result.outcome is Outcome.COMPLETED
        ended = await shop.mediator.status(workflow_id)
        assert ended.unknown == frozenset()  # the end is known to every strategy
        assert ended.completed_steps is not None
        assert len(ended.completed_steps) == 5


async def test_a_timed_out_step_is_retried_without_charging_twice(
    bus: Bus, strategy_name: str
) -> None:
    payment_step = replace(order_workflow.step("payment"), timeout=0.1)
    steps = [payment_step if s.name == "payment" else s for s in order_workflow.steps]
    quick = Workflow(
        "quick-orders",
        PlaceOrder,
        steps,
        services=order_workflow.services,
        on_failure=order_workflow.on_failure,
    )
    payment = SlowFirstPayment()
    async with open_shop(bus, payment=payment, workflow=quick, strategy=strategy_name) as shop:
        workflow_id = await shop.mediator.start(order(5))
        result = await shop.mediator.result(workflow_id, timeout=10)
        assert result.outcome is Outcome.COMPLETED
        assert payment.calls == 1  # the retry got the first answer: same message id
        assert payment.charges == {"o5": 1000}


async def test_cancel_compensates_what_completed(bus: Bus, strategy_name: str) -> None:
    fulfillment = GatedFulfillment()
    async with open_shop(bus, fulfillment=fulfillment, strategy=strategy_name) as shop:
        workflow_id = await shop.mediator.start(order(6))
        with anyio.fail_after(5):
            await fulfillment.entered.wait()
        assert await shop.mediator.cancel(workflow_id)
        fulfillment.gate.set()
        result = await shop.mediator.result(workflow_id, timeout=5)
        # The step under way finishes, then everything done is undone in reverse order.
        assert result.outcome is Outcome.CANCELLED
        status = await shop.mediator.status(workflow_id)
        assert status.compensated_steps == ("fulfillment", "payment")
        assert shop.payment.refunds == {"o6": 1000}
        assert fulfillment.stock["book"] == 10
        await until(lambda: shop.orders.orders.get("o6") == "cancelled")
        assert shop.email.sent == [("ann", "order o6 failed: cancelled")]
        assert not await shop.mediator.cancel(workflow_id)  # it has ended


async def test_hundreds_of_concurrent_workflows(shop: Shop) -> None:
    customers = ["mallory" if n % 5 == 0 else "ann" for n in range(300)]
    ids = [await shop.mediator.start(order(n, customer=c)) for n, c in enumerate(customers)]
    results = [await shop.mediator.result(i, timeout=30) for i in ids]
    outcomes = [r.outcome for r in results]
    assert outcomes.count(Outcome.FAILED) == 60
    assert outcomes.count(Outcome.COMPLETED) == 240
    assert len(shop.payment.charges) == 240
    assert sum(shop.payment.charges.values()) == 240 * 1000
    assert shop.fulfillment.stock["book"] == 1000 - 240


async def test_unknown_workflow_ids_are_refused(shop: Shop) -> None:
    with pytest.raises(UnknownWorkflowError):
        await shop.mediator.status("order-placement-nope")
    with pytest.raises(UnknownWorkflowError):
        await shop.mediator.result("order-placement-nope")
    with pytest.raises(TypeError, match="PlaceOrder"):
        await shop.mediator.start(Charged("x", 1))  # type: ignore[arg-type]


class Nobody(Actor):
    pass


def test_definitions_are_validated_when_built() -> None:
    step = Step("a", "svc", lambda c: Charged("x", 1))
    with pytest.raises(InvalidWorkflowError, match="used twice"):
        Workflow("w", PlaceOrder, [step, step], services={"svc": Nobody})
    with pytest.raises(InvalidWorkflowError, match="service 'svc'"):
        Workflow("w", PlaceOrder, [step], services={"other": Nobody})
    with pytest.raises(InvalidWorkflowError, match="'a' has no compensation"):
        Workflow("w", PlaceOrder, [step, Step("b", "svc", step.command)], services={"svc": Nobody})
    with pytest.raises(InvalidWorkflowError, match="no step"):
        Workflow("w", PlaceOrder, [], services={})
    with pytest.raises(InvalidWorkflowError, match="reads 'b', which is not a step that answers"):
        Workflow(
            "w",
            PlaceOrder,
            [
                Step("a", "svc", step.command, reads=("b",), nothing_to_undo=True),
                replace(step, name="b"),
            ],
            services={"svc": Nobody},
        )
    told = Step("told", "svc", step.command, wait=False)
    with pytest.raises(InvalidWorkflowError, match="reads 'told'"):
        Workflow("w", PlaceOrder, [told, replace(step, reads=("told",))], services={"svc": Nobody})
    with pytest.raises(InvalidWorkflowError, match="'mail'"):
        Workflow(
            "w",
            PlaceOrder,
            [step],
            services={"svc": Nobody},
            on_failure=[Notify("mail", step.command)],
        )


def order_variant(name: str, step: str, **changes: Any) -> Workflow[PlaceOrder]:
    """Order placement with one step changed."""
    steps = [replace(s, **changes) if s.name == step else s for s in order_workflow.steps]
    return Workflow(
        name,
        PlaceOrder,
        steps,
        services=order_workflow.services,
        on_failure=order_workflow.on_failure,
    )


async def test_a_failing_command_builder_fails_the_workflow_not_the_strategy(
    bus: Bus, strategy_name: str
) -> None:
    def broken(context: WorkflowContext[PlaceOrder]) -> Fulfill:
        raise KeyError("no warehouse for this item")

    buggy = order_variant("buggy-orders", "fulfillment", command=broken)
    async with open_shop(bus, workflow=buggy, strategy=strategy_name) as shop:
        result = await shop.mediator.result(await shop.mediator.start(order(7)), timeout=5)
        assert result.outcome is Outcome.COMPENSATED
        assert result.failure is not None
        assert result.failure.technical
        assert "building the command failed: KeyError" in result.failure.reason
        assert shop.payment.refunds == {"o7": 1000}
        # the strategy is still running: the next order goes the same way, refund included
        again = await shop.mediator.result(await shop.mediator.start(order(8)), timeout=5)
        assert again.outcome is Outcome.COMPENSATED
        assert shop.payment.refunds == {"o7": 1000, "o8": 1000}


async def test_waiting_for_a_command_without_a_reply_type_fails_the_workflow(
    bus: Bus, strategy_name: str
) -> None:
    """A step marked `wait` whose command is a plain Message (no reply type): a definition
    bug that only shows when the command is built. The workflow fails with the reason and
    compensates; it does not wait for an answer that cannot come."""
    buggy = order_variant("waits-for-email", "confirmation", wait=True, nothing_to_undo=True)
    async with open_shop(bus, workflow=buggy, strategy=strategy_name) as shop:
        result = await shop.mediator.result(await shop.mediator.start(order(3)), timeout=5)
        assert result.outcome is Outcome.COMPENSATED
        assert result.failure is not None
        assert result.failure.step == "confirmation"
        assert "SendEmail is waited for: it must subclass actors.Request" in result.failure.reason
        assert shop.payment.refunds == {"o3": 1000}
        assert shop.fulfillment.shipped == {}


MEDIATOR = "mediator.order-placement"
CHAPTER_LINKS = {
    # figure 11-4: the happy path
    "completed": {
        Link(MEDIATOR, "order", "CreateOrder", request=True),
        Link(MEDIATOR, "payment", "Charge", request=True),
        Link(MEDIATOR, "fulfillment", "Fulfill", request=True),
        Link(MEDIATOR, "email", "SendEmail", request=False),
        Link(MEDIATOR, "order", "MarkOrder", request=False),
    },
    # figure 11-5: payment rejected
    "rejected": {
        Link(MEDIATOR, "order", "CreateOrder", request=True),
        Link(MEDIATOR, "payment", "Charge", request=True),
        Link(MEDIATOR, "email", "SendEmail", request=False),
        Link(MEDIATOR, "order", "MarkOrder", request=False),
    },
    # figure 11-6: backordered, the payment refunded
    "backordered": {
        Link(MEDIATOR, "order", "CreateOrder", request=True),
        Link(MEDIATOR, "payment", "Charge", request=True),
        Link(MEDIATOR, "fulfillment", "Fulfill", request=True),
        Link(MEDIATOR, "payment", "Refund", request=True),
        Link(MEDIATOR, "email", "SendEmail", request=False),
        Link(MEDIATOR, "order", "MarkOrder", request=False),
    },
}


@pytest.mark.parametrize(
    ("case", "placed"),
    [
        ("completed", PlaceOrder("o9", "ann", "book", 1, 1000)),
        ("rejected", PlaceOrder("o9", "mallory", "book", 1, 1000)),
        ("backordered", PlaceOrder("o9", "ann", "rare", 1, 1000)),
    ],
)
async def test_the_mediator_uses_the_chapters_links(
    bus: Bus, case: str, placed: PlaceOrder
) -> None:
    async with open_shop(bus, record_links=True) as shop:
        workflow_id = await shop.mediator.start(placed)
        await shop.mediator.result(workflow_id, timeout=5)
        links = shop.system.links
        assert links is not None
        used = {link for link in links.links if link.sender == MEDIATOR}
        assert used == CHAPTER_LINKS[case]
        diagram = links.sequence_diagram(workflow_id)
        assert diagram.splitlines()[1] == "    mediator_order_placement->>order: CreateOrder"


async def test_every_order_ends_consistent_under_a_concurrent_mix(
    bus: Bus, strategy_name: str
) -> None:
    """A history check in the manner of Jepsen: 300 concurrent orders, some cards declined,
    stock running out half way; each order's effects must match its outcome."""
    rng = random.Random(7)
    stock = 150
    fulfillment = FulfillmentService(stock={"book": stock})
    async with open_shop(bus, fulfillment=fulfillment, strategy=strategy_name) as shop:
        placed = [
            order(n, customer=rng.choice(["ann", "bob", "mallory"]), quantity=rng.choice([1, 2]))
            for n in range(300)
        ]
        ids = await asyncio.gather(*(shop.mediator.start(p) for p in placed))
        results = await asyncio.gather(*(shop.mediator.result(i, timeout=60) for i in ids))
        await until(lambda: len(shop.orders.orders) == 300)
        await until(lambda: len(shop.email.sent) == 300)
        await until(lambda: "pending" not in shop.orders.orders.values())
    charges, refunds = shop.payment.charges, shop.payment.refunds
    for p, result in zip(placed, results, strict=True):
        charged, refunded = charges.get(p.order_id, 0), refunds.get(p.order_id, 0)
        shipped = fulfillment.shipped.get(p.order_id, 0)
        if result.outcome is Outcome.COMPLETED:
            assert (charged, refunded, shipped) == (p.amount, 0, p.quantity), p
            assert shop.orders.orders[p.order_id] == "placed"
        elif result.outcome is Outcome.FAILED:
            assert p.customer == "mallory", p
            assert (charged, refunded, shipped) == (0, 0, 0), p
            assert shop.orders.orders[p.order_id] == "failed"
        else:
            assert result.outcome is Outcome.COMPENSATED, p
            assert result.failure is not None
            assert result.failure.reason == "backordered"
            assert (charged, refunded, shipped) == (p.amount, p.amount, 0), p
            assert shop.orders.orders[p.order_id] == "failed"
    emails = [to for to, _ in shop.email.sent]
    assert sorted(emails) == sorted(p.customer for p in placed)  # one email per order
    shipped_total = sum(fulfillment.shipped.values())
    assert fulfillment.stock["book"] == stock - shipped_total
    outcomes = {r.outcome for r in results}
    assert outcomes == {Outcome.COMPLETED, Outcome.FAILED, Outcome.COMPENSATED}


CHOREOGRAPHIES = [
    "front_controller",
    "stamp_coupled",
    "query_all",
    "event_sourced",
    "stamp_coupled+bus",
]


@pytest.mark.parametrize("strategy", CHOREOGRAPHIES)
@pytest.mark.parametrize(
    ("case", "placed"),
    [
        ("completed", PlaceOrder("o9", "ann", "book", 1, 1000)),
        ("rejected", PlaceOrder("o9", "mallory", "book", 1, 1000)),
        ("backordered", PlaceOrder("o9", "ann", "rare", 1, 1000)),
    ],
)
async def test_choreographies_link_services_to_each_other(
    bus: Bus, strategy: str, case: str, placed: PlaceOrder
) -> None:
    """Figures 11-7 to 11-9: services trigger each other, and each error case adds links from
    the failing service to those that must react."""
    sidecar = not strategy.endswith("+bus")

    def a(service: str) -> str:
        """Who sends a service's events: the service itself, or its adapter actor."""
        if sidecar:
            return service
        return f"{strategy.removesuffix('+bus')}.order-placement.{service}"

    async with open_shop(bus, strategy=strategy, record_links=True) as shop:
        workflow_id = await shop.mediator.start(placed)
        await shop.mediator.result(workflow_id, timeout=5)
        links = shop.system.links
        assert links is not None
        used = links.links
    chain = [
        Link(a("order"), a("payment"), "Advance", request=False),
        Link(a("payment"), a("fulfillment"), "Advance", request=False),
        Link(a("fulfillment"), a("email"), "Advance", request=False),
        Link(a("email"), a("order"), "Advance", request=False),
    ]
    notices_from = {
        "completed": None,
        "rejected": "payment",  # figure 11-8: payment tells email and order placement
        "backordered": "payment",  # figure 11-9: after the refund, payment tells them
    }[case]
    if case == "completed":
        assert set(chain) <= used
        assert not any(link.message == "Unwind" for link in used)
    elif case == "rejected":
        assert chain[0] in used
        assert chain[1] not in used
    else:
        assert set(chain[:2]) <= used
        assert Link(a("fulfillment"), a("payment"), "Unwind", request=False) in used
    if notices_from is not None:
        assert Link(a(notices_from), "email", "SendEmail", request=False) in used
        assert Link(a(notices_from), "order", "MarkOrder", request=False) in used
    assert not any(link.sender.startswith("mediator") for link in used)
    to_payment = {link for link in used if link.receiver == "payment"}
    if sidecar:  # the services talk to each other in events, as in the chapter's figures
        assert {link.message for link in to_payment} <= {"Advance", "Unwind"}
    else:  # a service is called by its own adapter only
        assert {link.sender for link in to_payment} == {a("payment")}
        if case == "backordered":
            assert Link(a("payment"), "payment", "Refund", request=True) in used


@pytest.mark.parametrize(("strategy", "grows"), [("stamp_coupled", True), ("query_all", False)])
async def test_the_stamp_grows_and_query_all_events_carry_ids(
    bus: Bus, strategy: str, grows: bool
) -> None:
    advances: list[tuple[int, bool, int]] = []  # (step, carries data, bytes)

    async def measure(msg: Msg) -> None:
        with contextlib.suppress(msgspec.DecodeError):
            event = msgspec.msgpack.decode(msg.data, type=Advance)
            advances.append((event.step, event.data is not None, len(msg.data)))

    async with open_shop(bus, strategy=strategy) as shop:
        await bus.subscribe("corps.actors.*", measure)  # the services, where events go
        await bus.flush()
        workflow_id = await shop.mediator.start(order(10))
        await shop.mediator.result(workflow_id, timeout=5)
        await until(lambda: len({step for step, _, _ in advances}) == 5)
    first = advances[0]
    assert first[:2] == (0, True)  # the request
    between = [size for step, carried, size in advances if step > 0 and not carried]
    if grows:  # each step adds its reply and a trail entry
        assert between == []
        sizes = [size for _, _, size in advances]
        assert sizes == sorted(sizes)
        assert len(set(sizes)) == 5
    else:  # the services tell each other ids only
        assert len(between) == 4
        assert len(set(between)) == 1
        assert between[0] < first[2]


@pytest.mark.parametrize("strategy", ["mediator", "stamp_coupled", "query_all"])
async def test_only_the_latest_finished_workflows_are_remembered(strategy: str) -> None:
    factories = {
        "mediator": lambda s, w: Mediator(s, w, keep_finished=2),
        "stamp_coupled": lambda s, w: StampCoupled(s, w, keep_finished=2),
        "query_all": lambda s, w: QueryAll(s, w, keep_finished=2),
    }
    async with ActorSystem() as system:
        for name, service in order_workflow.services.items():
            await system.spawn(service, name=name)
        async with factories[strategy](system, order_workflow) as running:
            ids = [await running.start(order(n)) for n in range(3)]
            for workflow_id in ids:
                await running.result(workflow_id, timeout=5)
            with pytest.raises(UnknownWorkflowError, match="more than 2 finished"):
                await running.result(ids[0])
            assert (await running.result(ids[2])).workflow_id == ids[2]
            assert not await running.cancel(ids[1])


async def test_builders_read_only_the_replies_they_declare(bus: Bus, strategy_name: str) -> None:
    """The same view under every strategy: reading an undeclared reply fails the step (and
    says how to declare it); a declared one is there."""

    def fulfill_reading_payment(context: WorkflowContext[PlaceOrder]) -> Fulfill:
        charged = context.results["payment"]
        return Fulfill(charged.order_id, context.input.item, context.input.quantity)

    def definition(reads: tuple[str, ...]) -> Workflow[PlaceOrder]:
        steps = [
            replace(s, command=fulfill_reading_payment, reads=reads)
            if s.name == "fulfillment"
            else s
            for s in order_workflow.steps
        ]
        return Workflow(
            f"reads-{len(reads)}",
            PlaceOrder,
            steps,
            services=order_workflow.services,
            on_failure=order_workflow.on_failure,
        )

    async with open_shop(bus, workflow=definition(()), strategy=strategy_name) as shop:
        result = await shop.mediator.result(await shop.mediator.start(order(11)), timeout=5)
        assert result.outcome is Outcome.COMPENSATED
        assert result.failure is not None
        assert "does not declare" in result.failure.reason
        assert "reads=('payment',)" in result.failure.reason
    async with open_shop(bus, workflow=definition(("payment",)), strategy=strategy_name) as shop:
        result = await shop.mediator.result(await shop.mediator.start(order(12)), timeout=5)
        assert result.outcome is Outcome.COMPLETED


async def test_choreographies_share_services(bus: Bus) -> None:
    """Two workflows choreographed over the same services in one system: each service's
    sidecar serves both, and one choreography stopping leaves the other running."""
    twin = Workflow(
        "twin-orders",
        PlaceOrder,
        order_workflow.steps,
        services=order_workflow.services,
        on_failure=order_workflow.on_failure,
    )
    async with open_shop(bus, strategy="stamp_coupled") as shop:
        async with EventSourced(shop.system, twin) as other:
            first = await shop.mediator.start(order(20))
            second = await other.start(order(21, customer="mallory"))
            assert (await shop.mediator.result(first, timeout=5)).outcome is Outcome.COMPLETED
            assert (await other.result(second, timeout=5)).outcome is Outcome.FAILED
            assert (await other.status(second)).failure is not None
        again = await shop.mediator.start(order(22))
        assert (await shop.mediator.result(again, timeout=5)).outcome is Outcome.COMPLETED
        assert shop.payment.charges == {"o20": 1000, "o22": 1000}
        await until(lambda: shop.orders.orders.get("o21") == "failed")


class BrokenRefunds(PaymentService):
    """Charges, but every refund fails: the compensation cannot be done."""

    async def refund(self, msg: Refund) -> Refunded:  # type: ignore[override]
        raise ConnectionError("the card network is down")


async def test_a_compensation_that_cannot_be_done_needs_attention(
    bus: Bus, strategy_name: str
) -> None:
    """Retried, then reported: the workflow ends in NEEDS_ATTENTION with what is left undone
    and why, never silently."""
    quick = Workflow(
        "order-placement",
        PlaceOrder,
        [
            replace(s, retry=RetryPolicy(attempts=2, backoff=0.001)) if s.name == "payment" else s
            for s in order_workflow.steps
        ],
        services=order_workflow.services,
        on_failure=order_workflow.on_failure,
    )
    async with open_shop(
        bus, payment=BrokenRefunds(), workflow=quick, strategy=strategy_name
    ) as shop:
        workflow_id = await shop.mediator.start(order(30, item="rare"))
        result = await shop.mediator.result(workflow_id, timeout=10)
        assert result.outcome is Outcome.NEEDS_ATTENTION
        assert result.failure is not None
        assert result.failure.reason == "backordered"
        assert len(result.attention) == 1
        assert result.attention[0].startswith("payment: ")
        assert "the card network is down" in result.attention[0]
        status = await shop.mediator.status(workflow_id)
        assert status.outcome is Outcome.NEEDS_ATTENTION
        assert status.attention == result.attention
        await until(lambda: shop.orders.orders.get("o30") == "failed")  # the customer is told
    assert shop.payment.charges == {"o30": 1000}
    assert shop.payment.refunds == {}


async def test_a_process_answers_for_the_instances_another_started(
    bus: Bus, strategy_name: str
) -> None:
    """Two systems (processes, on NATS) run one workflow under one strategy, the services in a
    third: each asks status, result, pause, resume and cancel of the other's instances, and
    those reach the process that started them."""
    gated = GatedFulfillment()
    async with (
        open_shop(bus, fulfillment=gated, strategy="mediator"),
        ActorSystem(bus) as here,
        ActorSystem(bus) as there,
        STRATEGIES[strategy_name](here, order_workflow) as ours,
        STRATEGIES[strategy_name](there, order_workflow) as theirs,
    ):
        held = await theirs.start(order(1))
        with anyio.fail_after(5):
            await gated.entered.wait()
        assert (await ours.status(held)).outcome is Outcome.RUNNING
        assert await ours.pause(held, by="ops")
        assert await ours.resume(held, by="ops")
        assert await ours.cancel(held, by="ops")
        gated.gate.set()
        ended = await ours.result(held, timeout=5)
        assert ended.outcome is Outcome.CANCELLED
        assert ended == await theirs.result(held, timeout=5)
        assert (await ours.status(held)).outcome is Outcome.CANCELLED
        assert not await ours.cancel(held)  # ended: as its own process says
        done = await ours.start(order(2))
        result = await theirs.result(done, timeout=5)
        assert result.outcome is Outcome.COMPLETED
        assert result.results == (await ours.result(done)).results  # typed replies, both ways
    stranger = held.replace(owner_of(held) or "", "0123456789abcdef")
    async with ActorSystem(bus) as alone, STRATEGIES[strategy_name](alone, order_workflow) as it:
        with anyio.fail_after(5), pytest.raises(UnknownWorkflowError, match="does not answer"):
            await it.status(stranger)


CHOREOGRAPHY_CLASSES = {
    "event_sourced": EventSourced,
    "front_controller": FrontController,
    "query_all": QueryAll,
    "stamp_coupled": StampCoupled,
}


_prefixes = itertools.count()


@pytest.mark.parametrize("strategy", sorted(CHOREOGRAPHY_CLASSES))
async def test_durable_events_need_every_adapter_beside_its_service(
    bus: Bus, strategy: str
) -> None:
    """Events kept in a stream go to the services' hosts: a choreography whose adapters
    would run here for services elsewhere, or without sidecars, says so on entering."""
    choreography = CHOREOGRAPHY_CLASSES[strategy]
    async with ActorSystem(bus) as starter:
        with pytest.raises(ValueError, match="remote_sidecars=True"):
            async with choreography(starter, order_workflow, durable_events=True):
                pass
        with pytest.raises(ValueError, match="needs sidecars"):
            async with choreography(
                starter, order_workflow, durable_events=True, remote_sidecars=True, sidecars=False
            ):
                pass
        assert not starter.local_names()  # nothing left behind


@pytest.mark.parametrize("durable_events", [False, True], ids=["told", "durable"])
@pytest.mark.parametrize("strategy", sorted(CHOREOGRAPHY_CLASSES))
async def test_adapters_beside_services_in_two_hosts(
    bus: Bus, strategy: str, durable_events: bool
) -> None:
    """Two hosts run every service, with the choreography's adapters beside them
    (`remote_sidecars`); a starter with no service of its own keeps the start and the end.
    Orders end as they should, the starter sees their status, and a pause, a resume and a
    cancel reach the instance wherever its next step lands; the same with the events kept
    in a JetStream stream (`durable_events`)."""
    choreography = functools.partial(
        CHOREOGRAPHY_CLASSES[strategy], remote_sidecars=True, durable_events=durable_events
    )
    prefix = f"hosts{next(_prefixes)}"  # a stream of its own, whatever ran before
    gates = [GatedFulfillment(), GatedFulfillment()]
    gates[1].entered = gates[0].entered  # whichever copy takes the step
    async with contextlib.AsyncExitStack() as stack:
        for gate in gates:
            host = await stack.enter_async_context(ActorSystem(bus, prefix=prefix))
            for name, service in [
                ("order", OrderService()),
                ("payment", PaymentService(declined=frozenset({"mallory"}))),
                ("fulfillment", gate),
                ("email", EmailService()),
            ]:
                await host.spawn(lambda service=service: service, name=name)
            await stack.enter_async_context(choreography(host, order_workflow))
        starter = await stack.enter_async_context(ActorSystem(bus, prefix=prefix))
        runs = await stack.enter_async_context(choreography(starter, order_workflow))
        assert not [name for name in starter.local_names() if name.endswith(".payment")]
        held = await runs.start(order(1))
        with anyio.fail_after(5):
            await gates[0].entered.wait()
        assert await runs.pause(held, by="ops")
        assert (await runs.status(held)).paused
        assert await runs.resume(held, by="ops")
        assert await runs.cancel(held, by="ops")
        for gate in gates:
            gate.gate.set()
        assert (await runs.result(held, timeout=5)).outcome is Outcome.CANCELLED
        ids = [
            await runs.start(order(n, customer))
            for n, customer in [(2, "ann"), (3, "mallory"), (4, "ann")]
        ]
        outcomes = [(await runs.result(i, timeout=5)).outcome for i in ids]
        assert outcomes == [Outcome.COMPLETED, Outcome.FAILED, Outcome.COMPLETED]
        for workflow_id, outcome in zip(ids, outcomes, strict=True):
            assert (await runs.status(workflow_id)).outcome is outcome
        if durable_events and isinstance(bus, NatsBus):  # every event went through it
            assert runs.events_stream is not None
            stream, context = runs.events_stream, bus.jetstream.context()
            with anyio.fail_after(5):  # the last acknowledgements may come after the end
                while (await context.stream_info(stream)).state.messages:  # noqa: ASYNC110
                    await anyio.sleep(0.01)
            assert (await context.stream_info(stream)).state.last_seq >= 10
