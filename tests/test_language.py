"""The workflow language: constructs beside `Step`, the same under every strategy.

A branch: only the path taken runs, and only its steps are compensated (`Branch`).
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.lowlevel
import msgspec
import pytest

from actors import Actor, ActorSystem, Message, Request, current_message_id, idempotent
from brokers import Bus
from coordination import (
    ANY,
    Branch,
    Compute,
    CoordinationError,
    EventSourced,
    Failure,
    ForEach,
    FrontController,
    Hybrid,
    InvalidWorkflowError,
    ManualClock,
    Mediator,
    Outcome,
    Parallel,
    QueryAll,
    Rejected,
    RetryPolicy,
    Sleep,
    StampCoupled,
    Step,
    Strategy,
    SubWorkflow,
    WaitFor,
    Workflow,
    WorkflowContext,
    WorkflowEndedError,
    WorkflowResult,
    WorkflowStatus,
)
from coordination._children import child_id
from coordination.scenarios.order_placement import (
    HIGH_VALUE,
    Charge,
    Charged,
    Cleared,
    EmailService,
    FraudService,
    FulfillmentService,
    OrderService,
    PaymentService,
    PlaceOrder,
    Screen,
    SendEmail,
    order_workflow,
    screened_order_workflow,
)

from .test_fault_equivalence import HOSTED, PLACEMENTS, second_bus
from .test_strategies import STRATEGIES, GatedFulfillment

pytestmark = pytest.mark.anyio


@pytest.fixture(params=PLACEMENTS, ids=["-".join(p) for p in PLACEMENTS])
def strategy(request: pytest.FixtureRequest) -> tuple[str, str]:
    """Every strategy (the choreographies with sidecars and without), in every layout it
    can run in: all in one system, the services in a system of their own, the adapters
    beside the services in their host (see `test_fault_equivalence`)."""
    layout, name = request.param
    return layout, name


_prefixes = itertools.count()


@dataclass
class ScreenedShop:
    strategy: Strategy[PlaceOrder]
    payment: PaymentService
    fraud: FraudService

    async def run(self, order: PlaceOrder) -> WorkflowResult:
        return await self.strategy.result(await self.strategy.start(order), timeout=10)


@contextlib.asynccontextmanager
async def placed(
    bus: Bus,
    placement: tuple[str, str],
    workflow: Workflow[PlaceOrder],
    services: dict[str, Any],
) -> AsyncIterator[Strategy[PlaceOrder]]:
    """`workflow` under a strategy, placed as `placement` says: (layout, strategy)."""
    layout, strategy = placement
    factory = HOSTED[strategy] if layout == "hosted" else STRATEGIES[strategy]
    prefix = f"language{next(_prefixes)}"  # JetStream keeps what a test left: not for the next
    async with contextlib.AsyncExitStack() as stack:
        system = await stack.enter_async_context(ActorSystem(bus, prefix=prefix))
        for name, service in services.items():
            await system.spawn(lambda service=service: service, name=name)
        if layout == "hosted":
            await stack.enter_async_context(factory(system, workflow))  # type: ignore[arg-type]
        if layout != "one":
            starter_bus = await stack.enter_async_context(second_bus(bus))
            system = await stack.enter_async_context(ActorSystem(starter_bus, prefix=prefix))
        yield await stack.enter_async_context(factory(system, workflow))  # type: ignore[arg-type,misc]


@contextlib.asynccontextmanager
async def screened_shop(
    bus: Bus,
    placement: tuple[str, str],
    workflow: Workflow[PlaceOrder] = screened_order_workflow,
) -> AsyncIterator[ScreenedShop]:
    payment = PaymentService(declined=frozenset({"mallory"}))
    fraud = FraudService(suspicious=frozenset({"eve"}))
    services = {
        "order": OrderService(),
        "payment": payment,
        "fulfillment": FulfillmentService(stock={"book": 100, "rare": 0}),
        "email": EmailService(),
        "fraud": fraud,
    }
    async with placed(bus, placement, workflow, services) as running:
        yield ScreenedShop(running, payment, fraud)


PLAIN = ("create_order", "payment", "fulfillment", "confirmation", "mark_placed")
SCREENED = ("create_order", "fraud_check", "payment", "fulfillment", "confirmation", "mark_placed")


async def test_only_the_path_a_branch_takes_runs_and_is_undone(
    bus: Bus, strategy: tuple[str, str]
) -> None:
    async with screened_shop(bus, strategy) as shop:
        small = await shop.run(PlaceOrder("o1", "ann", "book", 1, 1000))
        big = await shop.run(PlaceOrder("o2", "ann", "book", 1, HIGH_VALUE))
        suspicious = await shop.run(PlaceOrder("o3", "eve", "book", 1, HIGH_VALUE))
        backordered = await shop.run(PlaceOrder("o4", "ann", "rare", 1, HIGH_VALUE))
        statuses = [await shop.strategy.status(r.workflow_id) for r in (small, big, backordered)]
    assert [r.outcome for r in (small, big, suspicious, backordered)] == [
        Outcome.COMPLETED,
        Outcome.COMPLETED,
        Outcome.FAILED,
        Outcome.COMPENSATED,
    ]
    assert shop.fraud.screened == ["o2", "o3", "o4"]  # the small order took the other path
    assert "fraud_check" not in small.results
    assert "fraud_check" in big.results
    assert suspicious.failure is not None
    assert (suspicious.failure.step, suspicious.failure.reason) == (
        "fraud_check",
        "suspected fraud",
    )
    assert backordered.failure is not None
    assert backordered.failure.step == "fulfillment"
    assert shop.payment.charges == {"o1": 1000, "o2": HIGH_VALUE, "o4": HIGH_VALUE}
    assert shop.payment.refunds == {"o4": HIGH_VALUE}  # the way back retraced the way taken
    small_status, big_status, back_status = statuses
    if small_status.completed_steps is not None:
        assert in_any_order_of_the_parallel(small_status.completed_steps) == PLAIN
        assert in_any_order_of_the_parallel(big_status.completed_steps) == SCREENED
        assert back_status.compensated_steps == ("payment",)


def in_any_order_of_the_parallel(steps: tuple[str, ...] | None) -> tuple[str, ...]:
    """`steps` with the reservation's two branches (which complete in either order) in the
    order the flow declares them."""
    assert steps is not None
    both = [name for name in ("payment", "fulfillment") if name in steps]
    inside = iter(both)
    return tuple(next(inside) if name in both else name for name in steps)


async def test_a_flow_may_begin_with_a_branch(bus: Bus, strategy: tuple[str, str]) -> None:
    """Decided by whoever starts the instance, from the input."""
    steps = {step.name: step for step in screened_order_workflow.steps}
    screen_first = Workflow(
        "screen-first",
        PlaceOrder,
        [
            Branch(
                "high_value",
                lambda c: c.input.amount >= HIGH_VALUE,
                then=[steps["fraud_check"]],
            ),
            *(steps[name] for name in PLAIN),
        ],
        services=screened_order_workflow.services,
        on_failure=screened_order_workflow.on_failure,
    )
    async with screened_shop(bus, strategy, screen_first) as shop:
        small = await shop.run(PlaceOrder("o1", "ann", "book", 1, 1000))
        suspicious = await shop.run(PlaceOrder("o2", "eve", "book", 1, HIGH_VALUE))
    assert (small.outcome, suspicious.outcome) == (Outcome.COMPLETED, Outcome.FAILED)
    assert shop.fraud.screened == ["o2"]
    assert shop.payment.charges == {"o1": 1000}


async def test_a_branch_that_cannot_decide_fails_the_instance_there(
    bus: Bus, strategy: tuple[str, str]
) -> None:
    def unreadable(context: object) -> bool:
        raise ValueError("no amount")

    steps = {step.name: step for step in order_workflow.steps}
    broken = Workflow(
        "broken-branch",
        PlaceOrder,
        [
            steps["create_order"],
            steps["payment"],
            Branch("big", unreadable, then=[steps["fulfillment"]]),
        ],
        services=order_workflow.services,
    )
    async with screened_shop(bus, strategy, broken) as shop:
        result = await shop.run(PlaceOrder("o1", "ann", "book", 1, 5))
    assert result.outcome is Outcome.COMPENSATED
    assert result.failure is not None
    assert result.failure.step == "big"
    assert result.failure.technical
    assert "no amount" in result.failure.reason
    assert shop.payment.refunds == {"o1": 5}


def _step(name: str, reads: tuple[str, ...] = (), *, undo: bool = True) -> Step:
    steps = {step.name: step for step in order_workflow.steps}
    return Step(
        name,
        "payment",
        steps["payment"].command,
        compensation=steps["payment"].compensation if undo else None,
        reads=reads,
    )


@pytest.mark.parametrize(
    ("flow", "says"),
    [
        (
            [Branch("b", lambda c: True, then=[_step("x")]), _step("y", reads=("x",))],
            "'y' reads 'x', which is not a step that answers (wait=True) on every path",
        ),
        (
            [
                _step("a"),
                Branch("b", lambda c: True, then=[_step("x")], reads=("x",)),
            ],
            "branch 'b' reads 'x'",
        ),
        ([_step("a"), Branch("b", lambda c: True)], "branch 'b' has no step on either path"),
        (
            [_step("a"), Branch("a", lambda c: True, then=[_step("x")])],
            "'a' is empty or used twice",
        ),
        (
            [
                Branch("b", lambda c: True, then=[_step("x", undo=False)], otherwise=[_step("z")]),
                _step("y"),
            ],
            "step 'x' has no compensation, but 'y' after it can fail",
        ),
    ],
)
def test_a_flow_that_cannot_work_is_refused_when_it_is_built(flow: list[Step], says: str) -> None:
    with pytest.raises(InvalidWorkflowError, match=says.replace("(", r"\(").replace(")", r"\)")):
        Workflow("bad", PlaceOrder, flow, services=order_workflow.services)


def test_both_paths_may_read_what_answered_on_each_of_them() -> None:
    """A reply given on both paths may be read after the branch."""
    workflow = Workflow(
        "both-ways",
        PlaceOrder,
        [
            Branch("b", lambda c: True, then=[_step("x"), _step("z")], otherwise=[_step("z2")]),
            _step("y", reads=()),
        ],
        services=order_workflow.services,
    )
    assert [step.name for step in workflow.steps] == ["x", "z", "z2", "y"]
    assert not workflow.linear


class Quote(msgspec.Struct, frozen=True):
    total: int


def quote(context: WorkflowContext[PlaceOrder]) -> Quote | Rejected:
    order = context.input
    if order.quantity > 10:
        return Rejected("too many to quote")
    if order.customer == "glitch":
        raise ValueError("no price list")
    discount = 10 if order.quantity >= 5 else 0
    return Quote(order.amount * order.quantity * (100 - discount) // 100)


def quoted_workflow() -> Workflow[PlaceOrder]:
    steps = {step.name: step for step in order_workflow.steps}
    return Workflow(
        "quoted-order-placement",
        PlaceOrder,
        [
            steps["create_order"],
            Compute("quote", quote, returns=Quote),
            Step(
                "payment",
                "payment",
                lambda c: Charge(c.input.order_id, c.input.customer, c.results["quote"].total),
                compensation=steps["payment"].compensation,
                reads=("quote",),
            ),
            steps["fulfillment"],
            steps["confirmation"],
        ],
        services=order_workflow.services,
        on_failure=order_workflow.on_failure,
    )


async def test_a_compute_step_answers_in_place_and_later_steps_read_it(
    bus: Bus, strategy: tuple[str, str]
) -> None:
    async with screened_shop(bus, strategy, quoted_workflow()) as shop:
        two = await shop.run(PlaceOrder("o1", "ann", "book", 2, 1000))
        five = await shop.run(PlaceOrder("o2", "ann", "book", 5, 1000))
        many = await shop.run(PlaceOrder("o3", "ann", "book", 20, 1000))
        glitch = await shop.run(PlaceOrder("o4", "glitch", "book", 1, 1000))
        status = await shop.strategy.status(five.workflow_id)
    assert [r.outcome for r in (two, five, many, glitch)] == [
        Outcome.COMPLETED,
        Outcome.COMPLETED,
        Outcome.FAILED,
        Outcome.FAILED,
    ]
    assert shop.payment.charges == {"o1": 2000, "o2": 4500}  # the builders read the quote
    assert many.failure == Failure("quote", "too many to quote", technical=False)
    assert glitch.failure is not None
    assert (glitch.failure.step, glitch.failure.technical) == ("quote", True)
    assert "no price list" in glitch.failure.reason
    if status.completed_steps is not None:
        assert status.completed_steps == (
            "create_order",
            "quote",
            "payment",
            "fulfillment",
            "confirmation",
        )


def test_a_compute_says_what_it_returns() -> None:
    with pytest.raises(InvalidWorkflowError, match="say what it returns"):
        Compute("quote", lambda c: 1)
    assert Compute("quote", quote).returns == Quote | Rejected


class Approval(msgspec.Struct, frozen=True):
    by: str


def approved_workflow() -> Workflow[PlaceOrder]:
    """Order placement that waits, once the item is fulfilled, for a manager's approval
    before it confirms to the customer who approved it."""
    steps = {step.name: step for step in order_workflow.steps}
    return Workflow(
        "approved-order-placement",
        PlaceOrder,
        [
            steps["create_order"],
            steps["payment"],
            steps["fulfillment"],
            WaitFor("approval", "approved", Approval),
            Step(
                "confirmation",
                "email",
                lambda c: SendEmail(c.input.customer, f"approved by {c.results['approval'].by}"),
                wait=False,
                reads=("approval",),
            ),
        ],
        services=order_workflow.services,
        on_failure=order_workflow.on_failure,
    )


@contextlib.asynccontextmanager
async def approving_shop(
    bus: Bus, placement: tuple[str, str]
) -> AsyncIterator[tuple[Strategy[PlaceOrder], GatedFulfillment, EmailService]]:
    shipping, email = GatedFulfillment(), EmailService()
    services = {
        "order": OrderService(),
        "payment": PaymentService(),
        "fulfillment": shipping,
        "email": email,
    }
    try:
        async with placed(bus, placement, approved_workflow(), services) as running:
            yield running, shipping, email
    finally:
        shipping.gate.set()  # a held fulfillment lets go, so the services can stop


async def until_at(orders: Strategy[PlaceOrder], workflow_id: str, step: str) -> None:
    """Until the instance is at `step` (a wait or a sleep), as its status says: every
    strategy knows it, since the instance waits with the process that started it."""
    with anyio.fail_after(10):
        while (await orders.status(workflow_id)).current_step != step:  # noqa: ASYNC110
            await anyio.sleep(0.01)


async def waits_for_its_signal(orders: Strategy[PlaceOrder], workflow_id: str) -> None:
    await until_at(orders, workflow_id, "approval")
    status = await orders.status(workflow_id)
    assert status.completed_steps == PLAIN[:3]
    assert (status.awaiting, status.wakes_at) == (("approved",), None)


async def test_a_wait_takes_its_signal_before_or_after_it_is_reached(
    bus: Bus, strategy: tuple[str, str]
) -> None:
    async with approving_shop(bus, strategy) as (orders, shipping, email):
        early = await orders.start(PlaceOrder("o1", "ann", "book", 1, 1000))
        with anyio.fail_after(5):
            await shipping.entered.wait()
        await orders.signal(early, "approved", Approval("mia"))  # kept until it waits
        shipping.gate.set()
        done = await orders.result(early, timeout=10)
        late = await orders.start(PlaceOrder("o2", "bob", "book", 1, 1000))
        await waits_for_its_signal(orders, late)
        await orders.signal(late, "approved", Approval("raj"))
        later = await orders.result(late, timeout=10)
        ended = await orders.status(late)
        with pytest.raises(WorkflowEndedError, match="comes too late"):
            await orders.signal(late, "approved", Approval("raj"))
        with pytest.raises(ValueError, match="waits for no signal 'rejected'"):
            await orders.signal(late, "rejected", Approval("raj"))
    assert (done.outcome, later.outcome) == (Outcome.COMPLETED, Outcome.COMPLETED)
    assert done.results["approval"] == Approval("mia")  # the payload is the wait's reply
    assert ("ann", "approved by mia") in email.sent
    assert ("bob", "approved by raj") in email.sent
    if ended.completed_steps is not None:  # the wait is done too, where status sees steps
        assert "approval" in ended.completed_steps


async def test_a_cancel_does_not_wait_for_a_signal(bus: Bus, strategy: tuple[str, str]) -> None:
    async with approving_shop(bus, strategy) as (orders, shipping, _):
        shipping.gate.set()
        waiting = await orders.start(PlaceOrder("o1", "ann", "book", 1, 1000))
        await waits_for_its_signal(orders, waiting)
        with pytest.raises(TypeError, match="carries"):
            await orders.signal(waiting, "approved", "mia")
        assert await orders.cancel(waiting, by="ops")
        result = await orders.result(waiting, timeout=10)
    assert result.outcome is Outcome.CANCELLED
    assert result.failure == Failure("approval", "cancelled", technical=False)


async def test_a_signal_while_paused_is_taken_and_the_next_step_waits_for_the_resume(
    bus: Bus, strategy: tuple[str, str]
) -> None:
    async with approving_shop(bus, strategy) as (orders, shipping, email):
        shipping.gate.set()
        waiting = await orders.start(PlaceOrder("o1", "ann", "book", 1, 1000))
        await waits_for_its_signal(orders, waiting)
        assert await orders.pause(waiting)
        await orders.signal(waiting, "approved", Approval("mia"))
        status = await orders.status(waiting)
        sent_while_paused = list(email.sent)
        with pytest.raises(CoordinationError, match="already"):  # taken, not lost
            await orders.signal(waiting, "approved", Approval("max"))
        assert await orders.resume(waiting)
        result = await orders.result(waiting, timeout=10)
    assert (status.outcome, status.paused) == (Outcome.RUNNING, True)
    assert sent_while_paused == []
    assert result.outcome is Outcome.COMPLETED
    assert result.results["approval"] == Approval("mia")


@pytest.mark.parametrize("name", ["mediator", "stamp_coupled", "query_all", "front_controller"])
async def test_any_process_may_send_a_signal(bus: Bus, name: str) -> None:
    """A signal sent to a strategy object in another process reaches the instance through
    the process that started it."""
    workflow = approved_workflow()
    async with ActorSystem(bus) as services:
        for service_name, service in [
            ("order", OrderService()),
            ("payment", PaymentService()),
            ("fulfillment", FulfillmentService(stock={"book": 10})),
            ("email", EmailService()),
        ]:
            await services.spawn(lambda service=service: service, name=service_name)
        async with (
            ActorSystem(bus) as here,
            ActorSystem(bus) as there,
            STRATEGIES[name](here, workflow) as ours,  # type: ignore[arg-type]
            STRATEGIES[name](there, workflow) as theirs,  # type: ignore[arg-type]
        ):
            started = await theirs.start(PlaceOrder("o1", "ann", "book", 1, 1000))
            await ours.signal(started, "approved", Approval("mia"))
            result = await ours.result(started, timeout=10)
            with pytest.raises(WorkflowEndedError):
                await ours.signal(started, "approved", Approval("mia"))
    assert result.outcome is Outcome.COMPLETED
    assert result.results["approval"] == Approval("mia")


async def test_a_hybrid_hands_a_signal_to_the_part_that_waits_for_it(bus: Bus) -> None:
    """The wait is in the rest: a signal that comes while the core runs is kept by the
    hybrid until the rest has started."""
    async with ActorSystem(bus) as system:
        shipping = GatedFulfillment()
        for name, service in [
            ("order", OrderService()),
            ("payment", PaymentService()),
            ("fulfillment", shipping),
            ("email", EmailService()),
        ]:
            await system.spawn(lambda service=service: service, name=name)
        hybrid = Hybrid(
            system,
            approved_workflow(),
            core=Mediator,
            rest=StampCoupled,
            handoff="fulfillment",
        )
        async with hybrid:
            started = await hybrid.start(PlaceOrder("o1", "ann", "book", 1, 1000))
            with anyio.fail_after(5):
                await shipping.entered.wait()  # the core is under way
            await hybrid.signal(started, "approved", Approval("mia"))
            shipping.gate.set()
            result = await hybrid.result(started, timeout=10)
    assert result.outcome is Outcome.COMPLETED
    assert result.results["approval"] == Approval("mia")


def cooling_off_workflow() -> Workflow[PlaceOrder]:
    """Order placement that waits a day, once paid, before it ships."""
    steps = {step.name: step for step in order_workflow.steps}
    return Workflow(
        "cooling-off",
        PlaceOrder,
        [
            steps["create_order"],
            steps["payment"],
            Sleep("cooling_off", seconds=86_400),
            steps["fulfillment"],
            steps["confirmation"],
        ],
        services=order_workflow.services,
        on_failure=order_workflow.on_failure,
    )


SLEEPERS: dict[str, Any] = {
    "mediator": Mediator,
    "stamp_coupled": StampCoupled,
    "front_controller": FrontController,
    "query_all": QueryAll,
    "event_sourced": EventSourced,
}


@pytest.mark.parametrize("name", sorted(SLEEPERS))
async def test_a_sleep_of_a_day_ends_when_the_clock_says_so(
    bus: Bus, clock: ManualClock, name: str
) -> None:
    payment, fulfillment = PaymentService(), FulfillmentService(stock={"book": 10})
    services = {
        "order": OrderService(),
        "payment": payment,
        "fulfillment": fulfillment,
        "email": EmailService(),
    }
    async with ActorSystem(bus) as system:
        for service_name, service in services.items():
            await system.spawn(lambda service=service: service, name=service_name)
        async with SLEEPERS[name](system, cooling_off_workflow(), clock=clock) as orders:
            shipped = await orders.start(PlaceOrder("o1", "ann", "book", 1, 1000))
            kept = await orders.start(PlaceOrder("o2", "bob", "book", 1, 1000))
            await until_at(orders, shipped, "cooling_off")
            await until_at(orders, kept, "cooling_off")
            asleep = await orders.status(shipped)
            assert (asleep.awaiting, asleep.wakes_at) == ((), clock.now() + 86_400)
            assert await orders.cancel(kept, by="customer")  # a cancel does not wait a day
            cancelled = await orders.result(kept, timeout=10)
            await clock.advance(86_399)
            assert (await orders.status(shipped)).current_step == "cooling_off"
            assert fulfillment.shipped == {}
            await clock.advance(1)
            result = await orders.result(shipped, timeout=10)
    assert result.outcome is Outcome.COMPLETED
    assert fulfillment.shipped == {"o1": 1}
    assert cancelled.outcome is Outcome.CANCELLED
    assert cancelled.failure == Failure("cooling_off", "cancelled", technical=False)
    assert payment.refunds == {"o2": 1000}


class HangingPayment(PaymentService):
    """Never answers a charge (until the test lets it go)."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = anyio.Event()
        self.gate = anyio.Event()

    async def charge(self, msg: Charge) -> Charged | Rejected:
        self.entered.set()
        await self.gate.wait()
        return Rejected("let go")


