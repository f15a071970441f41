"""The README's runnable examples run as written and print what they claim."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = [  # a block inside a list item is indented with it
    textwrap.dedent(block)
    for block in re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)
]
PROGRAMS = [block for block in BLOCKS if "asyncio.run(" in block]
EXPECTED = [
    "balance: 42",
    "\n".join(
        [
            "resume failed: the card network timed out",
            "resume total: 11",
            "restart failed: the card network timed out",
            "restart total: 1",
        ]
    ),
    "b'HELLO'",
    "pong",
    "inbox of one\ninbox of two",
    "\n".join(
        f"{strategy} {line}"
        for strategy in ("mediator", "stamp_coupled")
        for line in (
            "ann completed not screened",
            "bob completed screened",
            "eve failed suspected fraud",
        )
    ),
    "\n".join(
        f"{strategy} {line}"
        for strategy in ("mediator", "stamp_coupled")
        for line in ("ann completed", "mallory failed card declined", "bob compensated backordered")
    ),
    'corps_actor_messages_total{actor="echo",outcome="ok"} 3.0',
]
"""What each program prints, in README order."""


def test_every_program_is_checked() -> None:
    assert len(PROGRAMS) == len(EXPECTED)


@pytest.mark.parametrize(
    ("source", "expected"), list(zip(PROGRAMS, EXPECTED, strict=True)), ids=EXPECTED
)
def test_readme_program_prints_what_it_claims(source: str, expected: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", source], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == expected


MERMAID = re.findall(r"```mermaid\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)


@pytest.mark.anyio
async def test_the_readme_sequence_diagram_comes_from_a_real_run() -> None:
    from actors import ActorSystem
    from coordination import StampCoupled
    from coordination.scenarios.order_placement import (
        EmailService,
        FulfillmentService,
        OrderService,
        PaymentService,
        PlaceOrder,
        order_workflow,
    )

    from .helpers import until

    async with ActorSystem(record_links=True) as system:
        for name, service in [
            ("order", OrderService),
            ("payment", PaymentService),
            ("fulfillment", FulfillmentService),
            ("email", EmailService),
        ]:
            await system.spawn(service, name=name)
        async with StampCoupled(system, order_workflow) as strategy:
            workflow_id = await strategy.start(PlaceOrder("o1", "ann", "lamp", 1, 1000))
            await strategy.result(workflow_id, timeout=5)
        links = system.links
        assert links is not None
        await until(lambda: len(links.sequence(workflow_id)) == 7)
        assert links.sequence_diagram(workflow_id) == MERMAID[0].strip()
