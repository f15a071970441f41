"""The API every coordination strategy offers, whatever it coordinates with."""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Any, Protocol, Self, TypeVar

import msgspec

from ._status import WorkflowResult, WorkflowStatus

__all__ = ("Strategy",)

In = TypeVar("In", bound=msgspec.Struct, contravariant=True)


class Strategy(Protocol[In]):
    """Runs one workflow definition; used as an async context manager."""

    strategy: str
    """The strategy's name, as metrics and reports show it."""

    async def start(self, workflow_input: In, *, results: Mapping[str, Any] | None = None) -> str:
        """Start an instance and return its id at once; `results` are replies of steps done
        elsewhere that its commands may read (a hybrid's hand-off)."""

    async def status(self, workflow_id: str) -> WorkflowStatus:
        """What the strategy's pattern lets it know about the instance."""

    async def result(self, workflow_id: str, timeout: float | None = None) -> WorkflowResult:
        """Wait for the instance to end."""

    async def cancel(self, workflow_id: str, *, by: str = "api") -> bool:
        """Stop the instance and compensate what it completed; False if it had ended. `by`
        names who asked, in the instance's history."""

    async def pause(self, workflow_id: str, *, by: str = "api") -> bool:
        """Let the step under way finish and start no other until `resume`."""

    async def resume(self, workflow_id: str, *, by: str = "api") -> bool:
        """Let a paused instance go on; False if it was not paused."""

    async def signal(self, workflow_id: str, signal: str, payload: Any) -> None:
        """Send the instance the signal a `WaitFor` of its flow waits for; `payload` becomes
        that step's reply. One that comes before the instance waits is kept. Raises
        `UnknownWorkflowError`, `WorkflowEndedError` for an instance that has ended,
        `ValueError` for a signal the flow does not wait for, `TypeError` for a payload of
        another type, `CoordinationError` for a signal it received already."""

    def stuck(self) -> list[str]:
        """The running instances not seen to move on for the strategy's `stuck_after`."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