@pytest.mark.parametrize("sidecars", [True, False], ids=["sidecars", "over-the-bus"])
@pytest.mark.parametrize("name", sorted(SLEEPERS))
async def test_a_step_times_out_on_the_strategys_clock(
    bus: Bus, clock: ManualClock, name: str, sidecars: bool
) -> None:
    """A step with a day's timeout fails when the test's clock has moved on a day: the
    step executor reads the strategy's clock, as sleeps and waits do."""
    steps = {step.name: step for step in order_workflow.steps}
    workflow = Workflow(
        "patient-order",
        PlaceOrder,
        [
            steps["create_order"],
            Step(
                "payment",
                "payment",
                steps["payment"].command,
                compensation=steps["payment"].compensation,
                timeout=86_400,
                retry=RetryPolicy(attempts=1),
            ),
        ],
        services=order_workflow.services,
    )
    payment = HangingPayment()
    options: dict[str, Any] = {"clock": clock}
    if name != "mediator":
        options["sidecars"] = sidecars
    elif not sidecars:
        pytest.skip("the Mediator has no sidecars")
    async with ActorSystem(bus) as system:
        await system.spawn(OrderService, name="order")
        await system.spawn(lambda: payment, name="payment")
        await system.spawn(FulfillmentService, name="fulfillment")
        await system.spawn(EmailService, name="email")
        try:
            async with SLEEPERS[name](system, workflow, **options) as orders:
                order = await orders.start(PlaceOrder("o1", "ann", "book", 1, 1000))
                with anyio.fail_after(10):
                    await payment.entered.wait()
                await clock.advance(86_399)
                assert (await orders.status(order)).outcome is Outcome.RUNNING
                await clock.advance(2)  # timeouts are swept each tick: up to a tick late
                result = await orders.result(order, timeout=10)
        finally:
            payment.gate.set()
    assert result.outcome is Outcome.FAILED
    assert result.failure == Failure("payment", "no reply within 86400 s", technical=True)


