"""Prometheus metrics: scraped from the real HTTP endpoint on 127.0.0.1 and parsed with
prometheus_client's parser; values checked against what happened."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from actors import (
    ActorSystem,
    Directive,
    Message,
    SupervisorPolicy,
    metrics_app,
    serve_metrics,
)
from brokers import Bus

from .actors_fixtures import Add, Counter, Fail, GetTotal
from .helpers import until

pytestmark = pytest.mark.anyio


async def http(url_host: str, port: int, request: bytes) -> tuple[int, bytes, bytes]:
    """One raw HTTP exchange: (status, head, body)."""
    reader, writer = await asyncio.open_connection(url_host, port)
    writer.write(request)
    await writer.drain()
    response = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), head, body


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(host: str, port: int) -> Samples:
    status, head, body = await http(host, port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 200, body
    assert b"text/plain; version=" in head
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        assert family.documentation, family.name  # every metric explains itself
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def value(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return samples[name, tuple(sorted(labels.items()))]


class NotCounted(Message):
    """A type no actor handles: sent raw, it is dead-lettered as undecodable."""


async def test_actor_and_bus_metrics_say_what_happened(bus: Bus, bus_kind: str) -> None:
    restart = SupervisorPolicy(Directive.RESTART, backoff_initial=0)
    async with ActorSystem(bus, supervision=restart) as system:
        counter = await system.spawn(Counter, name="counter")
        for _ in range(5):
            await counter.tell(Add(1))
        with pytest.raises(Exception, match="boom"):
            await counter.ask(Fail())
        await bus.publish(counter.subject, b"\xc1 not msgpack")
        assert await counter.ask(GetTotal()) == 0  # restarted with fresh state after the failure
        await until(lambda: system.dead_letters.total == 2)
        async with await serve_metrics(system) as server:
            assert server.host == "127.0.0.1"
            samples = await scrape(server.host, server.port)
    assert value(samples, "corps_actor_messages_total", actor="counter", outcome="ok") == 6
    assert value(samples, "corps_actor_messages_total", actor="counter", outcome="error") == 1
    assert (
        value(samples, "corps_actor_messages_total", actor="counter", outcome="dead_lettered") == 2
    )
    assert value(samples, "corps_actor_restarts_total", actor="counter") == 1
    assert value(samples, "corps_actor_mailbox_depth", actor="counter") == 0
    # the histogram counts every handled message, failed ones included
    assert value(samples, "corps_actor_handler_seconds_count", actor="counter") == 7
    assert value(samples, "corps_actor_handler_seconds_bucket", actor="counter", le="+Inf") == 7
    assert value(samples, "corps_dead_letters_total", reason="handler_error") == 1
    assert value(samples, "corps_dead_letters_total", reason="undecodable") == 1
    published = value(samples, "corps_bus_messages_published_total", bus=bus_kind)
    assert published >= 9  # 5 tells, 2 asks and their replies, the raw publish
    assert value(samples, "corps_bus_published_bytes_total", bus=bus_kind) > published


async def test_the_endpoint_serves_get_on_its_path_only_and_stops_with_the_system() -> None:
    before = asyncio.all_tasks()
    async with ActorSystem() as system:
        server = await serve_metrics(system, path="/scrape")
        host, port = server.host, server.port
        assert server.url == f"http://127.0.0.1:{port}/scrape"
        status, _, body = await http(host, port, b"GET /scrape HTTP/1.1\r\n\r\n")
        assert status == 200
        assert b"corps_bus_messages_published_total" in body
        status, _, body = await http(host, port, b"HEAD /scrape HTTP/1.1\r\n\r\n")
        assert (status, body) == (200, b"")
        status, head, _ = await http(host, port, b"POST /scrape HTTP/1.1\r\n\r\n")
        assert status == 405
        assert b"Allow: GET, HEAD" in head
        assert (await http(host, port, b"GET /metrics HTTP/1.1\r\n\r\n"))[0] == 404
        assert (await http(host, port, b"nonsense\r\n\r\n"))[0] == 400
        assert (await http(host, port, b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\n\r\n"))[0] == 400
    with pytest.raises(ConnectionRefusedError):  # nothing listens once the system stopped
        await asyncio.open_connection(host, port)
    assert asyncio.all_tasks() <= before  # and nothing is left running


async def test_two_systems_keep_separate_registries() -> None:
    async with ActorSystem() as first, ActorSystem() as second:
        await (await first.spawn(Counter, name="a")).ask(GetTotal())
        await (await second.spawn(Counter, name="b")).ask(GetTotal())
        names = {
            s.labels.get("actor")
            for f in first.metrics.registry.collect()
            for s in f.samples
            if s.name == "corps_actor_messages_total"
        }
        assert names == {"a"}
        assert first.metrics.registry is not second.metrics.registry


async def test_a_registry_of_yours_forgets_the_system_when_it_stops() -> None:
    registry = CollectorRegistry()
    async with ActorSystem(registry=registry) as system:
        await (await system.spawn(Counter, name="c")).ask(GetTotal())
        assert (
            registry.get_sample_value("corps_actor_messages_total", {"actor": "c", "outcome": "ok"})
            == 1
        )
    assert (
        registry.get_sample_value("corps_actor_messages_total", {"actor": "c", "outcome": "ok"})
        is None
    )
    async with ActorSystem(registry=registry) as again:  # the same registry, a new system
        await (await again.spawn(Counter, name="c")).ask(GetTotal())
        assert (
            registry.get_sample_value("corps_actor_messages_total", {"actor": "c", "outcome": "ok"})
            == 1
        )


async def test_the_asgi_app_serves_the_same_text() -> None:
    async with ActorSystem() as system:
        app = metrics_app(system)
        sent: list[dict[str, object]] = []

        async def receive() -> dict[str, object]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, object]) -> None:
            sent.append(message)

        await app({"type": "http", "method": "GET", "path": "/metrics"}, receive, send)
        assert sent[0]["status"] == 200
        body = sent[1]["body"]
        assert isinstance(body, bytes)
        assert b"# HELP corps_actor_messages_total" in body
        sent.clear()
        await app({"type": "http", "method": "GET", "path": "/other"}, receive, send)
        assert sent[0]["status"] == 404


@pytest.mark.parametrize(
    "strategy", ["mediator", "front_controller", "stamp_coupled", "query_all+bus", "event_sourced"]
)
async def test_workflow_metrics_count_what_the_workflows_did(bus: Bus, strategy: str) -> None:
    from coordination import Outcome

    from .test_strategies import open_shop, order

    total, rare = 12, 3
    async with open_shop(bus, strategy=strategy) as shop:
        placed = [order(n, item="rare" if n < rare else "book") for n in range(total)]
        ids = await asyncio.gather(*(shop.mediator.start(p) for p in placed))
        results = await asyncio.gather(*(shop.mediator.result(i, timeout=10) for i in ids))
        assert sum(r.outcome is Outcome.COMPENSATED for r in results) == rare
        await shop.mediator.status(ids[0])
        await until(lambda: len(shop.email.sent) == total)
        async with await serve_metrics(shop.system) as server:
            samples = await scrape(server.host, server.port)
    name = strategy.removesuffix("+bus")
    labels = {"workflow": "order-placement", "strategy": name}
    assert value(samples, "corps_workflows_started_total", **labels) == total
    done = "corps_workflows_completed_total"
    assert value(samples, done, outcome="completed", **labels) == total - rare
    assert value(samples, done, outcome="compensated", **labels) == rare
    assert value(samples, done, outcome="failed", **labels) == 0
    assert value(samples, "corps_workflows_in_flight", **labels) == 0
    assert value(samples, "corps_workflow_duration_seconds_count", **labels) == total
    assert value(samples, "corps_workflow_compensations_total", **labels) == rare  # refunds
    assert value(samples, "corps_workflow_retries_total", **labels) == 0
    steps = "corps_workflow_step_duration_seconds_count"
    assert value(samples, steps, step="payment", **labels) == total
    assert value(samples, steps, step="fulfillment", **labels) == total
    assert value(samples, "corps_workflow_status_query_seconds_count", **labels) == 1
    for actor in ("order", "payment", "fulfillment", "email"):
        assert value(samples, "corps_actor_mailbox_depth", actor=actor) == 0


async def test_retries_are_counted(bus: Bus) -> None:
    from dataclasses import replace

    from coordination import Mediator, Outcome, Workflow
    from coordination.scenarios.order_placement import order_workflow

    from .test_strategies import SlowFirstPayment, open_shop, order

    quick = Workflow(
        "quick-orders",
        order_workflow.input_type,
        [replace(s, timeout=0.1) if s.name == "payment" else s for s in order_workflow.steps],
        services=order_workflow.services,
        on_failure=order_workflow.on_failure,
    )
    async with open_shop(bus, payment=SlowFirstPayment(), workflow=quick) as shop:
        assert isinstance(shop.mediator, Mediator)
        result = await shop.mediator.result(await shop.mediator.start(order(1)), timeout=10)
        assert result.outcome is Outcome.COMPLETED
        registry = shop.system.metrics.registry
        labels = {"workflow": "quick-orders", "strategy": "mediator"}
        assert registry.get_sample_value("corps_workflow_retries_total", labels) >= 1


async def test_workflow_metrics_stay_readable_after_the_run_and_keep_counting(bus: Bus) -> None:
    from prometheus_client import generate_latest

    from coordination import Mediator, Outcome

    from .test_strategies import open_shop, order

    async with open_shop(bus) as shop:  # the shop's own Mediator runs first
        system = shop.system
        first = await shop.mediator.start(order(1))
        assert (await shop.mediator.result(first, timeout=5)).outcome is Outcome.COMPLETED
    # the strategy and the system stopped: the registry still says what they did
    text = generate_latest(system.metrics.registry).decode()
    labels = 'strategy="mediator",workflow="order-placement"'
    assert f"corps_workflows_started_total{{{labels}}} 1.0" in text
    async with open_shop(bus, strategy="stamp_coupled") as shop:
        async with Mediator(shop.system, shop.mediator.workflow) as again:  # type: ignore[attr-defined]
            for number in (2, 3):
                await again.result(await again.start(order(number)), timeout=5)
        async with Mediator(shop.system, shop.mediator.workflow) as third:  # type: ignore[attr-defined]
            await third.result(await third.start(order(4)), timeout=5)
    text = generate_latest(shop.system.metrics.registry).decode()
    assert f"corps_workflows_started_total{{{labels}}} 3.0" in text  # one series, counting on
