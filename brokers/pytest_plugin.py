"""pytest fixtures for code built on corps buses (registered through the `pytest11` entry
point, so installing corps makes them available).

- `nats_server`: a real nats-server on a free 127.0.0.1 port with JetStream, one per session.
- `bus`: a connected bus, once a `MemoryBus` and once a `NatsBus` on `nats_server`, so that
  `async def test_x(bus)` runs on both. The NATS runs carry the `nats` marker
  (`pytest -m "not nats"` skips them).
- `bus_kind`: "memory" or "nats", the kind the current `bus` is.
- `clock`: a `coordination.ManualClock`. Give it to a strategy (`clock=clock`), and
  `await clock.advance(seconds)` skips time: a test of a one-day `Sleep` runs in
  milliseconds.

Async tests need anyio's pytest plugin (`@pytest.mark.anyio`) on the asyncio backend.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from ._bus import Bus
from ._memory import MemoryBus
from ._nats import NatsBus
from ._nats_server import NatsServer

__all__ = ("bus", "bus_kind", "clock", "nats_server")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "nats: runs against a real nats-server")


@pytest.fixture(scope="session")
def nats_server() -> Iterator[NatsServer]:
    """A nats-server on 127.0.0.1 with JetStream, shared by the session."""
    with NatsServer() as server:
        yield server


@pytest.fixture(params=["memory", pytest.param("nats", marks=pytest.mark.nats)])
def bus_kind(request: pytest.FixtureRequest) -> str:
    """Which bus `bus` is: "memory" or "nats"."""
    return str(request.param)


@pytest.fixture
async def bus(bus_kind: str, request: pytest.FixtureRequest) -> AsyncIterator[Bus]:
    """A connected bus of the kind `bus_kind`, closed after the test."""
    if bus_kind == "memory":
        async with MemoryBus() as memory:
            yield memory
        return
    server: NatsServer = request.getfixturevalue("nats_server")
    async with NatsBus(server.url) as nats_bus:
        yield nats_bus


@pytest.fixture
def clock() -> Any:
    """A clock that moves only when the test says (`await clock.advance(seconds)`)."""
    from coordination import ManualClock

    return ManualClock()
