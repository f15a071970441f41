"""One sidecar per local service, shared by every choreography that uses the service.

A service may take part in several workflows, each under its own choreography, in one
system: the notification service of an order workflow and of a ticket workflow. The service's
mailbox gets the event handlers once; each event names its route (`<strategy>.<workflow>`),
and the hub hands it to that choreography's adapter.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from actors import Actor, ActorRef, ActorSystem

from ._events import Advance, Cancel, Hold, Unwind

if TYPE_CHECKING:
    from ._adapter import Adapter

__all__ = ("attach", "detach")

logger = logging.getLogger("coordination")

EVENTS = (Advance, Unwind, Cancel, Hold)


class _Hub:
    """The adapters of one local service, by route."""

    def __init__(self) -> None:
        self.adapters: dict[str, Adapter[Any]] = {}
        self.ref: ActorRef[Any] | None = None

    def handlers(self) -> dict[type, Callable[[Any, Any], Awaitable[None]]]:
        adapters = self.adapters

        async def advance(service: Actor, event: Advance) -> None:
            adapter = adapters.get(event.route)  # every event: no helper call
            if adapter is None:
                self._no_adapter(event.route, event)
                return
            adapter.service_actor = service
            await adapter.advance(event)

        async def unwind(service: Actor, event: Unwind) -> None:
            adapter = adapters.get(event.route)
            if adapter is None:
                self._no_adapter(event.route, event)
                return
            adapter.service_actor = service
            await adapter.unwind(event)

        async def cancel(service: Actor, event: Cancel) -> None:
            adapter = self._adapter(event.route, event)
            if adapter is not None:
                await adapter.cancel(event)

        async def hold(service: Actor, event: Hold) -> None:
            adapter = self._adapter(event.route, event)
            if adapter is not None:
                await adapter.hold(event)

        return {Advance: advance, Unwind: unwind, Cancel: cancel, Hold: hold}

    def _adapter(self, route: str, event: object) -> Adapter[Any] | None:
        adapter = self.adapters.get(route)
        if adapter is None:
            self._no_adapter(route, event)
        return adapter

    @staticmethod
    def _no_adapter(route: str, event: object) -> None:
        # Its choreography has stopped: nobody to take it any more.
        logger.warning("no choreography %r here for %r", route, event)


class _Hubs(dict[str, _Hub]):
    """The hubs of one system, by service (attached to the system)."""


def attach(system: ActorSystem, service: str, route: str, adapter: Adapter[Any]) -> ActorRef[Any]:
    """Have `adapter` take the events of `route` in `service`'s mailbox; returns the ref to
    send `service` its events with."""
    hubs = system.attached(_Hubs, _Hubs)
    hub = hubs.get(service)
    if hub is None:
        hub = _Hub()
        hub.ref = system.add_handlers(service, hub.handlers())
        hubs[service] = hub
    if route in hub.adapters:
        raise ValueError(f"{route!r} already runs beside {service!r}")
    hub.adapters[route] = adapter
    assert hub.ref is not None
    return hub.ref


def detach(system: ActorSystem, service: str, route: str) -> None:
    """Undo `attach`; the last one out takes the handlers away."""
    hubs = system.attached_if(_Hubs)
    hub = hubs.get(service) if hubs is not None else None
    if hubs is None or hub is None:
        return
    hub.adapters.pop(route, None)
    if not hub.adapters:
        del hubs[service]
        system.remove_handlers(service, EVENTS)
