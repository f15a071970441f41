"""Fault injection: many orders run under the Mediator while one fault is injected, then a
history checker says whether every order ended correctly and every effect happened once.

`python -m benchmarks chaos` (or `make chaos`) runs every fault; the tests run a short version
of each. Faults:

- duplicates: the bus delivers a share of all messages twice (commands, replies);
- late-replies: the payment service stalls past its step's timeout on some orders, answers
  late, and gets the retry (same message id) after;
- poison: the fulfillment service crashes on some orders on every delivery: each delivery is
  dead-lettered, and the step fails after its retries (the payment is refunded);
- cancel-compensating: orders are cancelled while they compensate (slow refunds and restocks);
- nats-restart: the nats-server is killed (SIGKILL) and restarted on a schedule (JetStream on,
  `sync_interval: always`), with the Mediator's instances in a JetStream key-value bucket on it;
- connection-drop: every NATS connection is cut (a reset, through a loopback proxy) on a
  schedule, and refused while the fault lasts;
- cluster-node-kill: a three-node cluster on loopback; a node is killed on a schedule and
  started again later; clients fail over to the others;
- mediator-kill: the process hosting the Mediator (on an SQLite store) is killed (SIGKILL) on
  a schedule, and a new one started on the same file takes up what was in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from actors import Actor, ActorSystem
from brokers import Headers, MemoryBus, NatsBus, NatsServer
from coordination import (
    History,
    HistoryVerdict,
    Mediator,
    NatsStateStore,
    Outcome,
    SqliteStateStore,
    Strategy,
)
from coordination.scenarios.order_placement import PlaceOrder

from ._chaos_faults import CuttableProxy, Schedule, cluster, run_schedule
from ._chaos_services import (
    RULES,
    Effects,
    LedgerEmail,
    LedgerFulfillment,
    LedgerOrders,
    LedgerPayment,
    chaos_workflow,
)
from ._strategy_cases import STRATEGIES

__all__ = ("FAULTS", "QUICK", "ChaosSettings", "FaultReport", "run_fault")

MEMORY_FAULTS = ("duplicates", "late-replies", "poison", "cancel-compensating")
NATS_FAULTS = ("nats-restart", "connection-drop", "cluster-node-kill", "mediator-kill")
FAULTS = MEMORY_FAULTS + NATS_FAULTS


@dataclass(frozen=True, slots=True)
class ChaosSettings:
    """How long and how hard: orders start for `duration` seconds from `clients` concurrent
    clients; every order then has until `settle` seconds more to end."""

    duration: float = 40.0
    clients: int = 20
    settle: float = 60.0
    seed: int = 1
    schedule: Schedule = field(default_factory=lambda: Schedule((5.0, 20.0), (0.0, 5.0)))
    """When broker faults happen and how long they last."""
    duplicate_share: float = 0.2
    step_timeout: float = 1.0
    attempts: int = 8
    """Tries per step: enough to outlast a broker fault."""
    strategy: str = "mediator"
    """Which strategy coordinates the orders (the in-memory faults run under any)."""


QUICK = ChaosSettings(
    duration=3.0,
    clients=10,
    settle=30.0,
    schedule=Schedule(every=(0.5, 1.2), down=(0.0, 0.5)),
    attempts=5,
)
"""The short version the tests run."""


@dataclass(slots=True)
class FaultReport:
    """One fault's run: the checker's verdict, and how often the fault struck."""

    fault: str
    strategy: str
    bus: str
    seconds: float
    injected: int
    verdict: HistoryVerdict
    detail: str

    def as_dict(self) -> dict[str, Any]:
        verdict = self.verdict
        return {
            "fault": self.fault,
            "strategy": self.strategy,
            "bus": self.bus,
            "seconds": round(self.seconds, 1),
            "injected": self.injected,
            "started": verdict.started,
            "outcomes": {outcome.value: n for outcome, n in verdict.outcomes.items()},
            "lost": len(verdict.lost),
            "duplicated": len(verdict.duplicated),
            "unexpected": len(verdict.unexpected),
            "inconsistent": len(verdict.inconsistent),
            "detail": self.detail,
            "anomalies": verdict.lost
            + verdict.duplicated
            + verdict.unexpected
            + verdict.inconsistent,
        }


@dataclass(slots=True)
class _Rig:
    """A fault's world: the mediator, where faults come from, and what to report."""

    coordinator: Strategy[PlaceOrder]
    inject: Callable[[float], Awaitable[int]] | None = None
    """Inject faults until the given loop time; returns how many."""
    count: Callable[[], int] | None = None
    """How many faults struck, read after the run (for faults the services inject)."""
    detail: Callable[[], str] = lambda: ""
    mix: dict[tuple[str, str], float] = field(default_factory=dict)
    in_flight: set[str] = field(default_factory=set)
    """The workflow ids started and not yet ended."""