def approval_by_deadline(name: str, **options: Any) -> Workflow[PlaceOrder]:
    """`approved_workflow`, its wait given an hour."""
    steps = {node.name: node for node in approved_workflow().flow}
    wait = WaitFor("approval", "approved", Approval, timeout=3_600, **options)
    return Workflow(
        name,
        PlaceOrder,
        [
            steps["create_order"],
            steps["payment"],
            steps["fulfillment"],
            wait,
            steps["confirmation"],
        ],
        services=order_workflow.services,
        on_failure=order_workflow.on_failure,
    )


@pytest.mark.parametrize("name", sorted(SLEEPERS))
async def test_a_wait_that_times_out_fails_there_or_goes_on_with_its_default(
    bus: Bus, clock: ManualClock, name: str
) -> None:
    payment, email = PaymentService(), EmailService()
    services = {
        "order": OrderService(),
        "payment": payment,
        "fulfillment": FulfillmentService(stock={"book": 10}),
        "email": email,
    }
    async with ActorSystem(bus) as system:
        for service_name, service in services.items():
            await system.spawn(lambda service=service: service, name=service_name)
        async with (
            SLEEPERS[name](system, approval_by_deadline("strict"), clock=clock) as strict,
            SLEEPERS[name](
                system, approval_by_deadline("lenient", on_timeout=Approval("nobody")), clock=clock
            ) as lenient,
        ):
            unanswered = await strict.start(PlaceOrder("o1", "ann", "book", 1, 1000))
            answered = await strict.start(PlaceOrder("o2", "bob", "book", 1, 1000))
            defaulted = await lenient.start(PlaceOrder("o3", "cy", "book", 1, 1000))
            for orders, workflow_id in (
                (strict, unanswered),
                (strict, answered),
                (lenient, defaulted),
            ):
                await until_at(orders, workflow_id, "approval")
                waiting = await orders.status(workflow_id)
                assert waiting.awaiting == ("approved",)
                assert waiting.wakes_at == clock.now() + 3_600
            await clock.advance(1_800)
            await strict.signal(answered, "approved", Approval("mia"))  # in time
            await clock.advance(1_800)
            failed = await strict.result(unanswered, timeout=10)
            done = await strict.result(answered, timeout=10)
            default = await lenient.result(defaulted, timeout=10)
    assert failed.outcome is Outcome.COMPENSATED
    assert failed.failure == Failure(
        "approval", "no signal 'approved' within 3600 s", technical=False
    )
    assert payment.refunds == {"o1": 1000}
    assert done.outcome is Outcome.COMPLETED
    assert default.outcome is Outcome.COMPLETED
    assert default.results["approval"] == Approval("nobody")
    assert ("cy", "approved by nobody") in email.sent


