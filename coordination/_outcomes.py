"""The instances a strategy started and how they ended, kept within bounds.

A running instance has a future its callers wait on; a finished one keeps only its result and
its final status (objects the garbage collector does not track), and only the latest `keep`
finished ones are remembered: a long-running application does not grow without end, and full
collections stay short.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable

import msgspec

from ._errors import CoordinationError, UnknownWorkflowError
from ._metrics import WorkflowMetrics
from ._status import WorkflowResult, WorkflowStatus

__all__ = ("DEFAULT_KEEP", "Outcomes")

DEFAULT_KEEP = 100_000


class _Finished(msgspec.Struct, frozen=True, gc=False):
    result: WorkflowResult
    status: WorkflowStatus | None


class Outcomes:
    """Running and finished instances of one workflow under one strategy."""

    def __init__(
        self, workflow: str, keep: int = DEFAULT_KEEP, metrics: WorkflowMetrics | None = None
    ) -> None:
        if keep < 1:
            raise ValueError("keep must be >= 1")
        self.workflow = workflow
        self.keep = keep
        self.metrics = metrics
        self._running: dict[str, asyncio.Future[WorkflowResult]] = {}
        self._finished: OrderedDict[str, _Finished] = OrderedDict()
        self._reopened: set[str] = set()
        self.on_end: Callable[[WorkflowResult], None] | None = None
        """Called with each result as its instance ends, once set (another process watches
        an instance of this one: see `_remote`)."""
        self._loop: asyncio.AbstractEventLoop | None = None
        """The loop of the first `add` until `stop`: on Python 3.11 asking asyncio for it
        makes a getpid() system call, too dear for every instance."""

    def add(self, workflow_id: str) -> None:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        self._running[workflow_id] = loop.create_future()
        if self.metrics is not None:
            self.metrics.began(workflow_id)

    def reopen(self, workflow_id: str) -> None:
        """A finished instance runs again (a completed child that its parent has undo its
        steps): it ends a second time, and `wait` waits for that end."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        self._finished.pop(workflow_id, None)
        self._reopened.add(workflow_id)
        self._running[workflow_id] = loop.create_future()

    def finish(
        self, workflow_id: str, result: WorkflowResult, status: WorkflowStatus | None = None
    ) -> None:
        """Record the end; the first end of an instance counts, later ones are ignored."""
        future = self._running.pop(workflow_id, None)
        if future is None:
            return
        if workflow_id in self._reopened:  # counted once, when it first ended
            self._reopened.discard(workflow_id)
        elif self.metrics is not None:
            self.metrics.finished(workflow_id, result.outcome)
        finished = self._finished
        finished[workflow_id] = _Finished(result, status)
        if len(finished) > self.keep:
            finished.popitem(last=False)
        if not future.done():
            future.set_result(result)
        if self.on_end is not None:
            self.on_end(result)

    def check(self, workflow_id: str) -> None:
        """Raise UnknownWorkflowError for an id that was never started here, or forgotten."""
        if workflow_id not in self._running and workflow_id not in self._finished:
            raise self._unknown(workflow_id)

    def knows(self, workflow_id: str) -> bool:
        return workflow_id in self._running or workflow_id in self._finished

    def is_running(self, workflow_id: str) -> bool:
        self.check(workflow_id)
        return workflow_id in self._running

    def finished_result(self, workflow_id: str) -> WorkflowResult:
        """The result of a finished instance (UnknownWorkflowError when forgotten)."""
        finished = self._finished.get(workflow_id)
        if finished is None:
            raise self._unknown(workflow_id)
        return finished.result

    def final_status(self, workflow_id: str) -> WorkflowStatus | None:
        finished = self._finished.get(workflow_id)
        return None if finished is None else finished.status

    async def wait(self, workflow_id: str, timeout: float | None = None) -> WorkflowResult:
        finished = self._finished.get(workflow_id)
        if finished is not None:
            return finished.result
        future = self._running.get(workflow_id)
        if future is None:
            raise self._unknown(workflow_id)
        if timeout is None:
            return await asyncio.shield(future)
        async with asyncio.timeout(timeout):
            return await asyncio.shield(future)

    def stop(self) -> None:
        """The strategy stops: whoever waits for a running instance is told so."""
        self._loop = None
        for future in self._running.values():
            if not future.done():
                future.set_exception(
                    CoordinationError("the strategy stopped before the workflow ended")
                )
                future.exception()  # nobody may be waiting: do not warn about it

    def _unknown(self, workflow_id: str) -> UnknownWorkflowError:
        return UnknownWorkflowError(
            f"no workflow {workflow_id!r} in {self.workflow} (never started here, or one of "
            f"more than {self.keep} finished since)"
        )