_REPOSITORY = Path(__file__).resolve().parent.parent
"""Where `python -m benchmarks._chaos_host` is found."""

SEES_FAILURES = frozenset({"mediator", "event_sourced", "query_all"})
"""The strategies whose status shows a failure while the workflow compensates."""

NORMAL_MIX = {("ann", "book"): 0.7, ("declined", "book"): 0.1, ("ann", "rare"): 0.2}


async def run_fault(fault: str, settings: ChaosSettings = ChaosSettings()) -> FaultReport:
    """Run orders while `fault` strikes, then check the history."""
    if fault not in FAULTS:
        raise ValueError(f"unknown fault {fault!r}: choose from {', '.join(FAULTS)}")
    if fault == "mediator-kill" and settings.strategy != "mediator":
        raise ValueError(f"{fault} runs under the Mediator only, not {settings.strategy}")
    if settings.strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {settings.strategy!r}")
    rng = random.Random(f"{settings.seed}:{fault}")
    history = History()
    effects = Effects(history)
    loop = asyncio.get_running_loop()
    began = loop.time()
    if fault == "mediator-kill":
        injected, detail = await _kill_the_mediator(settings, effects, rng)
    else:
        async with _rig(fault, settings, effects, rng) as rig:
            injected = await _drive(rig, history, settings, rng)
            detail = rig.detail()
    return FaultReport(
        fault,
        settings.strategy,
        "nats" if fault in NATS_FAULTS else "memory",
        loop.time() - began,
        injected,
        history.check(RULES),
        detail,
    )


async def _drive(rig: _Rig, history: History, settings: ChaosSettings, rng: random.Random) -> int:
    """A closed loop of clients starting orders for `duration` seconds, each waiting for its
    order's end; faults are injected meanwhile. Returns how many faults struck."""
    loop = asyncio.get_running_loop()
    stop_starting = loop.time() + settings.duration
    deadline = stop_starting + settings.settle
    numbers = itertools.count()
    mix = rig.mix or NORMAL_MIX
    kinds, weights = list(mix), list(mix.values())
    coordinator = rig.coordinator

    async def client() -> None:
        while loop.time() < stop_starting:
            key = f"o{next(numbers)}"
            customer, item = rng.choices(kinds, weights)[0]
            workflow_id = await coordinator.start(PlaceOrder(key, customer, item, 1, 1000))
            history.started(key, workflow_id)
            rig.in_flight.add(workflow_id)
            with contextlib.suppress(TimeoutError):
                result = await coordinator.result(workflow_id, timeout=deadline - loop.time())
                history.ended(key, result.outcome)
            rig.in_flight.discard(workflow_id)

    clients = [loop.create_task(client()) for _ in range(settings.clients)]
    injected = 0
    if rig.inject is not None:
        injected = await rig.inject(stop_starting)
    await asyncio.gather(*clients)
    return rig.count() if rig.count is not None else injected


