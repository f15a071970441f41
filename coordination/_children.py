"""Sub-workflows: the child instances a parent starts, awaits, cancels and undoes.

Every strategy runs a parent's `SubWorkflow` steps the same way: the child runs under a
strategy of the parent's kind (made by the parent, entered and left with it), as an instance
of its own whose id follows from the parent's (`child_id`): a parent taken up again after a
restart finds the child it started rather than starting another. What the child's end means
for the parent's step is decided here, once (`ended`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, Protocol

from . import core
from ._status import Outcome, WorkflowResult
from ._strategy import Strategy
from .definition._workflow import Failure, SubWorkflow, Workflow

__all__ = ("Child", "Children", "child_id")


class Child(Strategy[Any], Protocol):
    """What a parent needs of the strategy that runs a child workflow: a strategy, that
    starts an instance with a given id and undoes a completed one."""

    async def _start_as(self, workflow_input: Any, workflow_id: str) -> bool:
        """Start an instance with this id, unless it is known: False when it was."""

    async def _undo(self, workflow_id: str, failure: Failure) -> WorkflowResult:
        """Compensate a completed instance; its new end."""


def child_id(parent_id: str, sub: SubWorkflow) -> str:
    """The id of the child `sub` starts for the parent `parent_id`: `<child>-<node>-<the
    parent's number>.<parent>.<sub-workflow>` (`-` in the last part made `_`), so that it
    names the node that runs it, as every id does, and is the same each time the parent
    asks."""
    name, node, number = parent_id.rsplit("-", 2)
    tail = f"{number}.{name}.{sub.name}".replace("-", "_")  # after the node: no `-`
    return f"{sub.workflow.name}-{node}-{tail}"


def ended(sub: SubWorkflow, result: WorkflowResult, *, cancelling: bool) -> core.Event:
    """What a child's end makes of the parent's step."""
    if result.outcome is Outcome.COMPLETED:
        return core.StepAnswered(sub.name)
    if result.outcome is Outcome.CANCELLED and cancelling:
        return core.StepCancelled(sub.name)
    why = f": {result.failure.reason}" if result.failure is not None else ""
    return core.StepRejected(sub.name, f"{result.workflow_id} {result.outcome.value}{why}")


class Children:
    """The strategies that run a parent's sub-workflows, one per `SubWorkflow` of its flow."""

    def __init__(self, workflow: Workflow[Any], make: Callable[[Workflow[Any]], Child]) -> None:
        self.workflow = workflow
        self._make = make
        self.strategies: dict[str, Child] = {}
        self._stack = contextlib.AsyncExitStack()

    async def open(self) -> None:
        for sub in self.workflow.subworkflows.values():
            strategy = self._make(sub.workflow)
            await self._stack.enter_async_context(strategy)
            self.strategies[sub.name] = strategy

    async def close(self) -> None:
        await self._stack.aclose()
        self.strategies.clear()

    async def run(
        self,
        parent_id: str,
        sub: SubWorkflow,
        child_input: Callable[[], Any],
        parent: Callable[[], core.Progress],
    ) -> tuple[WorkflowResult | None, core.Event]:
        """Start the child (unless it was started before), wait for its end: its result, and
        what that makes of the parent's step, as the `parent`'s progress says then (a child
        that cannot start fails it; a parent that turned around before the child started
        does not start it)."""
        strategy = self.strategies[sub.name]
        workflow_id = child_id(parent_id, sub)
        progress = parent()
        if progress.failure is not None or progress.cancel_requested:
            return None, core.StepCancelled(sub.name)  # not started: ends as one not begun
        try:
            await strategy._start_as(child_input(), workflow_id)
            result = await strategy.result(workflow_id)
        except Exception as exc:
            return None, core.StepFailed(
                sub.name, f"the child could not run: {type(exc).__name__}: {exc}"
            )
        return result, ended(sub, result, cancelling=parent().cancel_requested)

    def under_way(self, names: tuple[str, ...]) -> bool:
        """Whether any of `names` (the nodes under way) is a sub-workflow, whose child runs."""
        subworkflows = self.workflow.subworkflows
        return any(name in subworkflows for name in names)

    async def cancel(self, parent_id: str, names: tuple[str, ...], by: str) -> None:
        """Cancel the children of the sub-workflows among `names` (the nodes under way)."""
        for name in names:
            sub = self.workflow.subworkflows.get(name)
            if sub is not None:
                await self.strategies[name].cancel(child_id(parent_id, sub), by=by)

    async def undo(self, parent_id: str, sub: SubWorkflow, failure: Failure) -> core.Event:
        """Have a completed child compensate its steps: what that makes of the parent's
        compensation of it."""
        workflow_id = child_id(parent_id, sub)
        try:
            result = await self.strategies[sub.name]._undo(workflow_id, failure)
        except Exception as exc:
            return core.CompensationFailed(sub.name, f"{type(exc).__name__}: {exc}")
        if result.outcome is Outcome.NEEDS_ATTENTION:
            return core.CompensationFailed(sub.name, "; ".join(result.attention))
        return core.CompensationDone(sub.name)