def test_a_wait_default_has_its_payload_type() -> None:
    with pytest.raises(TypeError, match="carries"):
        WaitFor("approval", "approved", Approval, timeout=1, on_timeout="nobody")
    with pytest.raises(InvalidWorkflowError, match="on_timeout needs a timeout"):
        WaitFor("approval", "approved", Approval, on_timeout=Approval("x"))


async def test_status_while_running_follows_the_way_taken(
    bus: Bus, strategy: tuple[str, str]
) -> None:
    """Mid-way, a strategy that can see the steps done names those of the path taken only."""
    held = GatedFulfillment()
    services = {
        "order": OrderService(),
        "payment": PaymentService(),
        "fulfillment": held,
        "email": EmailService(),
        "fraud": FraudService(),
    }
    try:
        async with placed(bus, strategy, screened_order_workflow, services) as orders:
            small = await orders.start(PlaceOrder("o1", "ann", "book", 1, 1000))
            with anyio.fail_after(5):
                await held.entered.wait()
            status = await until_completed(orders, small, "payment")
            held.gate.set()
            await orders.result(small, timeout=10)
    finally:
        held.gate.set()
    assert status.completed_steps in (None, ("create_order", "payment"))
    assert status.current_step in (None, "fulfillment")
    assert status.active_steps in ((), ("fulfillment",))