async def _spawn_services(system: ActorSystem, effects: Effects) -> None:
    # A service that crashes on one bad input goes on with the next, its state kept (the
    # default directive): its state is the history the checker reads.
    services: dict[str, Actor] = {
        "order": LedgerOrders(effects),
        "payment": LedgerPayment(effects),
        "fulfillment": LedgerFulfillment(effects),
        "email": LedgerEmail(effects),
    }
    for name, service in services.items():
        await system.spawn(_same(service), name=name)


def _same(service: Actor) -> Callable[[], Actor]:
    """A factory that gives the same instance again on restart: its state is the history."""
    return lambda: service


@contextlib.asynccontextmanager
async def _rig(
    fault: str, settings: ChaosSettings, effects: Effects, rng: random.Random
) -> AsyncIterator[_Rig]:
    workflow = chaos_workflow(step_timeout=settings.step_timeout, attempts=settings.attempts)
    if fault in MEMORY_FAULTS:
        bus: MemoryBus = (
            DuplicatingBus(settings.duplicate_share, rng) if fault == "duplicates" else MemoryBus()
        )
        async with bus, ActorSystem(bus) as system:
            await _spawn_services(system, effects)
            async with STRATEGIES[settings.strategy](system, workflow) as coordinator:
                rig = _Rig(coordinator)
                _memory_fault(fault, rig, system, bus, effects, settings, rng)
                yield rig
        return
    async with contextlib.AsyncExitStack() as stack:
        service_urls, mediator_urls, rig_fault = await _nats_world(fault, stack, settings, rng)
        services_bus = await stack.enter_async_context(NatsBus(service_urls))
        mediator_bus = await stack.enter_async_context(NatsBus(mediator_urls))
        service_system = await stack.enter_async_context(ActorSystem(services_bus))
        await _spawn_services(service_system, effects)
        await services_bus.flush()
        system = await stack.enter_async_context(ActorSystem(mediator_bus))
        store: NatsStateStore | None = None
        if settings.strategy == "mediator":
            # Where the server restarts, the Mediator keeps its instances in JetStream on it.
            store = NatsStateStore(mediator_bus, workflow) if fault == "nats-restart" else None
            mediator = Mediator(system, workflow, store=store)
            running: Strategy[PlaceOrder] = await stack.enter_async_context(mediator)
        else:  # a choreography lives beside the services, its adapters in their mailboxes
            choreography = STRATEGIES[settings.strategy](service_system, workflow)
            running = await stack.enter_async_context(choreography)
        buses = (services_bus, mediator_bus)
        yield _Rig(
            running,
            inject=rig_fault.inject,
            detail=lambda: (
                f"{rig_fault.what}; reconnects {sum(bus.stats.reconnects for bus in buses)}"
                + (f"; state saves retried {mediator.metrics.store_errors}" if store else "")
            ),
        )


def _memory_fault(
    fault: str,
    rig: _Rig,
    system: ActorSystem,
    bus: MemoryBus,
    effects: Effects,
    settings: ChaosSettings,
    rng: random.Random,
) -> None:
    if fault == "duplicates":
        assert isinstance(bus, DuplicatingBus)
        rig.count = lambda: bus.duplicated
        rig.detail = lambda: f"messages delivered twice, of {bus.stats.published:,}"
    elif fault == "late-replies":
        stalled = set()
        stall = settings.step_timeout * 1.3

        def stall_for(order_id: str) -> float:
            if rng.random() < 0.03:
                stalled.add(order_id)
                return stall
            return 0.0

        effects.stall = stall_for
        rig.count = lambda: len(stalled)
        rig.detail = lambda: (
            f"orders stalled {stall:.1f} s, past a {settings.step_timeout} s timeout"
        )
    elif fault == "poison":
        rig.mix = {**NORMAL_MIX, ("ann", "poison"): 0.05}
        rig.count = lambda: system.dead_letters.total
        rig.detail = lambda: "deliveries dead-lettered"
    elif fault == "cancel-compensating":
        effects.slow_undo = 0.05
        rig.mix = {("ann", "book"): 0.5, ("ann", "rare"): 0.5}
        rig.inject = lambda until: _cancel_compensating(rig, until, rng)
        rig.detail = lambda: (
            "orders cancelled while compensating"
            if rig.coordinator.strategy in SEES_FAILURES
            else "orders cancelled at random moments (the strategy cannot see a failure)"
        )


