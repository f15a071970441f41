"""The README's runnable examples run as written and print what they claim."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)
PROGRAMS = [block for block in BLOCKS if "asyncio.run(" in block]
EXPECTED = [
    "balance: 42",
    "b'HELLO'",
    "pong",
    "ann completed\nmallory failed card declined\nbob compensated backordered",
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