async def until_completed(
    orders: Strategy[PlaceOrder], workflow_id: str, step: str
) -> WorkflowStatus:
    """The instance's status once it says `step` completed (at once, for a strategy that
    cannot see the steps completed)."""
    with anyio.fail_after(10):
        while True:
            status = await orders.status(workflow_id)
            if status.completed_steps is None or step in status.completed_steps:
                return status
            await anyio.sleep(0.01)


def gated_shop() -> tuple[dict[str, Any], GatedFulfillment, PaymentService]:
    """The shop's services, its fulfillment held until the test opens the gate."""
    held = GatedFulfillment()
    payment = PaymentService()
    services = {
        "order": OrderService(),
        "payment": payment,
        "fulfillment": held,
        "email": EmailService(),
        "fraud": FraudService(),
    }
    return services, held, payment


async def test_the_branches_of_a_parallel_run_at_the_same_time(
    bus: Bus, strategy: tuple[str, str]
) -> None:
    """The payment is charged while the reservation, in the other branch, is held; the
    instance goes on once both branches ended."""
    services, held, payment = gated_shop()
    try:
        async with placed(bus, strategy, screened_order_workflow, services) as orders:
            order = await orders.start(PlaceOrder("o1", "ann", "book", 1, 1000))
            with anyio.fail_after(10):
                await held.entered.wait()
                while "o1" not in payment.charges:  # noqa: ASYNC110
                    await anyio.sleep(0.005)
            assert (await orders.status(order)).outcome is Outcome.RUNNING
            held.gate.set()
            result = await orders.result(order, timeout=10)
    finally:
        held.gate.set()
    assert result.outcome is Outcome.COMPLETED
    assert set(result.results) >= {"create_order", "payment", "fulfillment"}
    assert held.shipped == {"o1": 1}


