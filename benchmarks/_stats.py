"""Repetitions, medians and spreads."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

__all__ = ("Sample",)


@dataclass(frozen=True, slots=True)
class Sample:
    """Several measurements of one figure."""

    values: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def low(self) -> float:
        return min(self.values)

    @property
    def high(self) -> float:
        return max(self.values)

    def ratio_to(self, baseline: Sample) -> Sample:
        """Per-repetition ratios: each run against the baseline run next to it."""
        return Sample(tuple(v / b for v, b in zip(self.values, baseline.values, strict=True)))
