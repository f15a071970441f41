"""Durable workflow state: a Mediator on an SQLite store takes up, when it starts again, the
instances a stopped mediator left running, without doing any step's effect twice."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest

from actors import ActorSystem, idempotent
from brokers import Bus, NatsBus, NatsServer
from coordination import (
    Branch,
    Compute,
    EventSourced,
    EventStore,
    Failure,
    FrontController,
    ManualClock,
    Mediator,
    MemoryEventStore,
    MemoryStateStore,
    NatsEventStore,
    NatsStateStore,
    Outcome,
    Rejected,
    Sleep,
    SqliteEventStore,
    SqliteStateStore,
    StateStore,
    Strategy,
    UnknownWorkflowError,
    WaitFor,
    Workflow,
    WorkflowContext,
)
from coordination.choreography._engine import Choreography
from coordination.core import Progress
from coordination.scenarios.order_placement import (
    HIGH_VALUE,
    Charge,
    Charged,
    EmailService,
    FraudService,
    Fulfill,
    Fulfilled,
    FulfillmentService,
    OrderService,
    PaymentService,
    PlaceOrder,
    order_workflow,
    screened_order_workflow,
)
from coordination.stores import InstanceState

from .helpers import until
from .test_language import Basket, Billing, Reserve, Reserved, Warehouse, basket_workflow
from .test_strategies import STRATEGIES, GatedFulfillment, open_shop, order

pytestmark = pytest.mark.anyio


@dataclass
class Place:
    """Where a durable store keeps its instances; `open()` gives a store on it, as a new
    process would get one."""

    kind: str
    path: Path
    url: str = ""
    bucket: str = field(default_factory=lambda: f"corps-test-{uuid.uuid4().hex[:12]}")
    _buses: list[NatsBus] = field(default_factory=list)

    async def open(self, workflow: Workflow[Any] = order_workflow) -> StateStore:
        if self.kind == "sqlite":
            return SqliteStateStore(self.path, workflow)
        bus = NatsBus(self.url)
        await bus.connect()
        self._buses.append(bus)
        return NatsStateStore(bus, workflow, bucket=self.bucket)

    async def open_log(self) -> EventStore:
        if self.kind == "sqlite":
            return SqliteEventStore(self.path)
        bus = NatsBus(self.url)
        await bus.connect()
        self._buses.append(bus)
        name = self.bucket.replace("-", "_").upper()
        return NatsEventStore(bus, stream=name, prefix=f"corps.test.{self.bucket}")

    async def close(self) -> None:
        for bus in self._buses:
            await bus.close()


@pytest.fixture(params=["sqlite", pytest.param("nats-kv", marks=pytest.mark.nats)])
async def place(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Place]:
    url = ""
    if request.param == "nats-kv":
        url = request.getfixturevalue("nats_server").url
    where = Place(request.param, tmp_path / "orders.db", url)
    yield where
    await where.close()


async def test_states_round_trip_typed_through_the_store(place: Place) -> None:
    store = await place.open()
    running = InstanceState(
        "order-placement-1",
        PlaceOrder("o1", "ann", "book", 1, 1000),
        {"payment": Charged("o1", 1000)},
        Progress(active=("fulfillment",), completed=("create_order", "payment")),
    )
    ended = InstanceState(
        "order-placement-2",
        PlaceOrder("o2", "mallory", "book", 1, 1000),
        progress=Progress(
            Outcome.FAILED, failure=Failure("payment", "card declined", technical=False)
        ),
    )
    finished_later = InstanceState("order-placement-3", PlaceOrder("o3", "ann", "book", 1, 1))
    for state in (running, ended, finished_later):
        await store.save(state)
    finished_later.progress.outcome = Outcome.COMPLETED
    await store.save(finished_later)
    again = await place.open()  # another process would see the same
    loaded = await again.load("order-placement-1")
    assert loaded == running  # typed: the input and the replies come back as Structs
    assert [s.workflow_id for s in await again.running()] == ["order-placement-1"]
    loaded_ended = await again.load("order-placement-2")
    assert loaded_ended is not None
    assert loaded_ended.failure == ended.failure
    assert await again.load("nope") is None
    assert await again.load("not a key!") is None


async def test_a_restarted_mediator_finishes_what_the_last_one_left(bus: Bus, place: Place) -> None:
    fulfillment = GatedFulfillment()
    # the shop's own strategy is not used: the mediators under test are made here
    async with open_shop(bus, fulfillment=fulfillment, strategy="stamp_coupled") as shop:
        first = await place.open()
        async with Mediator(shop.system, order_workflow, store=first) as mediator:
            workflow_id = await mediator.start(order(1))
            with anyio.fail_after(5):
                await fulfillment.entered.wait()
        # the mediator is gone with the fulfillment under way; the services go on
        fulfillment.gate.set()
        second = await place.open()
        async with Mediator(shop.system, order_workflow, store=second) as again:
            assert again.resumed == 1
            result = await again.result(workflow_id, timeout=5)
            assert result.outcome is Outcome.COMPLETED
            assert result.results["payment"] == Charged("o1", 1000)
            status = await again.status(workflow_id)
            assert status.completed_steps == tuple(s.name for s in order_workflow.steps)
        await until(lambda: shop.orders.orders.get("o1") == "placed")
    assert shop.payment.charges == {"o1": 1000}  # charged once
    assert fulfillment.shipped == {"o1": 1}  # shipped once: the resent Fulfill was a duplicate
    assert shop.email.sent == [("ann", "order o1 placed")]


class Quote(msgspec.Struct, frozen=True):
    total: int


def _quote(context: WorkflowContext[PlaceOrder]) -> Quote:
    return Quote(context.input.amount * context.input.quantity)


def _quoted_and_screened() -> Workflow[PlaceOrder]:
    """Order placement with a compute (a quote) and a branch on it (a fraud check)."""
    steps = {step.name: step for step in screened_order_workflow.steps}
    return Workflow(
        "quoted-screened",
        PlaceOrder,
        [
            steps["create_order"],
            Compute("quote", _quote),
            Branch(
                "high_value",
                lambda c: c.results["quote"].total >= HIGH_VALUE,
                then=[steps["fraud_check"]],
                reads=("quote",),
            ),
            steps["payment"],
            steps["fulfillment"],
            steps["confirmation"],
        ],
        services=screened_order_workflow.services,
        on_failure=screened_order_workflow.on_failure,
    )


async def test_a_restarted_mediator_goes_on_along_the_way_the_instance_took(
    bus: Bus, place: Place
) -> None:
    """The way through a branch and a compute's typed reply are kept in the store: a
    mediator that takes the instance up goes on from where it stood."""
    workflow = _quoted_and_screened()
    fulfillment = GatedFulfillment()
    async with open_shop(bus, fulfillment=fulfillment, strategy="stamp_coupled") as shop:
        await shop.system.spawn(FraudService, name="fraud")
        async with Mediator(shop.system, workflow, store=await place.open(workflow)) as first:
            workflow_id = await first.start(PlaceOrder("o1", "ann", "book", 2, HIGH_VALUE))
            with anyio.fail_after(5):
                await fulfillment.entered.wait()
        fulfillment.gate.set()
        async with Mediator(shop.system, workflow, store=await place.open(workflow)) as again:
            assert again.resumed == 1
            result = await again.result(workflow_id, timeout=5)
            status = await again.status(workflow_id)
    assert result.outcome is Outcome.COMPLETED
    assert result.results["quote"] == Quote(2 * HIGH_VALUE)  # typed, from the store
    assert status.completed_steps == (
        "create_order",
        "quote",
        "fraud_check",
        "payment",
        "fulfillment",
        "confirmation",
    )
    assert shop.payment.charges == {"o1": HIGH_VALUE}


async def test_an_unwinding_instance_goes_on_compensating(bus: Bus, tmp_path: Path) -> None:
    path = tmp_path / "orders.db"
    store = SqliteStateStore(path, order_workflow)
    async with open_shop(bus, strategy="stamp_coupled") as shop:
        # a mediator stopped after the backorder, before the refund
        await shop.system.actors["payment"].ask(Charge("o9", "ann", 1000))
        await store.save(
            InstanceState(
                "order-placement-9",
                PlaceOrder("o9", "ann", "rare", 1, 1000),
                {"payment": Charged("o9", 1000)},
                Progress(
                    completed=("create_order", "payment"),
                    failure=Failure("fulfillment", "backordered", technical=False),
                    compensating=("payment",),
                ),
            )
        )
        async with Mediator(shop.system, order_workflow, store=store) as mediator:
            assert mediator.resumed == 1
            result = await mediator.result("order-placement-9", timeout=5)
        await until(lambda: shop.orders.orders.get("o9") == "failed")
    store.close()
    assert result.outcome is Outcome.COMPENSATED
    assert shop.payment.refunds == {"o9": 1000}
    assert shop.email.sent == [("ann", "order o9 failed: backordered")]


class SlowFulfillment(FulfillmentService):
    """Takes its time, so that the mediator's process is killed with orders under way."""

    @idempotent
    async def fulfill(self, msg: Fulfill) -> Fulfilled | Rejected:
        await anyio.sleep(0.02)
        self.calls += 1
        return await super().fulfill(msg)

    calls = 0


