"""Hostile bytes on an actor's subject: always a dead letter and an error reply, never a dead
actor."""

from __future__ import annotations

import anyio
import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors import ActorSystem, DeadLetterReason
from brokers import MemoryBus

from .actors_fixtures import Add, Counter, GetTotal

msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats()
    | st.text()
    | st.binary(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)
payloads = st.one_of(
    st.binary(max_size=256),
    msgpack_values.map(msgspec.msgpack.encode),
    st.dictionaries(st.sampled_from(["type", "amount"]), msgpack_values).map(
        msgspec.msgpack.encode
    ),
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=payloads)
def test_actor_survives_arbitrary_bytes(data: bytes) -> None:
    async def scenario() -> None:
        async with MemoryBus() as bus, ActorSystem(bus) as system:
            counter = await system.spawn(Counter, name="c")
            reply = await bus.request(counter.subject, data, timeout=2)
            letters = list(system.dead_letters)
            if reply.headers and "Corps-Error" in reply.headers:
                assert len(letters) == 1
                assert letters[0].reason in (
                    DeadLetterReason.UNDECODABLE,
                    DeadLetterReason.HANDLER_ERROR,
                )
            before = await counter.ask(GetTotal())  # still serving
            await counter.tell(Add(amount=1))
            assert await counter.ask(GetTotal()) == before + 1

    anyio.run(scenario)