async def test_a_failing_branch_undoes_what_every_branch_did(
    bus: Bus, strategy: tuple[str, str]
) -> None:
    """A declined card: the reservation, which ran beside it, is put back; an item out of
    stock: the charge, which ran beside it, is refunded. Each exactly once."""
    async with screened_shop(bus, strategy) as shop:
        declined = await shop.run(PlaceOrder("o1", "mallory", "book", 1, 1000))
        backordered = await shop.run(PlaceOrder("o2", "ann", "rare", 1, 1000))
        statuses = [await shop.strategy.status(r.workflow_id) for r in (declined, backordered)]
    assert [r.outcome for r in (declined, backordered)] == [Outcome.COMPENSATED] * 2
    assert declined.failure == Failure("payment", "card declined", technical=False)
    assert backordered.failure == Failure("fulfillment", "backordered", technical=False)
    assert shop.payment.charges == {"o2": 1000}
    assert shop.payment.refunds == {"o2": 1000}
    known = [s.compensated_steps for s in statuses if s.compensated_steps is not None]
    assert known in ([], [("fulfillment",), ("payment",)])


async def test_a_cancel_while_the_branches_run_undoes_both(
    bus: Bus, strategy: tuple[str, str]
) -> None:
    services, held, payment = gated_shop()
    try:
        async with placed(bus, strategy, screened_order_workflow, services) as orders:
            order = await orders.start(PlaceOrder("o1", "ann", "book", 1, 1000))
            with anyio.fail_after(10):
                await held.entered.wait()
                while "o1" not in payment.charges:  # noqa: ASYNC110
                    await anyio.sleep(0.005)
            assert await orders.cancel(order)
            held.gate.set()
            result = await orders.result(order, timeout=10)
    finally:
        held.gate.set()
    assert result.outcome is Outcome.CANCELLED
    assert payment.refunds == {"o1": 1000}
    assert held.stock == {"book": 10}
    assert held.shipped == {}


async def test_a_hybrid_runs_both_parts_on_its_clock(bus: Bus, clock: ManualClock) -> None:
    """A sleep in the rest of a hybrid ends when the hybrid's clock says so."""
    async with ActorSystem(bus) as system:
        for name, service in [
            ("order", OrderService()),
            ("payment", PaymentService()),
            ("fulfillment", FulfillmentService(stock={"book": 10})),
            ("email", EmailService()),
        ]:
            await system.spawn(lambda service=service: service, name=name)
        hybrid = Hybrid(
            system,
            cooling_off_workflow(),
            core=Mediator,
            rest=FrontController,
            handoff="payment",
            clock=clock,
        )
        async with hybrid:
            started = await hybrid.start(PlaceOrder("o1", "ann", "book", 1, 1000))
            await until_at(hybrid, started, "cooling_off")  # type: ignore[arg-type]
            await clock.advance(86_400)
            result = await hybrid.result(started, timeout=10)
    assert result.outcome is Outcome.COMPLETED


# -- for-each -------------------------------------------------------------------------------


class Basket(msgspec.Struct, frozen=True):
    order_id: str
    items: list[str]


class Reserved(Message):
    item: str
    message_id: str


class Reserve(Request[Reserved | Rejected]):
    order_id: str
    item: str


class Released(Message):
    item: str


class Release(Request[Released]):
    order_id: str
    item: str


class Billed(Message):
    items: list[str]


class Bill(Request[Billed]):
    order_id: str
    items: list[str]


