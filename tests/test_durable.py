"""Durable workflow state: a Mediator on an SQLite store takes up, when it starts again, the
instances a stopped mediator left running, without doing any step's effect twice."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from brokers import Bus
from coordination import Failure, Mediator, Outcome, SqliteStateStore
from coordination._store import InstanceState
from coordination.scenarios.order_placement import Charge, Charged, PlaceOrder, order_workflow

from .helpers import until
from .test_strategies import GatedFulfillment, open_shop, order

pytestmark = pytest.mark.anyio


async def test_states_round_trip_typed_through_the_file(tmp_path: Path) -> None:
    path = tmp_path / "states.db"
    store = SqliteStateStore(path, order_workflow)
    running = InstanceState(
        "order-placement-1",
        PlaceOrder("o1", "ann", "book", 1, 1000),
        current_step="fulfillment",
        completed=["create_order", "payment"],
        results={"payment": Charged("o1", 1000)},
    )
    ended = InstanceState(
        "order-placement-2",
        PlaceOrder("o2", "mallory", "book", 1, 1000),
        outcome=Outcome.FAILED,
        failure=Failure("payment", "card declined", technical=False),
    )
    await store.save(running)
    await store.save(ended)
    store.close()
    again = SqliteStateStore(path, order_workflow)  # another process would see the same
    loaded = await again.load("order-placement-1")
    assert loaded == running  # typed: the input and the replies come back as Structs
    assert [s.workflow_id for s in await again.running()] == ["order-placement-1"]
    loaded_ended = await again.load("order-placement-2")
    assert loaded_ended is not None
    assert loaded_ended.failure == ended.failure
    assert await again.load("nope") is None
    again.close()


async def test_a_restarted_mediator_finishes_what_the_last_one_left(
    bus: Bus, tmp_path: Path
) -> None:
    path = tmp_path / "orders.db"
    fulfillment = GatedFulfillment()
    # the shop's own strategy is not used: the mediators under test are made here
    async with open_shop(bus, fulfillment=fulfillment, strategy="stamp_coupled") as shop:
        first = SqliteStateStore(path, order_workflow)
        async with Mediator(shop.system, order_workflow, store=first) as mediator:
            workflow_id = await mediator.start(order(1))
            with anyio.fail_after(5):
                await fulfillment.entered.wait()
        # the mediator is gone with the fulfillment under way; the services go on
        first.close()
        fulfillment.gate.set()
        second = SqliteStateStore(path, order_workflow)
        async with Mediator(shop.system, order_workflow, store=second) as again:
            assert again.resumed == 1
            result = await again.result(workflow_id, timeout=5)
            assert result.outcome is Outcome.COMPLETED
            assert result.results["payment"] == Charged("o1", 1000)
            status = await again.status(workflow_id)
            assert status.completed_steps == tuple(s.name for s in order_workflow.steps)
        await until(lambda: shop.orders.orders.get("o1") == "placed")
        second.close()
    assert shop.payment.charges == {"o1": 1000}  # charged once
    assert fulfillment.shipped == {"o1": 1}  # shipped once: the resent Fulfill was a duplicate
    assert shop.email.sent == [("ann", "order o1 placed")]


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
                current_step="fulfillment",
                completed=["create_order", "payment"],
                results={"payment": Charged("o9", 1000)},
                failure=Failure("fulfillment", "backordered", technical=False),
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
