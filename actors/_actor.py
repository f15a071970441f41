"""The Actor base class."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._idempotency_store import IdempotencyStore
    from ._ref import ActorRef
    from ._system import ActorSystem

__all__ = ("Actor",)


class Actor:
    """Base class of actors: subclass it and write one async handler per message type.

    ```python
    class Counter(Actor):
        def __init__(self) -> None:
            self.total = 0

        async def add(self, msg: Add) -> None:
            self.total += msg.amount

        async def get(self, msg: GetTotal) -> int:
            return self.total
    ```

    An instance handles one message at a time, so its state needs no lock. When a handler
    raises, that message fails (its asker gets the error) and the instance goes on with its
    state, unless its SupervisorPolicy says to restart or stop it. Before `on_start`
    runs the system sets `self.ref` (this actor's ref), `self.system` and `self.name`.
    """

    ref: ActorRef[Any]
    system: ActorSystem
    name: str
    idempotency: IdempotencyStore | None = None
    """Where `@idempotent` handlers keep their replies; None keeps them in the instance."""

    async def on_start(self) -> None:
        """Called before the first message, and on the fresh instance after a restart."""

    async def on_stop(self) -> None:
        """Called when the instance stops: at shutdown, before a restart, on escalation."""
