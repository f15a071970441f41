"""OTP-style restart intensity: at most `max_restarts` restarts within `within` seconds."""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass

__all__ = ("RestartTracker", "SupervisorPolicy")


@dataclass(frozen=True, slots=True)
class SupervisorPolicy:
    """How an actor whose handler raises is restarted.

    Each failure restarts the actor with fresh state after a backoff that doubles from
    `backoff_initial` up to `backoff_max` seconds, scaled by a random factor within
    `1 +- jitter`. The failure that makes more than `max_restarts` within `within` seconds
    stops the actor and escalates to the system instead.
    """

    max_restarts: int = 3
    within: float = 5.0
    backoff_initial: float = 0.01
    backoff_max: float = 1.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.max_restarts < 0 or self.within <= 0:
            raise ValueError("max_restarts must be >= 0 and within > 0")
        if self.backoff_initial < 0 or self.backoff_max < self.backoff_initial:
            raise ValueError("need 0 <= backoff_initial <= backoff_max")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter must be in [0, 1)")


class RestartTracker:
    """The recent failures of one actor instance."""

    __slots__ = ("_failures", "policy")

    def __init__(self, policy: SupervisorPolicy) -> None:
        self.policy = policy
        self._failures: deque[float] = deque()

    def allow_restart(self, now: float) -> bool:
        """Record a failure at `now`; True if the actor may restart, False to escalate."""
        failures = self._failures
        horizon = now - self.policy.within
        while failures and failures[0] <= horizon:
            failures.popleft()
        failures.append(now)
        return len(failures) <= self.policy.max_restarts

    def backoff(self) -> float:
        """Seconds to wait before the restart just allowed."""
        policy = self.policy
        doublings = len(self._failures) - 1
        delay: float = min(policy.backoff_max, policy.backoff_initial * 2.0**doublings)
        return delay * random.uniform(1 - policy.jitter, 1 + policy.jitter)