async def _cancel_compensating(rig: _Rig, until: float, rng: random.Random) -> int:
    """Cancel every order seen compensating (a step failed, the instance still runs)."""
    loop = asyncio.get_running_loop()
    coordinator = rig.coordinator
    cancelled: set[str] = set()
    while loop.time() < until:
        await asyncio.sleep(0.005)
        for workflow_id in list(rig.in_flight):
            if workflow_id in cancelled:
                continue
            status = await coordinator.status(workflow_id)
            compensating = status.outcome is Outcome.RUNNING and status.failure is not None
            # A strategy that cannot see a failure (it is in `unknown`) gets cancels at
            # random moments instead: some land while the order compensates.
            blind = "failure" in status.unknown and rng.random() < 0.02
            if (compensating or blind) and await coordinator.cancel(workflow_id):
                cancelled.add(workflow_id)
    return len(cancelled)


class DuplicatingBus(MemoryBus):
    """A MemoryBus that publishes a share of all messages twice."""

    def __init__(self, share: float, rng: random.Random) -> None:
        super().__init__()
        self.share = share
        self.rng = rng
        self.duplicated = 0

    async def publish(
        self, subject: str, data: bytes, headers: Headers | None = None, reply: str | None = None
    ) -> None:
        await super().publish(subject, data, headers, reply)
        if self.rng.random() < self.share:
            self.duplicated += 1
            await super().publish(subject, data, headers, reply)


@dataclass(slots=True)
class _BrokerFault:
    what: str
    strike: Callable[[float], Awaitable[None]]
    schedule: Schedule
    rng: random.Random
    count: int = 0

    async def inject(self, until: float) -> int:
        self.count = await run_schedule(self.schedule, self.rng, until, self.strike)
        return self.count


async def _nats_world(
    fault: str, stack: contextlib.AsyncExitStack, settings: ChaosSettings, rng: random.Random
) -> tuple[list[str], list[str], _BrokerFault]:
    """The servers of a NATS fault: the URLs services and mediator connect to, and the fault."""
    if fault == "nats-restart":
        server = stack.enter_context(NatsServer(sync_always=True))

        async def restart(down_for: float) -> None:
            await asyncio.to_thread(server.restart, kill=True, down_for=down_for)

        return [server.url], [server.url], _BrokerFault("restarts", restart, settings.schedule, rng)
    if fault == "connection-drop":
        server = stack.enter_context(NatsServer(jetstream=False))
        proxy = await stack.enter_async_context(CuttableProxy(server.port or 0))
        return [proxy.url], [proxy.url], _BrokerFault("cuts", proxy.cut, settings.schedule, rng)
    nodes = stack.enter_context(cluster(3))
    urls = [node.url for node in nodes]

    async def kill_a_node(down_for: float) -> None:
        node = rng.choice(nodes)
        await asyncio.to_thread(node.stop, kill=True)
        await asyncio.sleep(down_for)
        await asyncio.to_thread(node.start)

    # Services and mediator start on different nodes, so that their traffic crosses routes.
    await _cluster_formed(nodes)
    return (
        urls[1:] + urls[:1],
        urls,
        _BrokerFault("node kills", kill_a_node, settings.schedule, rng),
    )


async def _cluster_formed(nodes: list[NatsServer], timeout: float = 10.0) -> None:
    """Wait until a message published on the last node reaches a subscriber on the first."""
    async with NatsBus(nodes[0].url) as first, NatsBus(nodes[-1].url) as last:
        arrived = asyncio.Event()

        async def seen(msg: object) -> None:
            arrived.set()

        await first.subscribe("corps.chaos.probe", seen)
        async with asyncio.timeout(timeout):
            while not arrived.is_set():
                await last.publish("corps.chaos.probe", b"")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(arrived.wait(), 0.1)


