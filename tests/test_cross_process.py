"""Services in other OS processes, reached over a real nats-server."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import anyio
import pytest

from actors import ActorNotFoundError, ActorSystem, AskTimeoutError
from benchmarks._chaos import _cluster_formed
from benchmarks._chaos_faults import cluster
from benchmarks._scale_out import ReadyProcess
from benchmarks._scale_roles import CHOREOGRAPHIES
from benchmarks._strategy_cases import STRATEGIES
from brokers import NatsBus, NatsServer

from .actors_fixtures import Add, GetTotal, WhoServes, Worker
from .actors_fixtures import Counter as CounterActor

pytestmark = [pytest.mark.anyio, pytest.mark.nats]

ROOT = Path(__file__).resolve().parent.parent


class ServiceProcess:
    """`python -m tests.service_host` in a child process, started and stopped by the test."""

    def __init__(self, url: str, kind: str, name: str, instances: int = 1) -> None:
        self.args = [sys.executable, "-m", "tests.service_host", url, kind, name, str(instances)]
        self.process: subprocess.Popen[str] | None = None
        self.log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed in __exit__

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.args, cwd=ROOT, stdout=subprocess.PIPE, stderr=self.log, text=True
        )
        assert self.process.stdout is not None
        if self.process.stdout.readline().strip() != "ready":  # "" if it died first
            self.kill()
            self.log.seek(0)
            raise RuntimeError(f"service host did not start:\n{self.log.read()}")

    def kill(self) -> None:
        """SIGKILL: the process dies without any goodbye."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
        self._reap()

    def terminate(self) -> int:
        assert self.process is not None
        self.process.terminate()
        code = self.process.wait(timeout=20)
        self._reap()
        return code

    def _reap(self) -> None:
        if self.process is not None:
            self.process.wait(timeout=10)
            if self.process.stdout is not None:
                self.process.stdout.close()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.kill()
        self.log.close()


async def test_ask_and_tell_a_service_in_another_process(nats_server: NatsServer) -> None:
    host = ServiceProcess(nats_server.url, "counter", "ledger")
    with host:
        async with NatsBus(nats_server.url) as bus, ActorSystem(bus) as system:
            ledger = system.ref(CounterActor, "ledger")
            await ledger.tell(Add(amount=5))
            await ledger.tell(Add(amount=7))
            assert await ledger.ask(GetTotal(), timeout=5) == 12

            host.kill()
            # Until nats-server notices the dead connection (a moment), a request still goes
            # to it and times out; after that it fails at once. Either way it fails clearly.
            with anyio.fail_after(10):
                while True:
                    try:
                        await ledger.ask(GetTotal(), timeout=0.5)
                    except AskTimeoutError:
                        continue
                    except ActorNotFoundError:
                        break
                    pytest.fail("a killed service answered")
            with anyio.fail_after(1), pytest.raises(ActorNotFoundError, match="ledger"):
                await ledger.ask(GetTotal(), timeout=30)  # now at once, not at the timeout

            host.start()
            await bus.flush()  # our connection sees the new host's subscription (see the note
            # in test_nats_bus: another connection's subscription can lag for a moment)
            await ledger.tell(Add(amount=1))
            assert await ledger.ask(GetTotal(), timeout=5) == 1  # a new process, fresh state
        assert host.terminate() == 0  # SIGTERM: a clean shutdown


async def test_two_processes_share_one_service_as_a_queue_group(nats_server: NatsServer) -> None:
    with (
        ServiceProcess(nats_server.url, "worker", "pool") as first,
        ServiceProcess(nats_server.url, "worker", "pool") as second,
    ):
        async with NatsBus(nats_server.url) as bus, ActorSystem(bus) as system:
            pool = system.ref(Worker, "pool")
            async with anyio.create_task_group() as tg:
                served: list[int] = []

                async def ask() -> None:
                    served.append(await pool.ask(WhoServes(), timeout=10))

                for _ in range(200):
                    tg.start_soon(ask)
        assert len(served) == 200  # every request answered exactly once
        counts = {pid: served.count(pid) for pid in set(served)}
        assert set(counts) == {first.pid, second.pid}
        assert min(counts.values()) >= 40  # NATS picks a member at random: both take a share


