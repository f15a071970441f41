"""`python -m benchmarks scale`: throughput as processes are added, on one nats-server.

At each point n, n host processes run the order-placement services (`corps serve`, with the
choreographies' adapters beside the services) and n starter processes run a closed loop of
orders under one strategy. The same hops hand-written on raw nats-py (n raw hosts with queue
subscriptions, n raw starters) run at each point too, in the same run: the floor. Each
strategy's workflows/s is printed beside the floor's (the ratio; target 0.7) and beside n
times its own figure at n = 1 (the growth; target 0.8 from 1 to 4 starters, judged only where
the machine has a core for every process).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from brokers import NatsServer

from ._scale_roles import STRATEGIES

__all__ = ("ReadyProcess", "ScalePoint", "scale_main")

RATIO_TARGET = 0.7
GROWTH_TARGET = 0.8
RAW = "raw nats-py"
_ROOT = Path(__file__).resolve().parent.parent


@dataclass(slots=True)
class ScalePoint:
    """Workflows/s of each case with `processes` hosts and as many starters."""

    processes: int
    rates: dict[str, float] = field(default_factory=dict)


class ReadyProcess:
    """A child process that says it is ready on a line of its own ("ready", or `corps
    serve`'s readiness line). Its output is read as it comes, by threads: a process that
    writes more than a pipe holds would otherwise block."""

    def __init__(self, args: list[str], *, ready_on_stderr: bool = False) -> None:
        self.args = args
        self.process = subprocess.Popen(
            args,
            cwd=_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.ready = threading.Event()
        self.started = False
        self.lines: list[str] = []
        self.errors: list[str] = []
        stream = self.process.stderr if ready_on_stderr else self.process.stdout
        other = self.process.stdout if ready_on_stderr else self.process.stderr
        self.readers = [
            threading.Thread(target=self._read, args=(source, into), daemon=True)
            for source, into in ((stream, self.lines), (other, self.errors))
        ]
        for reader in self.readers:
            reader.start()

    def _read(self, source: object, into: list[str]) -> None:
        for line in source:  # type: ignore[attr-defined]
            into.append(line)
            if line.startswith(("ready", "corps: serving")):
                self.started = True
                self.ready.set()
        self.ready.set()  # the stream ended: ready or not, nothing more will come

    def wait_ready(self, timeout: float = 60.0) -> None:
        if not self.ready.wait(timeout) or not self.started:
            self.stop()
            for reader in self.readers:
                reader.join(5)
            output = "".join(self.lines + self.errors)
            raise RuntimeError(f"{' '.join(self.args)} did not start:\n{output}")

    def go(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def result(self, timeout: float) -> dict[str, float]:
        self.process.wait(timeout)
        for line in reversed(self.lines):
            if line.startswith("{"):
                parsed: dict[str, float] = json.loads(line)
                return parsed
        raise RuntimeError(f"{' '.join(self.args)} printed no result: {''.join(self.errors)}")

    def stop(self, *, graceful: bool = True) -> None:
        """SIGTERM and a wait (SIGKILL after 20 s), or, not `graceful`, SIGKILL at once."""
        if self.process.poll() is None and not graceful:
            self.process.kill()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process.wait(10)
        for reader in self.readers:  # at the end of what the process wrote
            reader.join(10)
        for pipe in (self.process.stdin, self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()


def _corps() -> str:
    return str(Path(sys.executable).parent / "corps")


def _run_case(url: str, case: str, processes: int, clients: int, seconds: float) -> float:
    """Workflows/s of `processes` starters of `case`, each `clients` in a closed loop."""
    role = [sys.executable, "-m", "benchmarks._scale_roles"]
    if case == RAW:
        args = [*role, "raw-start", url, str(clients), str(seconds)]
    else:
        args = [*role, "start", url, case, str(clients), str(seconds)]
    starters = [ReadyProcess(args) for _ in range(processes)]
    try:
        for starter in starters:
            starter.wait_ready()
        for starter in starters:  # all at once, so that they overlap for the whole run
            starter.go()
        results = [starter.result(seconds + 60) for starter in starters]
    finally:
        for starter in starters:
            starter.stop()
    return sum(r["completed"] for r in results) / max(r["seconds"] for r in results)


def _hosts(url: str, processes: int, *, raw: bool) -> list[ReadyProcess]:
    if raw:
        role = [sys.executable, "-m", "benchmarks._scale_roles", "raw-host", url]
        hosts = [ReadyProcess(role) for _ in range(processes)]
    else:
        serve = [_corps(), "serve", "benchmarks._scale_roles:host", "--nats", url]
        hosts = [ReadyProcess(serve, ready_on_stderr=True) for _ in range(processes)]
    try:
        for host in hosts:
            host.wait_ready()
    except BaseException:
        for host in hosts:
            host.stop()
        raise
    return hosts


def measure(
    url: str, points: Sequence[int], strategies: Sequence[str], clients: int, seconds: float
) -> list[ScalePoint]:
    measured = []
    for processes in points:
        point = ScalePoint(processes)
        print(f"{processes} host(s) and {processes} starter(s):", flush=True)
        for raw, cases in ((True, [RAW]), (False, list(strategies))):
            hosts = _hosts(url, processes, raw=raw)
            try:
                for case in cases:
                    point.rates[case] = _run_case(url, case, processes, clients, seconds)
                    print(f"  {case:<18} {point.rates[case]:>10,.0f} workflows/s", flush=True)
            finally:
                for host in hosts:
                    host.stop()
        measured.append(point)
    return measured


def report(measured: list[ScalePoint], strategies: Sequence[str]) -> str:
    cores = os.cpu_count() or 1
    first = measured[0]
    lines = [
        f"scale-out on one nats-server, {cores} cores; ratio = of {RAW} at the same point "
        f"(target {RATIO_TARGET}); growth = of n times the figure at n = {first.processes} "
        f"(target {GROWTH_TARGET}, judged where 2n processes have a core each)",
        "",
        "| strategy | " + " | ".join(f"n = {p.processes}" for p in measured) + " |",
        "| --- |" + " --- |" * len(measured),
    ]
    for case in (RAW, *strategies):
        cells = []
        for point in measured:
            rate = point.rates.get(case, 0.0)
            cell = f"{rate:,.0f}"
            if case != RAW:
                ratio = rate / point.rates[RAW] if point.rates.get(RAW) else 0.0
                cell += f" ({ratio:.2f} {'ok' if ratio >= RATIO_TARGET else 'MISSED'})"
            if point is not first and first.rates.get(case):
                scale = point.processes / first.processes
                growth = rate / (first.rates[case] * scale)
                judged = 2 * point.processes <= cores
                verdict = ("ok" if growth >= GROWTH_TARGET else "MISSED") if judged else "n/j"
                cell += f", growth {growth:.2f} {verdict}"
            cells.append(cell)
        lines.append(f"| {case} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def scale_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks scale",
        description="Workflows/s of every strategy as host and starter processes are added, "
        "beside the same hops on raw nats-py, on one nats-server.",
    )
    parser.add_argument(
        "--points",
        default="1,2",
        help="processes per side (hosts, and as many starters) at each point (default: 1,2; "
        "1,2,4,8 on a machine with 16 cores)",
    )
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    parser.add_argument("--clients", type=int, default=50, help="concurrent orders per starter")
    parser.add_argument("--seconds", type=float, default=3.0, help="each run's length")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args(argv)
    points = [int(p) for p in args.points.split(",")]
    if not points or min(points) < 1:
        parser.error("--points takes positive numbers, such as 1,2,4")
    with NatsServer(jetstream=False) as server:
        measured = measure(server.url, points, args.strategies, args.clients, args.seconds)
    print()
    print(report(measured, args.strategies))
    if args.json:
        figures = {
            "cores": os.cpu_count(),
            "points": [{"processes": p.processes, "workflows_per_s": p.rates} for p in measured],
        }
        Path(args.json).write_text(json.dumps(figures, indent=2), encoding="utf-8")
    return 0
