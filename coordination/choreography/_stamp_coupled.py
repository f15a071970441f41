"""StampCoupled: the workflow's state travels in the message, growing step by step.

Each event carries the stamp: the input, every reply so far and the trail of what happened
(`step:done`, `step:failed`, `step:compensated`). No service keeps the workflow's state, and
nobody can be asked for it: `status` knows what the last stamp it saw carried, which is the
first one until the workflow ends and the last stamp comes back.
"""

from __future__ import annotations

from typing import TypeVar

import msgspec

from .._status import Outcome, WorkflowStatus
from ._adapter import Adapter
from ._engine import Choreography
from ._events import Carried

__all__ = ("StampCoupled",)

In = TypeVar("In", bound=msgspec.Struct)

UNSEEN_UNTIL_THE_END = frozenset(
    {"current_step", "completed_steps", "compensated_steps", "failure"}
)


class StampCoupled(Choreography[In]):
    """Runs a workflow by choreography, its state stamped on every event.

    ```python
    async with StampCoupled(system, order_workflow) as strategy:
        result = await strategy.result(await strategy.start(PlaceOrder(...)))
    ```
    """

    strategy = "stamp_coupled"

    async def _status(self, workflow_id: str) -> WorkflowStatus:
        """Running, with nothing more known, until the last stamp comes back; then all of it."""
        await self._known(workflow_id)
        ended = self.outcomes.final_status(workflow_id)
        if ended is not None:
            return ended
        return WorkflowStatus(
            workflow_id,
            self.strategy,
            Outcome.RUNNING,
            None,
            None,
            None,
            None,
            UNSEEN_UNTIL_THE_END,
        )

    def _step_done(
        self, adapter: Adapter[In], workflow_id: str, name: str, data: Carried | None, reply: bytes
    ) -> Carried | None:
        carried = super()._step_done(adapter, workflow_id, name, data, reply)
        return _stamped(carried, f"{name}:done")

    def _step_failed(
        self, adapter: Adapter[In], workflow_id: str, name: str, data: Carried | None
    ) -> Carried | None:
        return _stamped(data, f"{name}:failed")

    def _step_compensated(
        self, adapter: Adapter[In], workflow_id: str, name: str, data: Carried | None
    ) -> Carried | None:
        return _stamped(data, f"{name}:compensated")


def _stamped(data: Carried | None, entry: str) -> Carried | None:
    """`data` with `entry` added to its trail."""
    if data is None:
        return None
    return Carried(data.input, data.results, [*data.trail, entry])