async def test_choosing_nats_is_one_url(nats_server: NatsServer) -> None:
    async with ActorSystem(nats_server.url) as system:
        counter = await system.spawn(CounterActor, name="by-url")
        await counter.tell(Add(amount=3))
        assert await counter.ask(GetTotal()) == 3
        bus = system.bus
        assert isinstance(bus, NatsBus)
    assert bus.closed  # the system made the bus, so it closed it


class Starter:
    """`python -m tests.order_starter` in a child process: starts orders, then checks another
    starter's."""

    def __init__(self, url: str, strategy: str, count: int, tag: str, *, mode: str = "") -> None:
        """`mode`: "" (a choreography's adapters here), "hosted" (beside the services) or
        "durable" (beside the services, the events kept in JetStream)."""
        args = [sys.executable, "-m", "tests.order_starter", url, strategy, str(count), tag]
        if mode:
            args.append(mode)
        self.log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed in close()
        self.process = subprocess.Popen(
            args,
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )

    async def line(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        read = self.process.stdout.readline
        text = await anyio.to_thread.run_sync(read, abandon_on_cancel=True)
        if not text:
            self.log.seek(0)
            raise RuntimeError(f"the starter died:\n{self.log.read()}")
        parsed: dict[str, Any] = json.loads(text)
        return parsed

    def tell(self, data: object) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(data) + "\n")
        self.process.stdin.flush()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()
        self.log.close()


@pytest.mark.slow
@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
async def test_two_starters_run_one_workflow_without_renaming_it(
    nats_server: NatsServer, strategy: str
) -> None:
    """Two processes start orders of one workflow under one strategy, the services in a third:
    every result reaches the process that started it, and each process answers status and
    result for the other's instances too."""
    with ServiceProcess(nats_server.url, "shop", "-"):
        first, second = await run_starters(nats_server.url, strategy, mode="")
    assert first[0]["node"] != first[1]["node"]
    check_orders(first, second)


ORDER_OUTCOMES = {"completed": 35, "failed": 10, "compensated": 5}
"""How the 50 orders of a starter end (`tests.order_starter.order`): every fifth declined
(nothing to undo), five others backordered (their charge refunded)."""


def check_orders(
    first: list[Any], second: list[Any], expected: dict[str, int] = ORDER_OUTCOMES
) -> None:
    """Each starter's orders ended as their customers and items say, its statuses agree,
    and its check of the other's instances found nothing wrong."""
    for started, checked in zip(first, second, strict=True):
        assert started["wrong"] == []
        outcomes = Counter(started["ids"].values())
        assert outcomes == expected, outcomes
        assert checked == {"checked": 50, "wrong": []}


@contextlib.asynccontextmanager
async def served_hosts(
    urls: list[str], target: str = "tests.served:take_part"
) -> AsyncIterator[list[ReadyProcess]]:
    """A `corps serve TARGET` process on each URL, ready; by default `tests.served:take_part`,
    the order services with every choreography's adapters beside them."""
    corps = str(Path(sys.executable).parent / "corps")
    hosts = [
        ReadyProcess([corps, "serve", target, "--nats", url], ready_on_stderr=True) for url in urls
    ]
    try:
        for host in hosts:
            await anyio.to_thread.run_sync(host.wait_ready)
        yield hosts
    finally:
        for host in hosts:
            host.stop(graceful=False)


