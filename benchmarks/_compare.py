"""`python -m benchmarks compare A.json B.json`: the change of every figure two runs share."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

__all__ = ("compare_reports", "flatten")


def _higher_is_better(name: str) -> bool:
    """Throughputs and ratios improve when they grow; latencies, sizes and costs when they
    fall."""
    return name.endswith("/s") or ": ratio" in name


def flatten(report: dict[str, Any]) -> dict[str, float]:
    """Every figure of a `--json` report, by a name that says what it is."""
    figures: dict[str, float] = {}
    for case in report.get("cases", []):
        name = f"{case['bus']} {case['name']} ({case['unit']})"
        figures[f"{name}: corps /s"] = statistics.median(case["corps"])
        figures[f"{name}: ratio to {case['baseline_name']}"] = case["ratio_median"]
    for figure in report.get("strategies", []):
        name = f"{figure['bus']} {figure['scenario']} {figure['strategy']}"
        figures[f"{name}: workflows/s"] = statistics.median(figure["workflows_per_s"])
        figures[f"{name}: ratio to floor"] = figure["ratio_median"]
        figures[f"{name}: p50 s"] = figure["p50_s"]
        figures[f"{name}: p99 s"] = figure["p99_s"]
        figures[f"{name}: messages per workflow"] = figure["messages_per_workflow"]
        figures[f"{name}: bytes per workflow"] = figure["bytes_per_workflow"]
        figures[f"{name}: status s"] = figure["status_s"]
    for cost in report.get("metrics_cost", []):
        figures[f"metrics cost {cost['strategy']} (share)"] = cost["cost"]
    idle = report.get("idle_actors")
    if idle:
        figures["idle actor bytes"] = idle["bytes_per_actor"]
    return figures


def compare_reports(before: Path, after: Path) -> str:
    """A table of the figures both reports have: before, after, and the change."""
    old = flatten(json.loads(before.read_text(encoding="utf-8")))
    new = flatten(json.loads(after.read_text(encoding="utf-8")))
    shared = [name for name in old if name in new]
    if not shared:
        return "the two reports share no figure"
    width = max(len(name) for name in shared)
    lines = [f"{'figure':<{width}}  {'before':>12}  {'after':>12}  {'change':>8}"]
    for name in shared:
        a, b = old[name], new[name]
        change = (b - a) / a if a else float("inf") if b else 0.0
        better = change > 0 if _higher_is_better(name) else change < 0
        mark = "" if abs(change) < 0.05 else (" better" if better else " worse")
        lines.append(f"{name:<{width}}  {a:>12,.6g}  {b:>12,.6g}  {change:>+8.1%}{mark}")
    only = sorted(set(old) ^ set(new))
    if only:
        lines.append(f"({len(only)} figures are in one report only)")
    return "\n".join(lines)
