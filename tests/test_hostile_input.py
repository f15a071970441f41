"""Hostile input on every subject a running strategy listens on: malformed msgpack, wrong
types, deep nesting, unknown message types, forged ids and reply subjects. Each is refused
(dead-lettered or ignored), no callback fails, and the orders that follow all end correctly."""

from __future__ import annotations

import logging

import anyio
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors import CAUSATION_ID, CORRELATION_ID, ERROR_KIND, MESSAGE_ID
from brokers import MemoryBus, NatsBus
from coordination import Outcome

from .test_strategies import STRATEGIES, open_shop, order

msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats() | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
payloads = st.one_of(
    st.binary(max_size=128),
    msgpack_values.map(msgspec.msgpack.encode),
    st.dictionaries(
        st.sampled_from(["type", "workflow_id", "step", "data", "route", "order_id", "amount"]),
        msgpack_values,
    ).map(msgspec.msgpack.encode),
    st.integers(1, 2000).map(lambda depth: b"\x91" * depth + b"\xc0"),  # deep nesting
)
header_names = st.sampled_from([MESSAGE_ID, CAUSATION_ID, CORRELATION_ID, ERROR_KIND, "X"])
headers = st.none() | st.dictionaries(header_names, st.text("abc.-_0123456789", max_size=12))
hostile = st.tuples(payloads, headers, st.sampled_from([None, "forged.reply", "_INBOX.x.y"]))


def concrete(pattern: str) -> str:
    return ".".join("x" if token in ("*", ">") else token for token in pattern.split("."))


@pytest.mark.parametrize("bus_kind", ["memory", pytest.param("nats", marks=pytest.mark.nats)])
@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
@settings(
    max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(messages=st.lists(hostile, min_size=20, max_size=40))
def test_hostile_input_on_every_subject_is_refused_and_work_goes_on(
    request: pytest.FixtureRequest,
    bus_kind: str,
    strategy: str,
    messages: list[tuple[bytes, dict[str, str] | None, str | None]],
) -> None:
    url = request.getfixturevalue("nats_server").url if bus_kind == "nats" else ""

    async def scenario() -> None:
        bus = NatsBus(url) if url else MemoryBus()
        async with bus, open_shop(bus, strategy=strategy) as shop:
            subjects = [concrete(subject) for subject in bus.subjects]
            assert len(subjects) >= 5  # services, coordinator endpoints, reply subjects
            for data, header, reply in messages:
                for subject in subjects:
                    await bus.publish(subject, data, header, reply)
            await bus.flush()
            cases = [(order(1), Outcome.COMPLETED), (order(2, customer="mallory"), Outcome.FAILED)]
            cases.append((order(3, item="rare"), Outcome.COMPENSATED))
            for placed, expected in cases:
                result = await shop.mediator.result(await shop.mediator.start(placed), timeout=10)
                assert result.outcome is expected
            assert shop.payment.charges == {"o1": 1000, "o3": 1000}
            assert shop.payment.refunds == {"o3": 1000}
            assert shop.fulfillment.shipped == {"o1": 1}
            assert bus.stats.callback_errors == 0  # refused by design, not by accident
            assert shop.system.dead_letters.total > 0  # and counted

    logging.disable(logging.ERROR)  # every refusal is logged: thousands of lines
    try:
        anyio.run(scenario)
    finally:
        logging.disable(logging.NOTSET)