async def run_starters(
    url: str | list[str],
    strategy: str,
    *,
    mode: str,
    meanwhile: Callable[[], None] = lambda: None,
) -> tuple[list[Any], list[Any]]:
    """Two starters of 50 orders each (connected to `url`, or the first and the second of
    a list); what each printed: its own, then its check of the other's. `meanwhile` runs
    once both have started their first orders."""
    urls = [url, url] if isinstance(url, str) else url
    starters = [
        Starter(at, strategy, 50, tag, mode=mode) for at, tag in zip(urls, ("a", "b"), strict=False)
    ]
    try:
        with anyio.fail_after(150):
            for starter in starters:
                assert "started" in await starter.line()
            meanwhile()
            first = [await starter.line() for starter in starters]
            for starter, other in zip(starters, reversed(first), strict=True):
                starter.tell(other["ids"])
            second = [await starter.line() for starter in starters]
            for starter in starters:
                starter.tell("done")
    finally:
        for starter in starters:
            starter.close()
    return first, second


@pytest.mark.slow
@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
async def test_choreographies_run_beside_services_in_two_hosts(
    nats_server: NatsServer, strategy: str
) -> None:
    """Two hosts (`corps serve`) each run every order service with the choreographies'
    adapters beside them; two starters keep only the start and the end of their orders."""
    url = nats_server.url
    async with served_hosts([url, url]):
        first, second = await run_starters(url, strategy, mode="hosted")
    check_orders(first, second)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", sorted(CHOREOGRAPHIES))
async def test_a_parallel_joins_in_the_starter_across_processes(
    nats_server: NatsServer, strategy: str
) -> None:
    """The screened order placement, whose charge and reservation run in parallel: the
    services in two hosts (`corps serve`) with the adapters beside them, two starters each
    the join of its orders' branches. A declined card puts back the reservation made beside
    it (compensated), an item out of stock refunds the charge; both at once undo nothing."""
    url = nats_server.url
    async with served_hosts([url, url], "tests.served:take_part_screened"):
        first, second = await run_starters(url, strategy, mode="screened")
    check_orders(first, second, {"completed": 35, "compensated": 13, "failed": 2})


@pytest.mark.slow
@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
async def test_a_service_host_killed_mid_run_loses_no_order(
    nats_server: NatsServer, strategy: str
) -> None:
    """Two hosts (`corps serve`) run the order services; two starters run the orders, the
    choreographies' adapters in the starters. One host is killed (SIGKILL) while the orders
    run: every command it took and never answered is sent again (same message id) and the
    other host answers it, so every order ends as it should."""
    url = nats_server.url
    async with served_hosts([url, url], "tests.served:build") as hosts:
        first, second = await run_starters(url, strategy, mode="", meanwhile=hosts[0].process.kill)
    check_orders(first, second)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", sorted(set(CHOREOGRAPHIES) - {"query_all"}))
async def test_a_host_killed_mid_run_loses_no_event_kept_in_jetstream(
    nats_server: NatsServer, strategy: str
) -> None:
    """Two hosts (`corps serve`) run the order services with the choreographies' adapters
    beside them, the events kept in JetStream (`durable_events`). One host is killed
    (SIGKILL) while the orders run: the events it held, even those it had sent itself, are
    delivered to the other host once their acknowledgement is overdue, and every order ends
    as it should.

    Not query-all: its pattern keeps each step's reply in the service that made it, so a host
    that dies takes the replies of the steps it ran with it (which no stream of events
    brings back)."""
    url = nats_server.url
    async with served_hosts([url, url], "tests.served:take_part_durably") as hosts:
        first, second = await run_starters(
            url, strategy, mode="durable", meanwhile=hosts[0].process.kill
        )
    check_orders(first, second)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
async def test_one_host_per_node_of_a_three_node_cluster(strategy: str) -> None:
    """Three nats-servers routed as one cluster on loopback, a host (`corps serve`) on each
    node with the adapters beside the services, and two starters on two of the nodes: the
    events and replies cross the routes, and every order ends as it should."""
    with cluster(3) as nodes:
        await _cluster_formed(nodes)
        async with served_hosts([node.url for node in nodes]):
            first, second = await run_starters(
                [nodes[0].url, nodes[1].url], strategy, mode="hosted"
            )
    check_orders(first, second)
