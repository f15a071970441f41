"""The README's Python examples run as written and print what they claim."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
EXAMPLES = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)


def test_readme_has_examples() -> None:
    assert len(EXAMPLES) >= 2


@pytest.mark.parametrize("source", EXAMPLES, ids=[f"example-{i}" for i in range(len(EXAMPLES))])
def test_readme_example_runs(source: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", source], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()


def test_quickstart_prints_the_balance() -> None:
    done = subprocess.run(
        [sys.executable, "-c", EXAMPLES[0]], capture_output=True, text=True, timeout=30, check=True
    )
    assert done.stdout.strip() == "balance: 42"
    assert (
        "HELLO"
        in subprocess.run(
            [sys.executable, "-c", EXAMPLES[1]],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    )
