"""Hostile bytes on an actor's subject: always a dead letter and an error reply, never a dead
actor."""

from __future__ import annotations

import tracemalloc

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


def test_a_small_input_claiming_a_huge_container_allocates_nothing() -> None:
    """Headers that announce 4 billion elements or bytes, on a 5-byte message: refused as
    undecodable at once, without allocating for what was announced."""
    bombs = [
        b"\xdd\xff\xff\xff\xff",  # array32
        b"\xdf\xff\xff\xff\xff",  # map32
        b"\xdb\xff\xff\xff\xff",  # str32
        b"\xc6\xff\xff\xff\xff",  # bin32
    ]

    async def scenario() -> None:
        async with MemoryBus() as bus, ActorSystem(bus) as system:
            counter = await system.spawn(Counter, name="c")
            tracemalloc.start()
            try:
                for bomb in bombs:
                    reply = await bus.request(counter.subject, bomb, timeout=2)
                    assert reply.headers is not None
                    assert "Corps-Error" in reply.headers
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            assert peak < 1_000_000  # bytes: the bookkeeping of four requests, nothing more
            assert system.dead_letters.counts[DeadLetterReason.UNDECODABLE] == len(bombs)
            assert await counter.ask(GetTotal()) == 0

    anyio.run(scenario)