class Warehouse(Actor):
    """Reserves one unit of an item per request; an item out of stock is refused."""

    def __init__(self, stock: dict[str, int]) -> None:
        self.stock = dict(stock)
        self.reserved: list[str] = []

    @idempotent
    async def reserve(self, msg: Reserve) -> Reserved | Rejected:
        if self.stock.get(msg.item, 0) < 1:
            return Rejected(f"{msg.item} out of stock")
        self.stock[msg.item] -= 1
        self.reserved.append(msg.item)
        return Reserved(msg.item, current_message_id() or "")

    @idempotent
    async def release(self, msg: Release) -> Released:
        self.stock[msg.item] += 1
        return Released(msg.item)


class Billing(Actor):
    def __init__(self) -> None:
        self.bills: list[list[str]] = []

    async def bill(self, msg: Bill) -> Billed:
        self.bills.append(msg.items)
        return Billed(msg.items)


def basket_workflow() -> Workflow[Any]:
    return Workflow(
        "basket",
        Basket,
        [
            ForEach(
                "reserve",
                lambda c: c.input.items,
                Step(
                    "reserve_item",
                    "warehouse",
                    lambda c: Reserve(c.input.order_id, c.item),
                    compensation=lambda c: Release(c.input.order_id, c.item),
                ),
                max_concurrency=2,
            ),
            Step(
                "bill",
                "billing",
                lambda c: Bill(c.input.order_id, [r.item for r in c.results["reserve"]]),
                reads=("reserve",),
                nothing_to_undo=True,
            ),
        ],
        services={"warehouse": Warehouse, "billing": Billing},
    )


async def test_a_for_each_runs_one_step_per_item_and_undoes_them_all_on_a_failure(
    bus: Bus, strategy: tuple[str, str]
) -> None:
    warehouse = Warehouse({"pen": 5, "ink": 5, "pad": 0})
    billing = Billing()
    services = {"warehouse": warehouse, "billing": billing}
    async with placed(bus, strategy, basket_workflow(), services) as baskets:
        full = await baskets.result(
            await baskets.start(Basket("b1", ["pen", "ink", "pen", "ink"])), timeout=10
        )
        empty = await baskets.result(await baskets.start(Basket("b2", [])), timeout=10)
        short = await baskets.result(
            await baskets.start(Basket("b3", ["pen", "pad", "ink"])), timeout=10
        )
    assert full.outcome is Outcome.COMPLETED
    assert [r.item for r in full.results["reserve"]] == ["pen", "ink", "pen", "ink"]
    ids = [r.message_id for r in full.results["reserve"]]
    assert len(set(ids)) == 4
    assert ids[0].endswith(".reserve[0]")
    assert empty.outcome is Outcome.COMPLETED
    assert empty.results["reserve"] == []
    assert billing.bills == [["pen", "ink", "pen", "ink"], []]
    assert short.outcome is Outcome.COMPENSATED
    assert short.failure == Failure("reserve[1]", "pad out of stock", technical=False)
    assert warehouse.stock == {"pen": 3, "ink": 3, "pad": 0}  # b3's reservations released


# -- sub-workflows --------------------------------------------------------------------------


def reservation_workflow() -> Workflow[PlaceOrder]:
    """The charge and the shipping of an order, as a workflow of their own (a child)."""
    steps = {step.name: step for step in order_workflow.steps}
    return Workflow(
        "reservation",
        PlaceOrder,
        [steps["payment"], steps["fulfillment"]],
        services=order_workflow.services,
    )


def reserved_parent() -> Workflow[PlaceOrder]:
    """Order placement whose charge and shipping are a child workflow, screened for fraud
    once the child completed (a suspicious customer undoes the child)."""
    steps = {step.name: step for step in order_workflow.steps}
    reservation = reservation_workflow()
    return Workflow(
        "parent-order",
        PlaceOrder,
        [
            steps["create_order"],
            SubWorkflow("reserve", reservation, lambda c: c.input),
            Step(
                "fraud_check",
                "fraud",
                lambda c: Screen(c.input.order_id, c.input.customer, c.input.amount),
                nothing_to_undo=True,
                reads=("reserve",),
            ),
        ],
        services={**order_workflow.services, "fraud": FraudService},
        on_failure=order_workflow.on_failure,
    )


async def test_a_sub_workflow_runs_as_a_child_and_is_undone_when_the_parent_turns_around(
    bus: Bus, strategy: tuple[str, str]
) -> None:
    async with screened_shop(bus, strategy, reserved_parent()) as shop:
        placed_order = await shop.run(PlaceOrder("o1", "ann", "book", 1, 1000))
        declined = await shop.run(PlaceOrder("o2", "mallory", "book", 1, 1000))
        suspicious = await shop.run(PlaceOrder("o3", "eve", "book", 1, 1000))
        child = placed_order.results["reserve"]
        children = shop.strategy.children["reserve"]  # type: ignore[attr-defined]
        child_status = await children.status(child.workflow_id)
        undone = await children.result(suspicious.results.get("reserve", child).workflow_id)
    assert placed_order.outcome is Outcome.COMPLETED
    assert child.outcome is Outcome.COMPLETED
    assert child.workflow_id.startswith("reservation-")
    assert child.workflow_id.endswith(".reserve")
    assert child.results["payment"] == Charged("o1", 1000)  # the child's replies, typed
    assert child_status.outcome is Outcome.COMPLETED
    assert declined.outcome is Outcome.FAILED
    assert declined.failure is not None
    assert declined.failure.step == "reserve"
    assert "card declined" in declined.failure.reason
    assert suspicious.outcome is Outcome.COMPENSATED
    assert suspicious.failure == Failure("fraud_check", "suspected fraud", technical=False)
    assert undone.outcome is Outcome.COMPENSATED  # the child undid its own steps
    assert shop.payment.charges == {"o1": 1000, "o3": 1000}
    assert shop.payment.refunds == {"o3": 1000}


