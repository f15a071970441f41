from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    # corps targets asyncio (nats-py is asyncio-only); anyio gives it structure.
    return "asyncio"
