"""A nats-server with users and subject permissions: a refused subject is a clear error at the
caller, never a hang, and credentials never reach a log or an error message."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

import anyio
import pytest

from actors import ActorSystem
from brokers import BusConnectionError, NatsBus, NatsServer, PermissionDeniedError

from .actors_fixtures import Counter, GetTotal
from .helpers import Inbox, until

pytestmark = [pytest.mark.anyio, pytest.mark.nats]

# `orders` may use orders.> and the actors under corps.actors.orders.>; `billing` is
# the only one allowed billing.> and the actor corps.actors.ledger. Both may use their
# reply inboxes.
AUTH = """
authorization {
  users = [
    {user: orders, password: "s3cret-orders", permissions: {
      publish: {allow: ["orders.>", "corps.actors.orders.>", "_INBOX.>"]},
      subscribe: {allow: ["orders.>", "corps.actors.orders.>", "_INBOX.>"]}}},
    {user: billing, password: "s3cret-billing", permissions: {
      publish: {allow: ["billing.>", "corps.actors.ledger", "_INBOX.>"]},
      subscribe: {allow: ["billing.>", "corps.actors.ledger", "_INBOX.>"]}}}
  ]
}
"""


@pytest.fixture(scope="module")
def server() -> Iterator[NatsServer]:
    with NatsServer(jetstream=False, extra_config=AUTH) as started:
        yield started


def as_user(server: NatsServer, user: str) -> NatsBus:
    return NatsBus(server.url, user=user, password=f"s3cret-{user}")


async def test_a_request_on_a_denied_subject_fails_at_once_not_at_its_timeout(
    server: NatsServer,
) -> None:
    async with as_user(server, "billing") as billing, as_user(server, "orders") as orders:

        async def invoice(msg: object) -> None:  # would answer, if orders could reach it
            raise AssertionError("a denied request was delivered")

        await billing.subscribe("billing.invoice", invoice)
        started = anyio.current_time()
        with pytest.raises(
            PermissionDeniedError, match=re.escape("publish on 'billing.invoice'")
        ) as caught:
            await orders.request("billing.invoice", b"{}", timeout=30)
        assert anyio.current_time() - started < 5  # the server's refusal, not the 30 s timeout
        assert (caught.value.action, caught.value.subject) == ("publish", "billing.invoice")
        assert orders.stats.permission_violations == 1
        # From now on the bus knows: a publish to the subject is refused before it is sent.
        with pytest.raises(PermissionDeniedError):
            await orders.publish("billing.invoice", b"{}")
        # and other subjects still work
        inbox = Inbox()
        await orders.subscribe("orders.placed", inbox)
        await orders.publish("orders.placed", b"o1")
        await inbox.wait_for(1)


async def test_a_plain_publish_on_a_denied_subject_is_reported_then_refused(
    server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    async with as_user(server, "orders") as orders:
        await orders.publish("billing.audit", b"x")  # refused later, by the server
        await until(lambda: orders.stats.permission_violations == 1)
        assert "denies this connection publish on 'billing.audit'" in caplog.text
        with pytest.raises(PermissionDeniedError):
            await orders.publish("billing.audit", b"x")


@pytest.mark.parametrize("queue", [None, "workers"])
async def test_a_denied_subscription_raises_from_subscribe(
    server: NatsServer, queue: str | None
) -> None:
    async with as_user(server, "orders") as orders:
        with pytest.raises(
            PermissionDeniedError, match=re.escape("subscribe on 'billing.>'")
        ) as caught:
            await orders.subscribe("billing.>", Inbox(), queue=queue)
        assert caught.value.queue == queue
        assert orders.subscription_count == 0
        assert orders.stats.permission_violations == 1


async def test_actors_on_denied_subjects_fail_clearly(server: NatsServer) -> None:
    """An actor system whose user may not use a subject: spawning an actor there raises, and
    asking an actor there raises, both with the subject named."""
    async with (
        as_user(server, "orders") as orders_bus,
        ActorSystem(orders_bus) as orders_system,
        as_user(server, "billing") as billing_bus,
        ActorSystem(billing_bus) as billing_system,
    ):
        counter = await orders_system.spawn(Counter, name="orders.counter")
        assert await counter.ask(GetTotal(), timeout=5) == 0  # allowed: works
        with pytest.raises(PermissionDeniedError, match="subscribe"):
            await orders_system.spawn(Counter, name="payments")
        ledger = await billing_system.spawn(Counter, name="ledger")
        assert await ledger.ask(GetTotal(), timeout=5) == 0
        remote = orders_system.ref(Counter, "ledger")
        with anyio.fail_after(5), pytest.raises(PermissionDeniedError, match="publish"):
            await remote.ask(GetTotal(), timeout=30)


async def test_credentials_never_reach_logs_or_errors(
    server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = server.url.replace("nats://", "nats://orders:s3cret-orders@")
    async with NatsBus(url) as bus:
        assert bus.connected_url == server.url.replace("nats://", "nats://***@")
        server.restart()  # a lost and re-established connection is logged
        await until(lambda: bus.stats.reconnects == 1, timeout=10)
        await bus.flush()
    wrong = server.url.replace("nats://", "nats://orders:wr0ng-s3cret@")
    with pytest.raises(BusConnectionError) as caught:
        await NatsBus(wrong, max_reconnect_attempts=0, connect_attempts=1).connect()
    assert "s3cret" not in str(caught.value)
    assert "NATS connection lost" in caplog.text
    assert "s3cret" not in caplog.text
