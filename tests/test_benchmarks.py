"""The benchmark command runs end to end and reports every figure (numbers are not judged
here: speed is the benchmark's business, not the tests')."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks._scenarios import CONSTRUCTS, SCENARIOS
from benchmarks._strategy_cases import STRATEGIES, run_strategy


@pytest.mark.nats
def test_quick_benchmark_writes_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--quick",
            "--bus",
            "all",
            "--json",
            str(out),
            "--metrics-port",
            "0",
            "--report",
            str(tmp_path / "report.md"),
            "--plot",
            str(tmp_path / "charts"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "actors on MemoryBus" in done.stdout
    assert "actors on NatsBus" in done.stdout
    assert "live metrics on http://127.0.0.1:" in done.stdout
    assert "strategies on NatsBus" in done.stdout
    charts = sorted(p.name for p in (tmp_path / "charts").iterdir())
    assert "throughput-order-placement-20pct.svg" in charts
    assert "latency-sysops-ticket-0pct.svg" in charts
    assert "event-bytes-order-placement.svg" in charts
    assert all(
        (tmp_path / "charts" / name).read_text().lstrip().startswith("<?xml") for name in charts
    )
    markdown = (tmp_path / "report.md").read_text()
    for heading in (
        "## order-placement",
        "## sysops-ticket",
        "### State management: what `status` can see",
        "### Error handling: communication links (figure 11-10)",
        "```mermaid",
        "**Decision.** Use `",
    ):
        assert heading in markdown
    report = json.loads(out.read_text())
    on_nats = {figure["strategy"]: figure for figure in report["strategies_on_nats"]}
    assert len(on_nats) == 5
    assert all(
        figure["workflows_per_s"][0] > 0 and figure["floor"][0] > 0 for figure in on_nats.values()
    )
    assert on_nats["mediator"]["floor_name"] == "raw nats-py request/reply"
    peers = {peer["scenario"]: peer for peer in report["peers"]}  # pykka is a dev extra
    assert set(peers) == {"order-placement", "sysops-ticket"}
    assert all(peer["peer_mediator"][0] > 0 for peer in peers.values())
    costs = {cost["strategy"]: cost for cost in report["metrics_cost"]}
    assert set(costs) == {"mediator", "stamp_coupled"}
    assert all(cost["metrics_on"][0] > 0 and cost["metrics_off"][0] > 0 for cost in costs.values())
    figures = {(case["bus"], case["name"], case["baseline_name"]) for case in report["cases"]}
    assert ("memory", "tell", "asyncio.Queue one-way") in figures
    figures = report["strategies"]
    assert {(f["scenario"], f["failure_rate"]) for f in figures} == {
        ("order-placement", 0.0),
        ("order-placement", 0.2),
        ("sysops-ticket", 0.0),
        ("sysops-ticket", 0.2),
    }
    strategies = {
        f["strategy"]: f
        for f in figures
        if f["scenario"] == "order-placement" and f["failure_rate"] == 0.0
    }
    assert set(strategies) == {
        "mediator",
        "front_controller",
        "stamp_coupled",
        "query_all",
        "event_sourced",
    }
    assert strategies["mediator"]["floor_name"] == "raw asyncio mediator"
    assert strategies["query_all"]["floor_name"] == "raw asyncio choreography"
    for figure in figures:
        assert figure["workflows_per_s"][0] > 0
        # the floor's hops as corps messages, measured beside it, and the shares derived
        (bound,) = figure["bound"]
        assert bound > 0
        assert figure["bound_ratio_median"] == pytest.approx(bound / figure["floor"][0])
        assert figure["of_bound_median"] == pytest.approx(figure["workflows_per_s"][0] / bound)
        assert figure["messages_per_workflow"] > 0
        assert figure["p50_s"] <= figure["p95_s"] <= figure["p99_s"]
        assert figure["links"]["completed"] > 0
    stamp_sizes = strategies["stamp_coupled"]["event_sizes"]
    assert stamp_sizes == sorted(stamp_sizes)  # the stamp grows step by step
    assert len(set(strategies["query_all"]["event_sizes"][1:])) == 1  # ids only
    for figure in strategies.values():
        assert set(figure["links"]) == {"completed", "declined", "backordered", "added_by_errors"}
        assert figure["compensations_per_workflow"] == 0  # nothing fails
        assert 0 < figure["memory_per_workflow"] < 1_000_000
    failing = [f for f in figures if f["scenario"] == "order-placement" and f["failure_rate"]]
    assert all(f["compensations_per_workflow"] > 0 for f in failing)  # backorders refunded
    # stamp coupling's last stamp carries every reply: the largest message of all strategies
    assert strategies["stamp_coupled"]["largest_message"] == max(
        f["largest_message"] for f in strategies.values()
    )
    assert strategies["stamp_coupled"]["status_messages"] == 0  # it reads the stamp it has
    assert strategies["query_all"]["status_messages"] > 2  # it asks every participant
    # figure 11-10: error cases add more links to a choreography than to a mediator
    links = {name: figure["links"]["added_by_errors"] for name, figure in strategies.items()}
    assert links["mediator"] == 1  # the refund
    assert min(links.values()) == links["mediator"]
    assert links["stamp_coupled"] > links["mediator"]


def test_help_explains_every_option() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    for option in (
        "--bus",
        "--nats-url",
        "--repeat",
        "--json",
        "--quick",
        "--workflows",
        "--strategies",
        "--failure-rates",
        "--scenarios",
        "--duration",
        "--metrics-port",
        "--report",
        "--plot",
        "--in-flight",
        "--scaling",
    ):
        assert option in done.stdout


def test_compare_prints_the_change_of_every_shared_figure(tmp_path: Path) -> None:
    def report(workflows_per_s: float, p99: float) -> dict[str, object]:
        figure = {
            "bus": "memory",
            "scenario": "order-placement",
            "strategy": "mediator",
            "workflows_per_s": [workflows_per_s],
            "ratio_median": workflows_per_s / 100_000,
            "p50_s": 0.005,
            "p99_s": p99,
            "messages_per_workflow": 8,
            "bytes_per_workflow": 349,
            "status_s": 0.00002,
        }
        return {"cases": [], "strategies": [figure]}

    before, after = tmp_path / "a.json", tmp_path / "b.json"
    before.write_text(json.dumps(report(10_000, 0.010)))
    after.write_text(json.dumps(report(12_000, 0.020)))
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "compare", str(before), str(after)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = {line.split("  ")[0].strip(): line for line in done.stdout.splitlines()}
    throughput = lines["memory order-placement mediator: workflows/s"]
    assert "+20.0% better" in throughput
    assert "+100.0% worse" in lines["memory order-placement mediator: p99 s"]
    assert "+0.0%" in lines["memory order-placement mediator: messages per workflow"]


def test_the_recommendation_follows_the_measured_figures() -> None:
    from benchmarks._report import recommend

    def figure(strategy: str, rate: float, throughput: float, added: int, unseen: int) -> dict:
        return {
            "strategy": strategy,
            "failure_rate": rate,
            "workflows_per_s": [throughput],
            "links": {"added_by_errors": added},
            "unseen_while_running": ["current_step"] * unseen,
            "status_s": 0.00002,
            "status_messages": 2,
        }

    figures = [
        figure("mediator", 0.2, 9_500, 1, 0),
        figure("stamp_coupled", 0.2, 10_000, 4, 4),
        figure("query_all", 0.2, 3_000, 0, 0),  # fewest links, but far too slow
        figure("mediator", 0.0, 99_000, 1, 0),  # without failures: not what decides
    ]
    chosen, reasons = recommend(figures)
    assert chosen == "mediator"
    assert "95% of the fastest strategy" in reasons[0]
    figures[1]["links"]["added_by_errors"] = 1  # a tie on links: the status decides
    assert recommend(figures)[0] == "mediator"
    figures[0]["workflows_per_s"] = [8_000]  # no longer within 10%
    assert recommend(figures)[0] == "stamp_coupled"


def test_scaling_shows_how_cost_grows(tmp_path: Path) -> None:
    out = tmp_path / "scaling.json"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--quick",
            "--scaling",
            "--strategies",
            "mediator,query_all",
            "--scenarios",
            "order-placement",
            "--failure-rates",
            "0",
            "--json",
            str(out),
            "--plot",
            str(tmp_path / "charts"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert (tmp_path / "charts" / "cost-by-steps.svg").exists()
    scaling = json.loads(out.read_text())["scaling"]
    by_steps = scaling["workflows_per_s_by_steps"]["mediator"]
    assert set(by_steps) == {"2", "4", "8", "16"}
    assert all(value > 0 for value in by_steps.values())
    # query-all asks every participant: its status needs more messages as steps are added
    status = scaling["status_by_participants"]["query_all"]
    assert status["16"]["messages"] > status["2"]["messages"]
    assert scaling["status_by_participants"]["mediator"]["16"]["messages"] == 2
    assert set(scaling["by_in_flight"]["mediator"]) == {"1", "10", "100", "1000"}


def test_a_synthetic_chain_runs_with_the_load_asked_for(tmp_path: Path) -> None:
    out = tmp_path / "chain.json"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--quick",
            "--scenarios",
            "chain-3",
            "--strategies",
            "mediator,stamp_coupled",
            "--failure-rates",
            "0",
            "--in-flight",
            "10",
            "--workflows",
            "1000",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    figures = json.loads(out.read_text())["strategies"]
    assert {f["scenario"] for f in figures} == {"chain-3"}
    assert all(f["workflows"] == [100] for f in figures)  # --quick takes a tenth
    mediator = next(f for f in figures if f["strategy"] == "mediator")
    assert mediator["messages_per_workflow"] == 6  # a request and a reply per step
    bad = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--scenarios", "chain-x"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2
    assert "chain-N" in bad.stderr


@pytest.mark.nats
def test_scale_out_measures_every_strategy_beside_raw_nats(tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "scale",
            "--points",
            "1",
            "--seconds",
            "0.5",
            "--clients",
            "5",
            "--strategies",
            "mediator",
            "stamp_coupled",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    figures = json.loads(out.read_text())
    (point,) = figures["points"]
    assert point["processes"] == 1
    assert set(point["workflows_per_s"]) == {"raw nats-py", "mediator", "stamp_coupled"}
    assert all(rate > 0 for rate in point["workflows_per_s"].values())
    assert "| mediator | " in done.stdout  # the table, each strategy beside the floor


@pytest.mark.anyio
@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
async def test_the_screened_order_scenario_runs_under_every_strategy(strategy: str) -> None:
    """The branch's scenario, opt-in (`--scenarios screened-order-placement`): every workflow
    ends, a fifth of them on one of its failures."""
    run = await run_strategy(
        strategy, SCENARIOS["screened-order-placement"], workflows=60, failure_rate=0.2
    )
    assert run.workflows == 60


@pytest.mark.anyio
@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
@pytest.mark.parametrize("construct", sorted(CONSTRUCTS))
async def test_each_construct_runs_under_every_strategy(strategy: str, construct: str) -> None:
    """`--scenarios constructs`: a branch, a parallel, a for-each, a sub-workflow, each in
    four services, the last refusing half the inputs: every workflow ends, the refused ones
    compensated, and the failure path adds links to the happy path's."""
    run = await run_strategy(strategy, CONSTRUCTS[construct], workflows=40, failure_rate=0.5)
    assert run.workflows == 40
    assert run.compensations_per_workflow > 0
    assert run.links["completed"] > 0
    assert run.links["added_by_errors"] > 0