def fault_table(reports: list[FaultReport]) -> str:
    """The README's fault table, in Markdown."""
    lines = [
        "| fault | strategy | bus | injected | workflows | completed | compensated or failed "
        "| needs attention | lost | duplicated | inconsistent |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for report in reports:
        verdict = report.verdict
        outcomes = verdict.outcomes
        undone = outcomes[Outcome.COMPENSATED] + outcomes[Outcome.FAILED]
        undone += outcomes[Outcome.CANCELLED]
        lines.append(
            f"| {report.fault} | {report.strategy} | {report.bus} "
            f"| {report.injected:,} {report.detail} "
            f"| {verdict.started:,} | {outcomes[Outcome.COMPLETED]:,} | {undone:,} "
            f"| {verdict.needs_attention} | {len(verdict.lost)} | {len(verdict.duplicated)} "
            f"| {len(verdict.inconsistent) + len(verdict.unexpected)} |"
        )
    return "\n".join(lines)


async def _kill_the_mediator(
    settings: ChaosSettings, effects: Effects, rng: random.Random
) -> tuple[int, str]:
    """Services here, the Mediator in a child process that is killed on the schedule and
    started again on the same SQLite file; the children say what they started and ended."""
    loop = asyncio.get_running_loop()
    history = effects.history
    with NatsServer(jetstream=False) as server, tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "orders.db")
        async with NatsBus(server.url) as bus, ActorSystem(bus) as system:
            await _spawn_services(system, effects)
            await bus.flush()
            stop_at = loop.time() + settings.duration
            generation = 0
            host = await _MediatorHost.start(server.url, db, generation, settings, history)
            hosts = [host]
            while True:
                wait = rng.uniform(*settings.schedule.every)
                if loop.time() + wait >= stop_at:
                    break
                await asyncio.sleep(wait)
                await host.kill()
                await asyncio.sleep(rng.uniform(*settings.schedule.down))
                generation += 1
                host = await _MediatorHost.start(server.url, db, generation, settings, history)
                hosts.append(host)
            await asyncio.sleep(max(0.0, stop_at - loop.time()))
            await host.stop(settings.settle)
        # A process killed after an order ended and before it said so: the store knows.
        store = SqliteStateStore(db, chaos_workflow())
        for order_id, workflow_id in history.unended():
            state = await store.load(workflow_id)
            if state is not None and state.outcome is not Outcome.RUNNING:
                history.ended(order_id, state.outcome)
        store.close()
    resumed = sum(host.resumed for host in hosts)
    return generation, f"SIGKILLs of the mediator's process ({resumed} orders taken up)"


@dataclass(slots=True)
class _MediatorHost:
    process: asyncio.subprocess.Process
    reader: asyncio.Future[None]
    resumed: int = 0
    """Orders this process took up from the one killed before it."""

    @classmethod
    async def start(
        cls, url: str, db: str, generation: int, settings: ChaosSettings, history: History
    ) -> _MediatorHost:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "benchmarks._chaos_host",
            url,
            db,
            f"m{generation}",
            str(settings.clients),
            cwd=_REPOSITORY,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        host = cls(process, asyncio.Future())
        host.reader = asyncio.get_running_loop().create_task(host._read(history))
        return host

    async def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()  # SIGKILL: no goodbye, orders in every step
        await self.process.wait()
        await self.reader

    async def stop(self, settle: float) -> None:
        """Stop starting orders; wait up to `settle` s for the ones under way to end."""
        stdin = self.process.stdin
        assert stdin is not None
        stdin.write(b"stop\n")
        await stdin.drain()
        # What has not ended by then is lost, and the checker says so.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.process.wait(), settle)
        await self.kill()

    async def _read(self, history: History) -> None:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            words = line.decode().split()
            if len(words) != 3:  # a line the kill cut short
                continue
            what, order_id, value = words
            if what == "ended":
                history.ended(order_id, Outcome(value))
                continue
            history.started(order_id, value)
            self.resumed += what == "resumed"