@pytest.mark.nats
@pytest.mark.slow
async def test_a_mediator_killed_mid_run_is_taken_up_by_the_next_process(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """SIGKILL the process hosting the mediator while orders are under way; another process
    on the same SQLite file finishes every one, and no effect happens twice."""
    count = 30
    db = str(tmp_path / "orders.db")
    payment, email, orders = PaymentService(), EmailService(), OrderService()
    fulfillment = SlowFulfillment(stock={"book": 1000})
    async with NatsBus(nats_server.url) as bus, ActorSystem(bus) as system:
        for name, service in [
            ("order", orders),
            ("payment", payment),
            ("fulfillment", fulfillment),
            ("email", email),
        ]:
            await system.spawn(lambda service=service: service, name=name)
        await bus.flush()
        first = _host(nats_server.url, db, "start", str(count))
        assert first.stdout is not None
        assert first.stdout.readline().strip() == "started"
        await until(lambda: 3 <= len(fulfillment.shipped) < count, timeout=10)
        first.kill()  # SIGKILL: no goodbye, orders in every step
        first.wait(timeout=10)
        first.stdout.close()
        assert len(fulfillment.shipped) < count
        second = _host(nats_server.url, db, "resume")
        out, _ = await anyio.to_thread.run_sync(lambda: second.communicate(timeout=60))
        assert second.returncode == 0, out
        lines = out.splitlines()
        assert lines[0].startswith("resumed ")
        assert int(lines[0].split()[1]) >= 1
        assert all(line.endswith(" completed") for line in lines[1:]), out
        await until(lambda: len(email.sent) == count and len(orders.orders) == count)
        await until(lambda: set(orders.orders.values()) == {"placed"})
    # every order went through once: one charge, one shipment, one email each
    assert payment.charges == {f"o{n}": 1000 for n in range(count)}
    assert fulfillment.shipped == {f"o{n}": 1 for n in range(count)}
    assert sorted(email.sent) == sorted(("ann", f"order o{n} placed") for n in range(count))


def _host(url: str, db: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.mediator_host", url, db, *args],
        cwd=Path(__file__).resolve().parent.parent,
        stdout=subprocess.PIPE,
        text=True,
    )


async def test_a_workflow_without_progress_is_reported_stuck(bus: Bus) -> None:
    fulfillment = GatedFulfillment()
    async with open_shop(bus, fulfillment=fulfillment, strategy="stamp_coupled") as shop:
        mediator = Mediator(shop.system, order_workflow, stuck_after=0.05)
        async with mediator:
            workflow_id = await mediator.start(order(40))
            with anyio.fail_after(5):
                await fulfillment.entered.wait()
            await until(lambda: mediator.stuck() == [workflow_id])
            status = await mediator.status(workflow_id)
            assert status.current_step == "fulfillment"
            assert status.since_progress is not None
            assert status.since_progress > 0.05
            labels = {"workflow": "order-placement", "strategy": "mediator"}
            registry = shop.system.metrics.registry
            assert registry.get_sample_value("corps_workflows_stuck", labels) == 1
            fulfillment.gate.set()
            result = await mediator.result(workflow_id, timeout=5)
            assert result.outcome is Outcome.COMPLETED
            assert mediator.stuck() == []
            assert registry.get_sample_value("corps_workflows_stuck", labels) == 0
            assert (await mediator.status(workflow_id)).since_progress is None  # ended


async def test_operators_pause_resume_and_cancel_with_an_audit_trail(
    bus: Bus, tmp_path: Path
) -> None:
    fulfillment = GatedFulfillment()
    store = SqliteStateStore(tmp_path / "orders.db", order_workflow)
    shopping = open_shop(bus, fulfillment=fulfillment, strategy="stamp_coupled")
    async with shopping as shop, Mediator(shop.system, order_workflow, store=store) as mediator:
        first = await mediator.start(order(50))
        second = await mediator.start(order(51))
        with anyio.fail_after(5):
            await fulfillment.entered.wait()
        assert await mediator.pause(first, by="alice")
        assert not await mediator.pause(first, by="alice")  # paused already
        assert await mediator.pause(second, by="bob")
        fulfillment.gate.set()  # the steps under way finish; nothing more starts
        await until(lambda: fulfillment.shipped.keys() == {"o50", "o51"})
        status = await mediator.status(first)
        assert status.paused
        assert status.outcome is Outcome.RUNNING
        assert status.completed_steps == ("create_order", "payment", "fulfillment")
        assert shop.email.sent == []  # the next step waits
        assert await mediator.resume(first, by="alice")
        assert (await mediator.result(first, timeout=5)).outcome is Outcome.COMPLETED
        assert await mediator.cancel(second, by="carol")  # paused: compensated at once
        assert (await mediator.result(second, timeout=5)).outcome is Outcome.CANCELLED
        history = (await mediator.status(second)).history
        assert [entry.split(" ", 1)[1] for entry in history] == [
            "bob: pause",
            "carol: cancel",
            "carol: resume",
        ]
        assert [e.split(" ", 1)[1] for e in (await mediator.status(first)).history] == [
            "alice: pause",
            "alice: resume",
        ]
        assert not await mediator.resume(first)  # it has ended
    stored = await store.load(second)  # the trail is kept with the state
    store.close()
    assert stored is not None
    assert len(stored.history) == 3
    assert shop.fulfillment.shipped == {"o50": 1}  # the cancelled order was restocked
    assert shop.payment.refunds == {"o51": 1000}


async def choreography_on(kind: str, place: Place, system: ActorSystem) -> Strategy[PlaceOrder]:
    if kind == "front_controller":
        return FrontController(system, order_workflow, store=await place.open())
    return EventSourced(system, order_workflow, store=await place.open_log())


@pytest.mark.parametrize("kind", ["front_controller", "event_sourced"])
async def test_a_durable_choreography_answers_for_instances_of_an_earlier_run(
    bus: Bus, place: Place, kind: str
) -> None:
    """The front controller's records and the event-sourced log outlive the strategy object:
    the next one on the same file answers `status` and `result` for what the last one ran,
    and waits for the end of what it left running."""
    fulfillment = GatedFulfillment()
    async with open_shop(bus, fulfillment=fulfillment) as shop:  # the services
        async with await choreography_on(kind, place, shop.system) as first:
            declined = await first.start(order(1, customer="mallory"))
            assert (await first.result(declined, timeout=5)).outcome is Outcome.FAILED
            in_flight = await first.start(order(2))
            with anyio.fail_after(5):
                await fulfillment.entered.wait()  # held in the fulfillment step
            assert await first.pause(in_flight, by="dora")
            assert await first.resume(in_flight, by="dora")
        async with await choreography_on(kind, place, shop.system) as second:
            again = await second.result(declined, timeout=5)
            assert again.outcome is Outcome.FAILED
            assert again.failure == Failure("payment", "card declined", technical=False)
            status = await second.status(declined)
            assert (status.outcome, status.completed_steps) == (Outcome.FAILED, ("create_order",))
            status = await second.status(in_flight)
            assert status.outcome is Outcome.RUNNING
            if kind == "front_controller":  # its record keeps the operators' actions
                assert [e.split(" ", 1)[1] for e in status.history] == [
                    "dora: pause",
                    "dora: resume",
                ]
            fulfillment.gate.set()  # the services carry on; the end reaches the new one
            assert (await second.result(in_flight, timeout=5)).outcome is Outcome.COMPLETED
            with pytest.raises(UnknownWorkflowError):
                await second.status("order-placement-never-started")
    assert shop.payment.charges == {"o2": 1000}
    assert shop.fulfillment.shipped == {"o2": 1}


class FlakyStore(MemoryStateStore):
    """Fails its first `failures` saves, as a store whose server restarts would."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def save(self, state: InstanceState) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise OSError("disk I/O error")
        await super().save(state)


async def test_a_failing_store_is_tried_again_and_nothing_is_lost_or_doubled(bus: Bus) -> None:
    store = FlakyStore(failures=5)
    async with (
        open_shop(bus, strategy="stamp_coupled") as shop,
        Mediator(shop.system, order_workflow, store=store) as mediator,
    ):
        ids = [await mediator.start(order(n)) for n in range(3)]
        for workflow_id in ids:
            assert (await mediator.result(workflow_id, timeout=10)).outcome is Outcome.COMPLETED
        assert mediator.metrics.store_errors == 5
        assert len(store) == 3
    assert shop.payment.charges == {"o0": 1000, "o1": 1000, "o2": 1000}


async def test_an_empty_store_given_is_the_store_used(bus: Bus) -> None:
    """An empty store is falsy (it has a length): it must still be the one used."""
    states, log = MemoryStateStore(), MemoryEventStore()
    async with ActorSystem(bus) as system:
        assert Mediator(system, order_workflow, store=states).store is states
        assert FrontController(system, order_workflow, store=states).store is states
        assert EventSourced(system, order_workflow, store=log).store is log


@pytest.mark.parametrize(
    "strategy", ["front_controller", "front_controller+callbacks", "stamp_coupled", "event_sourced"]
)
async def test_a_choreographed_workflow_without_progress_is_reported_stuck(
    bus: Bus, strategy: str
) -> None:
    """A choreography sees less than a mediator: stuck means no end (or no step it can see)
    for `stuck_after` seconds."""
    fulfillment = GatedFulfillment()
    async with open_shop(bus, fulfillment=fulfillment, strategy="mediator") as shop:
        factory = STRATEGIES[strategy]
        choreography = factory(shop.system, order_workflow)
        assert isinstance(choreography, Choreography)
        choreography.stuck_after = 0.05
        async with choreography:
            workflow_id = await choreography.start(order(41))
            with anyio.fail_after(5):
                await fulfillment.entered.wait()
            await until(lambda: choreography.stuck() == [workflow_id])
            status = await choreography.status(workflow_id)
            assert status.since_progress is not None
            assert status.since_progress > 0.05
            labels = {"workflow": "order-placement", "strategy": choreography.strategy}
            registry = shop.system.metrics.registry
            assert registry.get_sample_value("corps_workflows_stuck", labels) == 1
            fulfillment.gate.set()
            assert (await choreography.result(workflow_id, timeout=5)).outcome is Outcome.COMPLETED
            assert choreography.stuck() == []
            assert registry.get_sample_value("corps_workflows_stuck", labels) == 0
            assert (await choreography.status(workflow_id)).since_progress is None


@pytest.mark.parametrize(
    "strategy", ["front_controller", "stamp_coupled", "query_all", "event_sourced"]
)
async def test_operators_pause_resume_and_cancel_a_choreographed_instance(
    bus: Bus, strategy: str
) -> None:
    """Every service is told to hold the instance: the step under way finishes, and the next
    event waits in the service it reaches until the instance is resumed (or cancelled)."""
    fulfillment = GatedFulfillment()
    async with open_shop(bus, fulfillment=fulfillment, strategy=strategy) as shop:
        choreography = shop.mediator
        first = await choreography.start(order(60))
        second = await choreography.start(order(61))
        with anyio.fail_after(5):
            await fulfillment.entered.wait()
        assert await choreography.pause(first, by="alice")
        assert await choreography.pause(second, by="bob")
        await anyio.sleep(0.05)  # the holds reach every service
        fulfillment.gate.set()  # the steps under way finish; nothing more starts
        await until(lambda: fulfillment.shipped.keys() == {"o60", "o61"})
        await anyio.sleep(0.1)
        status = await choreography.status(first)
        assert status.paused
        assert status.outcome is Outcome.RUNNING
        assert shop.email.sent == []  # the next step waits
        assert await choreography.resume(first, by="alice")
        assert not await choreography.resume(first, by="alice")  # not paused any more
        assert (await choreography.result(first, timeout=5)).outcome is Outcome.COMPLETED
        assert await choreography.cancel(second, by="carol")
        assert (await choreography.result(second, timeout=5)).outcome is Outcome.CANCELLED
        history = (await choreography.status(second)).history
        assert [entry.split(" ", 1)[1] for entry in history] == [
            "bob: pause",
            "carol: cancel",
            "carol: resume",
        ]
        assert not await choreography.pause(first)  # it has ended
    assert shop.fulfillment.shipped == {"o60": 1}  # the cancelled order was restocked
    assert shop.payment.refunds == {"o61": 1000}


class StallingStore(MemoryStateStore):
    """A store whose saves of one instance hang until let go, as a save to a key-value
    server that restarts waits for its timeout."""

    def __init__(self) -> None:
        super().__init__()
        self.stalled: str | None = None
        self.stalling = anyio.Event()
        self.let_go = anyio.Event()

    async def save(self, state: InstanceState) -> None:
        if state.workflow_id == self.stalled and state.progress.completed:
            self.stalling.set()
            await self.let_go.wait()
        await super().save(state)


async def test_a_save_that_hangs_holds_its_instance_and_no_other(bus: Bus) -> None:
    """Before this, the mediator saved in the handler of every reply: one instance's hung save
    held every other instance's replies, and their steps timed out one attempt after another
    until their retries were spent (a step a service had done was then never compensated)."""
    store = StallingStore()
    async with (
        open_shop(bus, strategy="stamp_coupled") as shop,
        Mediator(shop.system, order_workflow, store=store) as mediator,
    ):
        stalled = await mediator.start(order(1))
        store.stalled = stalled
        with anyio.fail_after(5):
            await store.stalling.wait()
        others = [await mediator.start(order(n)) for n in range(2, 5)]
        for workflow_id in others:
            assert (await mediator.result(workflow_id, timeout=5)).outcome is Outcome.COMPLETED
        assert (await mediator.status(stalled)).outcome is Outcome.RUNNING
        store.let_go.set()
        assert (await mediator.result(stalled, timeout=5)).outcome is Outcome.COMPLETED
    assert shop.payment.charges == {f"o{n}": 1000 for n in range(1, 5)}


async def test_any_mediator_on_a_shared_store_answers_for_any_instance(
    bus: Bus, tmp_path: Path
) -> None:
    """Two mediators (processes, say) on one SQLite file: each answers status and result for
    the other's instances, from the store once the one that started them has stopped."""
    path = tmp_path / "shared.db"
    async with (
        open_shop(bus, strategy="stamp_coupled") as shop,
        ActorSystem(bus) as here,
        Mediator(here, order_workflow, store=SqliteStateStore(path, order_workflow)) as ours,
    ):
        async with (
            ActorSystem(bus) as there,
            Mediator(there, order_workflow, store=SqliteStateStore(path, order_workflow)) as theirs,
        ):
            done = await theirs.start(order(1))
            declined = await theirs.start(order(2, customer="mallory"))
            assert (await ours.result(done, timeout=5)).outcome is Outcome.COMPLETED
            assert (await ours.status(declined)).outcome in (Outcome.RUNNING, Outcome.FAILED)
            await theirs.result(declined, timeout=5)
        # the starter has stopped: the store answers
        assert (await ours.status(done)).outcome is Outcome.COMPLETED
        ended = await ours.result(declined)
        assert ended.outcome is Outcome.FAILED
        assert ended.failure is not None
        assert ended.failure.step == "payment"
        assert "create_order" in ended.results
    assert shop.payment.charges == {"o1": 1000}


async def test_a_mediator_takes_up_only_the_instances_no_live_process_drives(
    bus: Bus, tmp_path: Path
) -> None:
    """On one SQLite file: a mediator that starts while another drives an instance leaves it
    to that one. Once the driver is gone, a mediator that was already running says so plainly
    when asked to cancel it, and the next mediator to start takes it up and ends it."""
    path = tmp_path / "shared.db"

    def store() -> SqliteStateStore[PlaceOrder]:
        return SqliteStateStore(path, order_workflow)

    gated = GatedFulfillment()
    async with (
        open_shop(bus, fulfillment=gated, strategy="stamp_coupled") as shop,
        ActorSystem(bus) as here,
        contextlib.AsyncExitStack() as running_here,
    ):
        async with (
            ActorSystem(bus) as there,
            Mediator(there, order_workflow, store=store()) as theirs,
        ):
            held = await theirs.start(order(1))
            with anyio.fail_after(5):
                await gated.entered.wait()
            ours = await running_here.enter_async_context(
                Mediator(here, order_workflow, store=store())
            )
            assert ours.resumed == 0  # its starter still drives it
            assert (await ours.status(held)).outcome is Outcome.RUNNING
        # its starter is gone, and ours did not take it up
        with anyio.fail_after(10), pytest.raises(UnknownWorkflowError, match="takes it up"):
            await ours.cancel(held)
        async with ActorSystem(bus) as later, Mediator(later, order_workflow, store=store()) as it:
            assert it.resumed == 1
            gated.gate.set()
            assert (await it.result(held, timeout=10)).outcome is Outcome.COMPLETED
    assert shop.payment.charges == {"o1": 1000}  # charged once, whoever drove it


class Approval(msgspec.Struct, frozen=True):
    by: str


def _approved() -> Workflow[PlaceOrder]:
    steps = {step.name: step for step in order_workflow.steps}
    return Workflow(
        "approved",
        PlaceOrder,
        [
            steps["create_order"],
            steps["payment"],
            steps["fulfillment"],
            WaitFor("approval", "approved", Approval),
            steps["confirmation"],
        ],
        services=order_workflow.services,
        on_failure=order_workflow.on_failure,
    )


async def test_a_signal_kept_in_the_store_survives_a_restart(bus: Bus, place: Place) -> None:
    """A signal that came before the instance waits is kept with its replies: the mediator
    that takes the instance up after a restart finds it there and goes on."""
    workflow = _approved()
    fulfillment = GatedFulfillment()
    async with open_shop(bus, fulfillment=fulfillment, strategy="stamp_coupled") as shop:
        async with Mediator(shop.system, workflow, store=await place.open(workflow)) as first:
            workflow_id = await first.start(order(1))
            with anyio.fail_after(5):
                await fulfillment.entered.wait()
            await first.signal(workflow_id, "approved", Approval("mia"))  # early
        fulfillment.gate.set()
        async with Mediator(shop.system, workflow, store=await place.open(workflow)) as again:
            assert again.resumed == 1
            result = await again.result(workflow_id, timeout=5)
    assert result.outcome is Outcome.COMPLETED
    assert result.results["approval"] == Approval("mia")


def sleepy_workflow() -> Workflow[PlaceOrder]:
    """An order that sleeps overnight between its creation and its charge."""
    steps = {step.name: step for step in order_workflow.steps}
    return Workflow(
        "sleepy",
        PlaceOrder,
        [steps["create_order"], Sleep("overnight", seconds=3_600), steps["payment"]],
        services=order_workflow.services,
    )


async def until_asleep(strategy: Any, workflow_id: str) -> None:
    with anyio.fail_after(5):
        while (await strategy.status(workflow_id)).current_step != "overnight":  # noqa: ASYNC110
            await anyio.sleep(0.01)


async def test_a_sleep_survives_a_restart_on_a_durable_store(
    bus: Bus, place: Place, clock: ManualClock
) -> None:
    """The end of a sleep is kept in the store: a mediator that takes the instance up after
    a restart sleeps until then, not a whole sleep again."""
    workflow = sleepy_workflow()
    async with open_shop(bus, strategy="stamp_coupled") as shop:
        store = await place.open(workflow)
        async with Mediator(shop.system, workflow, store=store, clock=clock) as first:
            workflow_id = await first.start(order(1))
            await until_asleep(first, workflow_id)
        await clock.advance(3_000)  # the process was down for most of the night
        store = await place.open(workflow)
        async with Mediator(shop.system, workflow, store=store, clock=clock) as again:
            assert again.resumed == 1
            await clock.advance(599)
            assert (await again.status(workflow_id)).current_step == "overnight"
            await clock.advance(1)
            result = await again.result(workflow_id, timeout=5)
    assert result.outcome is Outcome.COMPLETED
    assert shop.payment.charges == {"o1": 1000}


class GatedWarehouse(Warehouse):
    """Holds every reservation until the test opens the gate."""

    def __init__(self, stock: dict[str, int]) -> None:
        super().__init__(stock)
        self.gate = anyio.Event()
        self.entered = anyio.Event()

    @idempotent
    async def reserve(self, msg: Reserve) -> Reserved | Rejected:
        self.entered.set()
        await self.gate.wait()
        return await Warehouse.reserve.__wrapped__(self, msg)  # type: ignore[attr-defined]


async def test_a_restarted_mediator_goes_on_with_the_items_under_way(
    bus: Bus, place: Place
) -> None:
    """Two items of a for-each are under way when the mediator stops: the next one sends
    them again with their message ids (each reserved once), then the last item, and puts
    the replies together in order."""
    workflow = basket_workflow()
    warehouse = GatedWarehouse({"pen": 5, "ink": 5})
    async with ActorSystem(bus) as system:
        await system.spawn(lambda: warehouse, name="warehouse")
        await system.spawn(Billing, name="billing")
        async with Mediator(system, workflow, store=await place.open(workflow)) as first:
            workflow_id = await first.start(Basket("b1", ["pen", "ink", "pen"]))
            with anyio.fail_after(5):
                await warehouse.entered.wait()
            status = await first.status(workflow_id)
        warehouse.gate.set()
        await system.idle()
        async with Mediator(system, workflow, store=await place.open(workflow)) as again:
            assert again.resumed == 1
            result = await again.result(workflow_id, timeout=5)
    assert set(status.active_steps) == {"reserve[0]", "reserve[1]"}
    assert result.outcome is Outcome.COMPLETED
    assert [r.item for r in result.results["reserve"]] == ["pen", "ink", "pen"]
    assert warehouse.stock == {"pen": 3, "ink": 4}  # each item reserved once


async def test_a_sleep_survives_a_restart_of_a_front_controller_on_a_durable_store(
    bus: Bus, place: Place, clock: ManualClock
) -> None:
    """A choreographed instance sleeps with the process that started it: on a durable store
    the front controller's record keeps the sleep's end and the instance's data, and the
    front controller started after it wakes the instance then."""
    workflow = sleepy_workflow()
    async with open_shop(bus, strategy="stamp_coupled") as shop:
        store = await place.open(workflow)
        async with FrontController(shop.system, workflow, store=store, clock=clock) as first:
            workflow_id = await first.start(order(1))
            await until_asleep(first, workflow_id)
        await clock.advance(3_000)  # the process was down for most of the night
        store = await place.open(workflow)
        async with FrontController(shop.system, workflow, store=store, clock=clock) as again:
            assert again.resumed == 1
            assert (await again.status(workflow_id)).wakes_at == clock.now() + 600
            await clock.advance(600)
            result = await again.result(workflow_id, timeout=5)
    assert result.outcome is Outcome.COMPLETED
    assert shop.payment.charges == {"o1": 1000}
