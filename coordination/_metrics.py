"""A strategy's workflow metrics: plain counters and histograms on the hot path, turned into
Prometheus families at scrape time by the system's collector.

Labels are bounded: workflow and strategy names, step names, outcomes; never an instance id.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from time import perf_counter

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from actors import ActorSystem, Histogram

from ._status import Outcome

__all__ = ("WorkflowMetrics",)


class _Book(dict[tuple[str, str], "WorkflowMetrics"]):
    """The workflow metrics of one system, by workflow and strategy (attached to it)."""


class WorkflowMetrics:
    """What one strategy did with one workflow.

    The counts stay in the system's registry after the strategy stops (read them from
    `system.metrics.registry`, after the run as during it), and the next strategy object of
    the same workflow and strategy in the same system goes on counting from them, as a
    Prometheus counter must.
    """

    @classmethod
    def of(cls, system: ActorSystem, workflow: str, strategy: str) -> WorkflowMetrics:
        """The metrics of `workflow` under `strategy` in `system`: made and registered the
        first time, the same object after."""
        book = system.attached(_Book, _Book)
        metrics = book.get((workflow, strategy))
        if metrics is None:
            metrics = book[workflow, strategy] = cls(system, workflow, strategy)
            system.metrics.add_source(metrics.collect)
        return metrics

    def __init__(self, system: ActorSystem, workflow: str, strategy: str) -> None:
        self.system = system
        self.stuck: Callable[[], int] | None = None
        """Counts the running instances that made no progress for too long, if the
        strategy can tell."""
        self.timed = system.metrics.timed
        self.labels = [workflow, strategy]
        self.started = 0
        self.ended: Counter[Outcome] = Counter()
        self.durations = Histogram()
        self.steps: dict[str, Histogram] = {}
        self.retries = 0
        self.late_answers = 0
        self.compensations = 0
        self.store_errors = 0
        self.status_durations = Histogram()
        self._began: dict[str, float] = {}

    def stopped(self) -> None:
        """Its strategy stopped: what it counted stays; what only a running strategy can tell
        (the stuck instances) is no longer asked for."""
        self.stuck = None

    def began(self, workflow_id: str) -> None:
        self.started += 1
        if self.timed:
            self._began[workflow_id] = perf_counter()

    def finished(self, workflow_id: str, outcome: Outcome) -> None:
        self.ended[outcome] += 1
        began = self._began.pop(workflow_id, None)
        if began is not None:
            self.durations.observe(perf_counter() - began)

    def step_took(self, step: str, seconds: float) -> None:
        if not self.timed:
            return
        histogram = self.steps.get(step)
        if histogram is None:
            histogram = self.steps[step] = Histogram()
        histogram.observe(seconds)

    def status_took(self, seconds: float) -> None:
        if self.timed:
            self.status_durations.observe(seconds)

    def collect(self) -> Iterator[Metric]:
        labels = ["workflow", "strategy"]
        values = self.labels
        started = CounterMetricFamily(
            "corps_workflows_started", "Workflow instances started.", labels=labels
        )
        started.add_metric(values, self.started)
        yield started
        ended = CounterMetricFamily(
            "corps_workflows_completed",
            "Workflow instances that ended, by outcome: completed, failed (nothing to undo), "
            "compensated, cancelled.",
            labels=[*labels, "outcome"],
        )
        for outcome in Outcome:
            if outcome is not Outcome.RUNNING:
                ended.add_metric([*values, outcome.value], self.ended[outcome])
        yield ended
        in_flight = GaugeMetricFamily(
            "corps_workflows_in_flight", "Workflow instances started and not ended.", labels=labels
        )
        in_flight.add_metric(values, self.started - sum(self.ended.values()))
        yield in_flight
        if self.stuck is not None:
            stuck = GaugeMetricFamily(
                "corps_workflows_stuck",
                "Running workflow instances that made no progress for longer than the "
                "strategy's stuck_after.",
                labels=labels,
            )
            stuck.add_metric(values, self.stuck())
            yield stuck
        durations = HistogramMetricFamily(
            "corps_workflow_duration_seconds",
            "Time from start to end of a workflow instance.",
            labels=labels,
        )
        durations.add_metric(values, self.durations.buckets(), self.durations.sum)
        yield durations
        steps = HistogramMetricFamily(
            "corps_workflow_step_duration_seconds",
            "Time from sending a step's command to its answer (retries included).",
            labels=[*labels, "step"],
        )
        for step, histogram in sorted(self.steps.items()):
            steps.add_metric([*values, step], histogram.buckets(), histogram.sum)
        yield steps
        retries = CounterMetricFamily(
            "corps_workflow_retries",
            "Commands sent again after a technical failure (an error or no answer in time).",
            labels=labels,
        )
        retries.add_metric(values, self.retries)
        yield retries
        late = CounterMetricFamily(
            "corps_workflow_late_answers",
            "Answers that came after their step had ended (timed out for good, or answered "
            "already): discarded.",
            labels=labels,
        )
        late.add_metric(values, self.late_answers)
        yield late
        compensations = CounterMetricFamily(
            "corps_workflow_compensations", "Steps undone by their compensation.", labels=labels
        )
        compensations.add_metric(values, self.compensations)
        yield compensations
        store_errors = CounterMetricFamily(
            "corps_workflow_store_errors",
            "Saves of an instance's state that failed and were tried again.",
            labels=labels,
        )
        store_errors.add_metric(values, self.store_errors)
        yield store_errors
        queries = HistogramMetricFamily(
            "corps_workflow_status_query_seconds",
            "Time a status() query took (its count: the queries answered).",
            labels=labels,
        )
        queries.add_metric(values, self.status_durations.buckets(), self.status_durations.sum)
        yield queries
