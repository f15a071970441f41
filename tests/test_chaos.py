"""The fault-injection suite, short version (`make chaos` runs it at full length): orders run
while each fault strikes, and the history checker finds no order lost, no effect applied twice
or without its order, and every compensated order's charge refunded."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest

from benchmarks._chaos import MEMORY_FAULTS, NATS_FAULTS, QUICK, fault_table, run_fault
from benchmarks._strategy_cases import STRATEGIES
from coordination import Outcome

pytestmark = pytest.mark.anyio


async def check(fault: str, caplog: pytest.LogCaptureFixture, strategy: str = "mediator") -> None:
    caplog.set_level(logging.CRITICAL)  # retries and reconnects are logged as warnings: expected
    report = await run_fault(fault, replace(QUICK, strategy=strategy))
    verdict = report.verdict
    assert verdict.ok, verdict.summary()
    assert report.injected > 0, "the fault never struck"
    assert verdict.started >= 50
    assert verdict.outcomes[Outcome.COMPLETED] > 0
    assert verdict.outcomes[Outcome.COMPENSATED] > 0  # the failure paths ran under the fault too
    assert verdict.needs_attention == 0
    assert f"| {fault} |" in fault_table([report])


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
@pytest.mark.parametrize("fault", MEMORY_FAULTS)
async def test_no_order_lost_or_doubled_under(
    fault: str, strategy: str, caplog: pytest.LogCaptureFixture
) -> None:
    await check(fault, caplog, strategy)


@pytest.mark.nats
@pytest.mark.slow
@pytest.mark.parametrize("fault", NATS_FAULTS)
async def test_no_order_lost_or_doubled_when_nats_fails_by(
    fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    await check(fault, caplog)


@pytest.mark.nats
@pytest.mark.slow
async def test_a_choreography_on_core_nats_loses_in_flight_instances_but_never_doubles(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """What the README states: a connection cut strands the instances whose event was in
    flight (at most one per client, since each client has one order in flight), and applies
    no effect twice nor leaves one inconsistent."""
    caplog.set_level(logging.CRITICAL)
    settings = replace(QUICK, strategy="stamp_coupled", settle=3.0)
    report = await run_fault("connection-drop", settings)
    verdict = report.verdict
    assert report.injected > 0
    assert len(verdict.lost) <= settings.clients  # in practice all of them (README)
    assert verdict.duplicated == []
    assert verdict.unexpected == []
    assert verdict.inconsistent == []
