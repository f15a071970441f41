"""The benchmark command runs end to end and reports every figure (numbers are not judged
here: speed is the benchmark's business, not the tests')."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.nats
def test_quick_benchmark_writes_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--bus", "all", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "actors on MemoryBus" in done.stdout
    assert "actors on NatsBus" in done.stdout
    report = json.loads(out.read_text())
    figures = {(case["bus"], case["name"], case["baseline_name"]) for case in report["cases"]}
    assert ("memory", "tell", "asyncio.Queue one-way") in figures
    assert ("memory", "mediator", "raw asyncio mediator") in figures
    assert ("nats", "ask", "nats-py request") in figures
    assert all(value > 0 for case in report["cases"] for value in case["corps"])
    assert report["idle_actors"]["tasks_created"] == 0


def test_help_explains_every_option() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    for option in ("--bus", "--nats-url", "--repeat", "--json", "--quick", "--workflows"):
        assert option in done.stdout
