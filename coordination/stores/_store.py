"""Where a strategy keeps its workflow instances. Memory is the default; durable stores plug
in behind the same protocol."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Protocol

from .._status import Outcome
from ..core import Progress
from ..definition._workflow import Failure

__all__ = ("InstanceState", "MemoryStateStore", "StateStore")


@dataclass(slots=True)
class InstanceState:
    """What a coordinator keeps of one workflow instance: its input, the replies so far, where
    it stands (the core's `Progress`), and what operators did to it."""

    workflow_id: str
    input: Any
    results: dict[str, Any] = field(default_factory=dict)
    progress: Progress = field(default_factory=Progress)
    history: list[str] = field(default_factory=list)
    """What operators did to the instance: `<UTC time> <who>: <what>`."""

    @property
    def outcome(self) -> Outcome:
        return self.progress.outcome

    @property
    def failure(self) -> Failure | None:
        return self.progress.failure


class StateStore(Protocol):
    async def save(self, state: InstanceState) -> None:
        """Record `state` as the instance's latest state."""

    async def load(self, workflow_id: str) -> InstanceState | None:
        """The latest state of `workflow_id`, or None."""

    async def running(self) -> list[InstanceState]:
        """The instances that have not ended: what a coordinator resumes when it starts."""


class MemoryStateStore:
    """Instances in a dict: fast, and gone with the process.

    Running instances are all kept; of the finished ones, the latest `keep_finished`.
    """

    def __init__(self, keep_finished: int = 100_000) -> None:
        self.keep_finished = keep_finished
        self._states: dict[str, InstanceState] = {}
        self._finished: OrderedDict[str, None] = OrderedDict()

    async def save(self, state: InstanceState) -> None:
        self.keep(state)

    def keep(self, state: InstanceState) -> None:
        """`save`, synchronously: a coordinator on a memory store saves without awaiting."""
        workflow_id = state.workflow_id
        self._states[workflow_id] = state
        if state.progress.outcome is not Outcome.RUNNING and workflow_id not in self._finished:
            self._finished[workflow_id] = None
            if len(self._finished) > self.keep_finished:
                forgotten, _ = self._finished.popitem(last=False)
                del self._states[forgotten]

    async def load(self, workflow_id: str) -> InstanceState | None:
        return self._states.get(workflow_id)

    async def running(self) -> list[InstanceState]:
        return [s for s in self._states.values() if s.outcome is Outcome.RUNNING]

    def __len__(self) -> int:
        return len(self._states)
