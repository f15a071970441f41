"""A choreography's events on a bus that can lose them: acknowledged by their receivers in
batches, sent again until they are, and acknowledged only to the choreography's own subjects."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

import anyio
import msgspec
import pytest

from actors import MESSAGE_ID, ActorSystem
from brokers import Bus, Headers, MemoryBus, Msg, NatsBus, NatsServer
from coordination import (
    EventSourced,
    FrontController,
    Outcome,
    QueryAll,
    StampCoupled,
    Workflow,
)
from coordination.choreography._engine import Choreography
from coordination.choreography._events import Advance
from coordination.scenarios.order_placement import (
    EmailService,
    FulfillmentService,
    OrderService,
    PaymentService,
    PlaceOrder,
    order_workflow,
)

from .helpers import Inbox

pytestmark = pytest.mark.anyio

CHOREOGRAPHIES: dict[str, type[Choreography[PlaceOrder]]] = {
    "front_controller": FrontController,
    "stamp_coupled": StampCoupled,
    "query_all": QueryAll,
    "event_sourced": EventSourced,
}

QUICK_STEPS: Workflow[PlaceOrder] = Workflow(
    "order-placement",
    PlaceOrder,
    [replace(step, timeout=0.2) for step in order_workflow.steps],
    services=order_workflow.services,
    on_failure=order_workflow.on_failure,
)
"""Order placement with a 0.2 s timeout per step: a lost event is sent again after 0.2 s."""


class LossyBus(MemoryBus):
    """Loses the first delivery of every choreography event (a cut connection would)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()
        self.lost = 0

    async def publish(
        self, subject: str, data: bytes, headers: Headers | None = None, reply: str | None = None
    ) -> None:
        message_id = headers.get(MESSAGE_ID, "") if headers else ""
        event = ".advance." in message_id or ".unwind." in message_id
        if (event or message_id.endswith(".ended")) and message_id not in self.seen:
            self.seen.add(message_id)
            self.lost += 1
            return
        await super().publish(subject, data, headers, reply)


class Services:
    def __init__(self) -> None:
        self.orders = OrderService()
        self.payment = PaymentService(declined=frozenset({"mallory"}))
        self.fulfillment = FulfillmentService(stock={"book": 1000})
        self.email = EmailService()


@asynccontextmanager
async def choreography(
    bus: Bus, name: str, workflow: Workflow[PlaceOrder], acknowledged: bool | None = None
) -> AsyncIterator[tuple[Choreography[PlaceOrder], Services]]:
    services = Services()
    async with ActorSystem(bus) as system:
        for actor_name, actor in [
            ("order", services.orders),
            ("payment", services.payment),
            ("fulfillment", services.fulfillment),
            ("email", services.email),
        ]:
            await system.spawn(lambda actor=actor: actor, name=actor_name)
        async with CHOREOGRAPHIES[name](system, workflow, acknowledged=acknowledged) as strategy:
            yield strategy, services


@pytest.mark.parametrize("name", sorted(CHOREOGRAPHIES))
async def test_a_lost_event_is_sent_again_until_it_is_acknowledged(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("coordination.choreography._engine.EVENT_TIMEOUT", 0.2)  # Ended, Begin
    bus = LossyBus()
    async with bus, choreography(bus, name, QUICK_STEPS, acknowledged=True) as (strategy, shop):
        placed = [PlaceOrder(f"o{n}", "ann", "book", 1, 1000) for n in range(10)]
        declined = PlaceOrder("o-declined", "mallory", "book", 1, 1000)
        ids = [await strategy.start(order) for order in [*placed, declined]]
        with anyio.fail_after(20):
            results = [await strategy.result(workflow_id) for workflow_id in ids]
    assert bus.lost >= len(ids) * 2  # every event of every order was lost once
    assert [r.outcome for r in results] == [Outcome.COMPLETED] * 10 + [Outcome.FAILED]
    # each effect once, though every event that caused it came twice
    assert shop.payment.charges == {order.order_id: 1000 for order in placed}
    assert sorted(shop.fulfillment.shipped) == sorted(order.order_id for order in placed)
    assert len(shop.email.sent) == len(ids)


async def test_in_memory_events_are_told_without_acknowledgements() -> None:
    bus = MemoryBus()
    async with bus, choreography(bus, "stamp_coupled", order_workflow) as (strategy, _):
        acks = Inbox()
        await bus.subscribe("corps.actors.>", acks)
        workflow_id = await strategy.start(PlaceOrder("o1", "ann", "book", 1, 1000))
        await strategy.result(workflow_id, timeout=5)
    assert strategy.acknowledged is False
    assert not [msg for msg in acks.messages if ".acks." in msg.subject]


@pytest.mark.nats
async def test_on_nats_events_are_acknowledged_in_batches(nats_server: NatsServer) -> None:
    bus = NatsBus(nats_server.url)
    async with bus, choreography(bus, "stamp_coupled", order_workflow) as (strategy, shop):
        assert strategy.acknowledged is True
        batches: list[list[str]] = []

        async def count(msg: Msg) -> None:
            batches.append(msgspec.msgpack.decode(msg.data, type=list[str]))

        await bus.subscribe("corps.actors.stamp_coupled.order-placement.acks.*", count)
        await bus.flush()
        orders = [PlaceOrder(f"o{n}", "ann", "book", 1, 1000) for n in range(200)]
        with anyio.fail_after(20):
            ids = [await strategy.start(order) for order in orders]
            for workflow_id in ids:
                await strategy.result(workflow_id)
            await bus.flush()
    acknowledged = [message_id for batch in batches for message_id in batch]
    # Advance to each of the 5 steps and Ended: 6 events per order, each acknowledged once
    assert len(acknowledged) == len(set(acknowledged)) == 6 * len(orders)
    assert len(batches) * 3 <= len(acknowledged)  # far fewer messages than events
    assert len(shop.email.sent) == len(orders)


async def test_an_acknowledgement_goes_only_to_the_choreographys_own_subjects() -> None:
    bus = MemoryBus()
    async with bus, choreography(bus, "stamp_coupled", order_workflow, True) as (strategy, _):
        elsewhere = Inbox()
        await bus.subscribe("corps.actors.elsewhere", elsewhere)
        await bus.subscribe("corps.actors.stamp_coupled.order-placement.acks.*", elsewhere)
        forged = Advance(
            "o-forged", 99, route="stamp_coupled.order-placement", ack="corps.actors.elsewhere"
        )
        ref = strategy._adapters["order"]
        await ref.tell(forged, message_id="forged-1")
        genuine = await strategy.start(PlaceOrder("o1", "ann", "book", 1, 1000))
        assert (await strategy.result(genuine, timeout=5)).outcome is Outcome.COMPLETED
        await anyio.sleep(0.05)  # past an acknowledgement tick
    assert elsewhere.messages  # the genuine order's acknowledgements
    assert all(".acks." in msg.subject for msg in elsewhere.messages)
    assert not any(b"forged-1" in msg.data for msg in elsewhere.messages)
