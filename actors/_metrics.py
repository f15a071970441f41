"""Prometheus metrics of an ActorSystem, cheap on the hot path.

Nothing on the message path touches prometheus_client: the cells and the bus keep plain
integer counters and a small histogram per actor (one `bisect` and two additions a message),
and one collector per system turns them into metric families when the registry is scraped.
There is no label lookup per message, and no global registry: each system has its own
`CollectorRegistry` (or the one the user passes), so several systems, and several tests, live
side by side.
"""

from __future__ import annotations

import contextlib
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from ._system import ActorSystem

__all__ = ("LATENCY_BUCKETS", "Histogram", "SystemMetrics")

LATENCY_BUCKETS = (
    0.00001,
    0.000025,
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)
"""Upper bounds, in seconds, from 10 microseconds to 5 seconds (and +Inf)."""


class Histogram:
    """Counts of observations per bucket, and their sum: `observe` is one bisect."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float] = LATENCY_BUCKETS) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative counts by upper bound, as Prometheus exposes them."""
        cumulative, total = [], 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += count
            cumulative.append(("+Inf" if bound == float("inf") else repr(bound), float(total)))
        return cumulative

    def merge(self, other: Histogram) -> None:
        for index, count in enumerate(other.counts):
            self.counts[index] += count
        self.sum += other.sum


MetricSource = Callable[[], Iterable[Metric]]


class SystemMetrics:
    """The registry of one ActorSystem and the collector that reads the system into it.

    Other layers add their own sources (`add_source`): a function that yields metric
    families at scrape time, such as a workflow strategy's.
    """

    def __init__(
        self, system: ActorSystem, registry: CollectorRegistry | None = None, *, timed: bool = True
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.timed = timed
        """Whether durations are measured (the only part of the metrics that costs a clock
        read per message)."""
        self.servers: set[Any] = set()
        """The running `serve_metrics` endpoints, closed when the system shuts down."""
        self._sources: list[MetricSource] = []
        self._collector = _SystemCollector(system, self._sources)
        self.registry.register(self._collector)

    def add_source(self, source: MetricSource) -> None:
        self._sources.append(source)

    def remove_source(self, source: MetricSource) -> None:
        if source in self._sources:
            self._sources.remove(source)

    async def stop_serving(self) -> None:
        for server in list(self.servers):
            await server.close()

    def close(self) -> None:
        """Take the system's metrics out of the registry (a user's registry outlives it)."""
        with contextlib.suppress(KeyError):  # closed already
            self.registry.unregister(self._collector)


class _SystemCollector(Collector):
    def __init__(self, system: ActorSystem, sources: list[MetricSource]) -> None:
        self.system = system
        self.sources = sources

    def collect(self) -> Iterator[Metric]:
        yield from _actor_metrics(self.system)
        yield from _bus_metrics(self.system)
        merged: dict[str, Metric] = {}  # several sources (strategies) share family names
        for source in list(self.sources):
            for metric in source():
                existing = merged.get(metric.name)
                if existing is None:
                    merged[metric.name] = metric
                else:
                    existing.samples.extend(metric.samples)
        yield from merged.values()


def _actor_metrics(system: ActorSystem) -> Iterator[Metric]:
    messages = CounterMetricFamily(
        "corps_actor_messages",
        "Messages an actor handled, by outcome: ok, error (its handler raised), "
        "dead_lettered (never handled: undecodable, oversized, mailbox full, stopped).",
        labels=["actor", "outcome"],
    )
    durations = HistogramMetricFamily(
        "corps_actor_handler_seconds",
        "Time an actor's handler took, per message.",
        labels=["actor"],
    )
    depth = GaugeMetricFamily(
        "corps_actor_mailbox_depth",
        "Messages waiting in an actor's mailbox (all its instances).",
        labels=["actor"],
    )
    restarts = CounterMetricFamily(
        "corps_actor_restarts", "Times an actor was restarted after a failure.", labels=["actor"]
    )
    dead_lettered = system.dead_letters.by_actor
    for name, groups in system.all_groups():
        cells = [cell for group in groups for cell in group.cells]
        handled = sum(cell.handled for cell in cells)
        failed = sum(cell.failed for cell in cells)
        dead = sum(count for (actor, _), count in dead_lettered.items() if actor == name)
        messages.add_metric([name, "ok"], handled)
        messages.add_metric([name, "error"], failed)
        messages.add_metric([name, "dead_lettered"], dead)
        histogram = Histogram()
        for group in groups:
            histogram.merge(group.durations)
        durations.add_metric([name], histogram.buckets(), histogram.sum)
        pending = 0
        for cell in cells:
            subscription = cell.subscription
            if subscription is not None and not cell.stopped:
                pending += getattr(subscription, "pending", 0)
        depth.add_metric([name], pending)
        restarts.add_metric([name], sum(cell.restarts for cell in cells))
    yield messages
    yield durations
    yield depth
    yield restarts
    letters = CounterMetricFamily(
        "corps_dead_letters", "Messages dead-lettered, by reason.", labels=["reason"]
    )
    for reason, count in sorted(system.dead_letters.counts.items(), key=lambda i: i[0].value):
        letters.add_metric([reason.value], count)
    yield letters


def _bus_metrics(system: ActorSystem) -> Iterator[Metric]:
    stats = system.bus.stats
    kind = "nats" if type(system.bus).__name__.startswith("Nats") else "memory"
    counters = [
        ("corps_bus_messages_published", "Messages published.", stats.published),
        ("corps_bus_published_bytes", "Payload bytes published.", stats.published_bytes),
        ("corps_bus_messages_delivered", "Messages handed to subscribers.", stats.delivered),
        (
            "corps_bus_delivered_bytes",
            "Payload bytes handed to subscribers.",
            stats.delivered_bytes,
        ),
        (
            "corps_bus_slow_consumer_drops",
            "Messages a full subscription dropped (slow consumers).",
            stats.dropped,
        ),
        ("corps_bus_request_timeouts", "Requests that got no reply in time.", stats.timeouts),
        ("corps_bus_no_responders", "Requests that found nobody listening.", stats.no_responders),
        ("corps_bus_reconnects", "Reconnections to the NATS server.", stats.reconnects),
    ]
    for name, documentation, value in counters:
        family = CounterMetricFamily(name, documentation, labels=["bus"])
        family.add_metric([kind], value)
        yield family
