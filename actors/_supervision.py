"""What happens to an actor whose handler raised: the directives of Akka and OTP.

The failed message fails on its own whatever the directive (its asker gets the error, a
dead letter keeps it). The directive decides what happens to the actor:

- `RESUME` (the default) keeps the instance and its state and goes on with the next message.
  It fits services whose failures come from outside (a downstream dependency that had a bad
  few seconds, a bad input): the service keeps serving and keeps what it knows.
- `RESTART` replaces the instance with a fresh one from its factory (`on_stop`, then a new
  instance's `on_start`), after a backoff, at most `max_restarts` times within `within`
  seconds (OTP's restart intensity); one more failure stops it. It fits an actor whose state
  a failure may have left half-changed, and which can rebuild it (from a store, from
  `on_start`).
- `STOP` stops the actor at the first failure: the rest of its mailbox is refused and the
  system records the failure. It fits an actor for which going on after a failure is worse
  than not serving.

A policy can also decide per exception: `directive` may be a function of the exception (as
Akka's decider), for instance to restart on a corrupted-state error and resume on the rest.
"""

from __future__ import annotations

import enum
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ("Directive", "RestartTracker", "SupervisorPolicy")


class Directive(enum.Enum):
    """What a failed handler does to its actor (see the module's docstring)."""

    RESUME = "resume"
    """Keep the instance and its state; go on with the next message."""
    RESTART = "restart"
    """Replace the instance with a fresh one, within the restart intensity."""
    STOP = "stop"
    """Stop the actor for good; its mailbox is refused."""


@dataclass(frozen=True, slots=True)
class SupervisorPolicy:
    """What an actor whose handler raises becomes: resumed (the default), restarted or
    stopped (`directive`, or a function from the exception to a directive).

    A restart waits a backoff that doubles from `backoff_initial` up to `backoff_max`
    seconds, scaled by a random factor within `1 +- jitter` (the mailbox waits meanwhile, so
    that a crash loop does not spin). The failure that makes more than `max_restarts`
    restarts within `within` seconds stops the actor and escalates to the system instead.
    """

    directive: Directive | Callable[[Exception], Directive] = Directive.RESUME
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
        if not isinstance(self.directive, Directive) and not callable(self.directive):
            raise TypeError("directive must be a Directive or a function returning one")

    def decide(self, error: Exception) -> Directive:
        """The directive for a handler that raised `error`."""
        directive = self.directive
        if isinstance(directive, Directive):
            return directive
        decided = directive(error)
        if not isinstance(decided, Directive):
            raise TypeError(f"the supervisor's decider returned {decided!r}, not a Directive")
        return decided


class RestartTracker:
    """The recent restarts of one actor instance."""

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
