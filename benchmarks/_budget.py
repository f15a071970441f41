"""How long a closed loop goes on: a number of workflows shared by its clients, or until a
deadline."""

from __future__ import annotations

import time

__all__ = ("Budget",)


class Budget:
    """`take()` is True while there is a workflow left to start: one of `workflows` in all,
    or any until `duration` seconds from now."""

    __slots__ = ("_deadline", "_remaining")

    def __init__(self, workflows: int | None, duration: float | None) -> None:
        if (workflows is None) == (duration is None):
            raise ValueError("give workflows or duration")
        self._remaining = workflows or 0
        self._deadline = time.perf_counter() + duration if duration is not None else None

    def take(self) -> bool:
        if self._deadline is not None:
            return time.perf_counter() < self._deadline
        if self._remaining <= 0:
            return False
        self._remaining -= 1
        return True
