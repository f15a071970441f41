"""`--plot DIR`: charts of a run, as SVG, with matplotlib (the `plot` extra).

- throughput per strategy, per scenario and failure mix;
- latency percentiles (p50, p95, p99) per strategy;
- the bytes of the event that starts each step: the stamp's growth under stamp coupling;
- with `--scaling`, the cost of a workflow as steps are added.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

__all__ = ("write_plots",)

INSTALL_HINT = "charts need matplotlib: pip install 'corps[plot]'"


def write_plots(results: dict[str, Any], directory: Path) -> list[Path]:
    """Write the charts of `results` (a `--json` report) into `directory`; their paths."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no screen, no GUI toolkit
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise SystemExit(INSTALL_HINT) from exc
    directory.mkdir(parents=True, exist_ok=True)
    figures: list[dict[str, Any]] = results.get("strategies", [])
    written = []
    groups: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for figure in figures:
        groups.setdefault((figure["scenario"], figure["failure_rate"]), []).append(figure)

    for (scenario, rate), rows in groups.items():
        tag = f"{scenario}-{round(rate * 100)}pct"
        names = [row["strategy"] for row in rows]

        fig, ax = plt.subplots(figsize=(7, 3.5))
        ax.bar(names, [statistics.median(row["workflows_per_s"]) for row in rows])
        ax.set_ylabel("workflows/s")
        ax.set_title(f"{scenario}, {rate:.0%} failing: throughput")
        ax.tick_params(axis="x", rotation=20)
        written.append(_save(fig, directory / f"throughput-{tag}.svg"))

        fig, ax = plt.subplots(figsize=(7, 3.5))
        width = 0.25
        for offset, (key, label) in enumerate(
            (("p50_s", "p50"), ("p95_s", "p95"), ("p99_s", "p99"))
        ):
            positions = [index + (offset - 1) * width for index in range(len(rows))]
            ax.bar(positions, [row[key] * 1e3 for row in rows], width, label=label)
        ax.set_xticks(range(len(rows)), names, rotation=20)
        ax.set_ylabel("ms, start to result")
        ax.set_title(f"{scenario}, {rate:.0%} failing: latency")
        ax.legend()
        written.append(_save(fig, directory / f"latency-{tag}.svg"))

    for scenario in dict.fromkeys(f["scenario"] for f in figures):
        rows = [f for f in figures if f["scenario"] == scenario and f.get("event_sizes")]
        if not rows:
            continue
        fig, ax = plt.subplots(figsize=(7, 3.5))
        seen = set()
        for row in rows:
            if row["strategy"] in seen:
                continue
            seen.add(row["strategy"])
            sizes = row["event_sizes"]
            ax.plot(range(len(sizes)), sizes, marker="o", label=row["strategy"])
        longest = max(len(row["event_sizes"]) for row in rows)
        ax.set_xticks(range(longest))
        ax.set_xlabel("step")
        ax.set_ylabel("bytes of the step's event")
        ax.set_title(f"{scenario}: what each event carries")
        ax.legend()
        written.append(_save(fig, directory / f"event-bytes-{scenario}.svg"))
    scaling = results.get("scaling")
    if scaling:
        fig, ax = plt.subplots(figsize=(7, 3.5))
        for name, points in scaling["workflows_per_s_by_steps"].items():
            steps = sorted(points, key=int)
            # the cost of one workflow, in microseconds, as the steps grow
            ax.plot(
                [int(n) for n in steps],
                [1e6 / points[n] for n in steps],
                marker="o",
                label=name,
            )
        ax.set_xscale("log", base=2)
        ax.set_xlabel("steps in the chain")
        ax.set_ylabel("us of the loop per workflow")
        ax.set_title("cost as steps are added")
        ax.legend()
        written.append(_save(fig, directory / "cost-by-steps.svg"))
    return written


def _save(figure: Any, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path)
    import matplotlib.pyplot as plt

    plt.close(figure)
    return path
