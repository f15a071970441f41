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


CHOREOGRAPHIES = sorted(set(STRATEGIES) - {"mediator"})


@pytest.mark.nats
@pytest.mark.slow
@pytest.mark.parametrize("strategy", CHOREOGRAPHIES)
@pytest.mark.parametrize("fault", [f for f in NATS_FAULTS if f != "mediator-kill"])
async def test_no_choreographed_order_lost_or_doubled_when_nats_fails_by(
    fault: str, strategy: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Events on NATS are acknowledged and sent again until they are: a cut connection, a
    restarted server or a killed cluster node strands no instance (core NATS alone lost
    every event in flight: all ten clients' orders, before acknowledgements)."""
    await check(fault, caplog, strategy)
