"""`--report PATH`: the chapter's trade-off analysis, with this machine's numbers.

The tables follow chapter 11 (throughput and responsiveness, state visibility, error handling,
coupling), the Mermaid diagrams are the links the strategies really used, and the closing ADR
recommends a strategy for the measured workflow by a stated rule over the measured figures.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

__all__ = ("markdown_report", "recommend")

VISIBILITY = {
    "mediator": "exact step, from the mediator's store",
    "front_controller": "start and end (the step too with call backs)",
    "stamp_coupled": "only what the last stamp seen carried",
    "query_all": "asks every participant and merges",
    "event_sourced": "replays the event log (eventually consistent)",
}
ERRORS_WORTH_A_LINK = 0.10
"""Within this share of the best throughput, fewer error-handling links win."""


def recommend(figures: Sequence[dict[str, Any]]) -> tuple[str, list[str]]:
    """The strategy to choose for one scenario, and the measured reasons.

    The rule, from the chapter: error handling is the litmus test. Among the strategies within
    10% of the best throughput under failures, prefer the one whose failure cases add the
    fewest links; then the one whose status sees the most while a workflow runs; then the
    faster.
    """
    failing = [f for f in figures if f["failure_rate"] > 0] or list(figures)
    best = max(statistics.median(f["workflows_per_s"]) for f in failing)
    close = [f for f in failing if statistics.median(f["workflows_per_s"]) >= best * 0.9]

    def key(figure: dict[str, Any]) -> tuple[int, int, float]:
        return (
            figure["links"]["added_by_errors"],
            len(figure["unseen_while_running"]),
            -statistics.median(figure["workflows_per_s"]),
        )

    chosen = min(close, key=key)
    reasons = [
        f"under {chosen['failure_rate']:.0%} failures it runs "
        f"{statistics.median(chosen['workflows_per_s']):,.0f} workflows/s, "
        f"{statistics.median(chosen['workflows_per_s']) / best:.0%} of the fastest strategy "
        f"({best:,.0f})",
        _links_reason(chosen, [f for f in close if f is not chosen]),
        "while a workflow runs its status sees "
        + (
            "everything"
            if not chosen["unseen_while_running"]
            else "all but " + ", ".join(chosen["unseen_while_running"])
        )
        + f", at {chosen['status_s'] * 1e6:.0f} us and {chosen['status_messages']:.0f} "
        "messages a query",
    ]
    return chosen["strategy"], reasons


def _links_reason(chosen: dict[str, Any], rivals: list[dict[str, Any]]) -> str:
    added = chosen["links"]["added_by_errors"]
    said = f"its failure cases add {added} link{'s' if added != 1 else ''} to the happy path's"
    if not rivals:
        return said + " (no other strategy comes within 10% of its throughput)"
    others = ", ".join(f"{f['strategy']} {f['links']['added_by_errors']}" for f in rivals)
    return said + f" (the others within 10%: {others})"


def markdown_report(results: dict[str, Any], command: str) -> str:
    figures: list[dict[str, Any]] = results.get("strategies", [])
    lines = [
        "# corps: coordination strategies measured",
        "",
        f"Machine: {results['machine']}. Versions: "
        + ", ".join(f"{k} {v}" for k, v in results["versions"].items())
        + ".",
        f"Command: `{command}`. Each figure is the median of the repetitions.",
        "",
    ]
    scenarios = list(dict.fromkeys(f["scenario"] for f in figures))
    for scenario in scenarios:
        mine = [f for f in figures if f["scenario"] == scenario]
        lines += _scenario_section(scenario, mine)
    costs = results.get("metrics_cost", [])
    if costs:
        lines += ["## What the metrics cost", ""]
        for cost in costs:
            lines.append(
                f"- {cost['strategy']}: {cost['cost']:.1%} of workflow throughput "
                f"(target at most {cost['target']:.0%})."
            )
        lines.append("")
    return "\n".join(lines)


def _scenario_section(scenario: str, figures: list[dict[str, Any]]) -> list[str]:
    lines = [f"## {scenario}", ""]
    rates = sorted({f["failure_rate"] for f in figures})
    lines += [
        "### Throughput and responsiveness",
        "",
        "| strategy | failing | workflows/s | of its floor | p50 / p95 / p99 ms |",
        "| --- | --- | --- | --- | --- |",
    ]
    for rate in rates:
        for f in (f for f in figures if f["failure_rate"] == rate):
            lines.append(
                f"| {f['strategy']} | {rate:.0%} | {statistics.median(f['workflows_per_s']):,.0f}"
                f" | {f['ratio_median']:.2f} of {f['floor_name']} | {f['p50_s'] * 1e3:.1f} / "
                f"{f['p95_s'] * 1e3:.1f} / {f['p99_s'] * 1e3:.1f} |"
            )
    base = [f for f in figures if f["failure_rate"] == rates[0]]
    kinds = {f["floor_name"]: f for f in base}
    lines += [
        "",
        "What corps' messages alone reach, with no strategy logic (the floor's hops as corps "
        "messages): "
        + "; ".join(
            f"{statistics.median(f['bound']):,.0f} workflows/s, "
            f"{f['bound_ratio_median']:.2f} of the {name}"
            for name, f in kinds.items()
        )
        + ". The rest of each gap to the floor is the strategy's own work.",
    ]
    lines += [
        "",
        "### State management: what `status` can see",
        "",
        "| strategy | how it is answered | unseen while a workflow runs | cost of one query |",
        "| --- | --- | --- | --- |",
    ]
    for f in base:
        unseen = ", ".join(f["unseen_while_running"]) or "nothing"
        lines.append(
            f"| {f['strategy']} | {VISIBILITY.get(f['strategy'], '')} | {unseen} | "
            f"{f['status_s'] * 1e6:.1f} us, {f['status_messages']:.0f} messages |"
        )
    cases = [case for case in base[0]["links"] if case != "added_by_errors"] if base else []
    lines += [
        "",
        "### Error handling: communication links (figure 11-10)",
        "",
        "| strategy | " + " | ".join(cases) + " | added by the failure cases |",
        "| --- | " + " | ".join("---" for _ in cases) + " | --- |",
    ]
    for f in base:
        counts = " | ".join(str(f["links"][case]) for case in cases)
        lines.append(f"| {f['strategy']} | {counts} | {f['links']['added_by_errors']} |")
    lines += [
        "",
        "### Coupling: what travels",
        "",
        "| strategy | messages per workflow | bytes per workflow | largest message | "
        "compensations per workflow (with failures) | peak memory per workflow (1000 in "
        "flight) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    failing = {f["strategy"]: f for f in figures if f["failure_rate"] == rates[-1]}
    for f in base:
        comp = failing.get(f["strategy"], f)["compensations_per_workflow"]
        memory = f.get("memory_per_workflow")
        peak = f"{memory / 1024:.1f} KiB" if memory else "not measured"
        lines.append(
            f"| {f['strategy']} | {f['messages_per_workflow']:.1f} | "
            f"{f['bytes_per_workflow']:,.0f} | {f['largest_message']:,} B | {comp:.2f} | "
            f"{peak} |"
        )
    worst = cases[-1] if cases else None
    if worst is not None:
        lines += ["", f"### The links of one '{worst}' workflow, as each strategy ran it", ""]
        for f in base:
            chart = f.get("flowcharts", {}).get(worst)
            if chart:
                lines += [f"{f['strategy']}:", "", "```mermaid", chart, "```", ""]
    chosen, reasons = recommend(figures)
    failing_rate = max(rates)
    lines += [
        f"### ADR: coordinate {scenario} with {chosen}",
        "",
        f"**Context.** The {scenario} workflow, measured on this machine under every strategy "
        f"with {failing_rate:.0%} of workflows failing: the same services, the same outcomes "
        "(the strategy suite checks they match).",
        "",
        f"**Decision.** Use `{chosen}`. The rule: among the strategies within 10% of the best "
        "throughput under failures, take the one whose failure cases add the fewest links "
        "(error handling is the litmus test), then the one whose status sees the most, then "
        "the faster. The figures that decide it:",
        "",
        *[f"- {reason}." for reason in reasons],
        "",
        "**Consequences.** " + _consequences(chosen),
        "",
    ]
    return lines


def _consequences(strategy: str) -> str:
    return {
        "mediator": "One place holds the state, the retries and the compensations, and "
        "answers status exactly; it is also the one place every workflow goes through, so "
        "its throughput bounds the workflow's, and its availability is the workflow's.",
        "front_controller": "Services stay decoupled and the entry service can say whether a "
        "workflow finished; where it is in between is unknown unless the services call back, "
        "and error handling is spread over the services.",
        "stamp_coupled": "No store is needed and nobody can be asked: the state travels in "
        "ever larger messages, and status is blind until the end.",
        "query_all": "Nothing holds the state, so nothing can lose it; every status and "
        "every step pays for asking the participants.",
        "event_sourced": "The log gives an exact, replayable history at the cost of an event "
        "store that sees every event, and of status that lags the events a little.",
    }.get(strategy, "")