async def test_cancelling_the_parent_cancels_the_child_under_way(
    bus: Bus, strategy: tuple[str, str]
) -> None:
    services, held, payment = gated_shop()
    try:
        async with placed(bus, strategy, reserved_parent(), services) as orders:
            parent = await orders.start(PlaceOrder("o1", "ann", "book", 1, 1000))
            with anyio.fail_after(10):
                await held.entered.wait()
            assert await orders.cancel(parent)
            held.gate.set()
            result = await orders.result(parent, timeout=10)
            children = orders.children["reserve"]  # type: ignore[attr-defined]
            child = await children.result(
                f"reservation-{parent.split('-')[-2]}-1.parent_order.reserve"
            )
    finally:
        held.gate.set()
    assert result.outcome is Outcome.CANCELLED
    assert result.failure == Failure("reserve", "cancelled", technical=False)
    assert child.outcome is Outcome.CANCELLED
    assert payment.refunds == {"o1": 1000}


class LateFraudScreen(FraudService):
    """Screens (and finds eve suspicious) only once `ready` is set."""

    def __init__(self, ready: anyio.Event) -> None:
        super().__init__(suspicious=frozenset({"eve"}))
        self.ready = ready

    async def screen(self, msg: Screen) -> Cleared | Rejected:
        await self.ready.wait()
        return await FraudService.screen.__wrapped__(self, msg)  # type: ignore[attr-defined]


async def test_a_failing_branch_cancels_the_child_under_way_in_its_sibling(
    bus: Bus, strategy: tuple[str, str]
) -> None:
    """The fraud screen refuses while the reservation, a child in the other branch, is
    under way: the child is cancelled, and its charge undone."""
    steps = {step.name: step for step in order_workflow.steps}
    parent = reserved_parent()
    reserve = parent.subworkflows["reserve"]
    screen = Step(
        "fraud_check",
        "fraud",
        lambda c: Screen(c.input.order_id, c.input.customer, c.input.amount),
        nothing_to_undo=True,
    )
    workflow = Workflow(
        "screened-parent",
        PlaceOrder,
        [steps["create_order"], Parallel("both", [[reserve], [screen]])],
        services=parent.services,
        on_failure=parent.on_failure,
    )
    services, held, payment = gated_shop()
    services["fraud"] = LateFraudScreen(held.entered)
    try:
        async with placed(bus, strategy, workflow, services) as orders:
            order = await orders.start(PlaceOrder("o1", "eve", "book", 1, 1000))
            with anyio.fail_after(10):
                await held.entered.wait()
            children = orders.children["reserve"]  # type: ignore[attr-defined]
            child = child_id(order, reserve)
            with anyio.fail_after(10):
                while not any("cancel" in e for e in (await children.status(child)).history):  # noqa: ASYNC110
                    await anyio.sleep(0.01)
            held.gate.set()
            result = await orders.result(order, timeout=10)
            child_result = await children.result(child, timeout=10)
    finally:
        held.gate.set()
    # The cancel reaches the child before its step under way ends (it unwinds itself), or,
    # across processes, just after (it completed, and the parent has it undo its steps).
    assert (result.outcome, child_result.outcome) in (
        (Outcome.FAILED, Outcome.CANCELLED),
        (Outcome.COMPENSATED, Outcome.COMPENSATED),
    )
    assert result.failure == Failure("fraud_check", "suspected fraud", technical=False)
    assert payment.refunds == payment.charges == {"o1": 1000}


class Total(msgspec.Struct, frozen=True):
    items: int


def nested_workflow() -> Workflow[PlaceOrder]:
    """Every construct inside another: a parallel of a branch holding a sub-workflow, a wait
    then a compute, and a parallel (joined by ANY) of a sleep and a compute."""
    steps = {step.name: step for step in order_workflow.steps}
    reservation = reservation_workflow()
    big = Branch(
        "big",
        lambda c: c.input.amount > 500,
        then=[SubWorkflow("reserve", reservation, lambda c: c.input)],
    )
    return Workflow(
        "nested",
        PlaceOrder,
        [
            steps["create_order"],
            Parallel(
                "all",
                [
                    [big],
                    [
                        WaitFor("approval", "approved", Approval),
                        Compute("count", lambda c: Total(c.input.quantity), returns=Total),
                    ],
                    [
                        Parallel(
                            "inner",
                            [
                                [Sleep("nap", seconds=0)],
                                [Compute("twice", lambda c: Total(2), returns=Total)],
                            ],
                            join=ANY,
                        )
                    ],
                ],
            ),
            Step(
                "confirmation",
                "email",
                lambda c: SendEmail(
                    c.input.customer,
                    f"{c.results['count'].items} by {c.results['approval'].by}",
                ),
                wait=False,
                reads=("count", "approval"),
            ),
        ],
        services=order_workflow.services,
        on_failure=order_workflow.on_failure,
    )


async def test_constructs_nested_in_each_other_end_alike_under_every_strategy(
    bus: Bus, strategy: tuple[str, str]
) -> None:
    """The branches' replies, the signal's payload and the computes' come together at the
    join whichever branch ends first, under every strategy and layout."""
    email = EmailService()
    services = {
        "order": OrderService(),
        "payment": PaymentService(),
        "fulfillment": FulfillmentService(stock={"book": 5}),
        "email": email,
    }
    async with placed(bus, strategy, nested_workflow(), services) as orders:
        order = await orders.start(PlaceOrder("o1", "ann", "book", 2, 1000))
        await orders.signal(order, "approved", Approval("mia"))
        result = await orders.result(order, timeout=10)
        await anyio.lowlevel.checkpoint()  # the confirmation is told: it may still be on its way
        with anyio.fail_after(5):
            while not email.sent:  # noqa: ASYNC110
                await anyio.sleep(0.01)
    assert result.outcome is Outcome.COMPLETED
    assert set(result.results) == {"create_order", "reserve", "approval", "count", "twice"}
    assert result.results["count"] == Total(2)
    assert result.results["reserve"].outcome is Outcome.COMPLETED
    assert email.sent == [("ann", "2 by mia")]
