"""Counters a bus keeps."""

from __future__ import annotations

__all__ = ("BusStats",)


class BusStats:
    """Counters a bus keeps; read them, do not write them."""

    __slots__ = (
        "callback_errors",
        "delivered",
        "delivered_bytes",
        "disconnects",
        "dropped",
        "late_replies",
        "no_responders",
        "permission_violations",
        "published",
        "published_bytes",
        "reconnects",
        "timeouts",
        "unrouted",
    )

    def __init__(self) -> None:
        self.published = 0
        """Messages published through this bus object."""
        self.published_bytes = 0
        """Their payload bytes (headers not counted)."""
        self.unrouted = 0
        """Messages published to a subject nobody subscribes to (MemoryBus only: NATS drops
        them without telling)."""
        self.delivered = 0
        """Messages handed to subscription callbacks."""
        self.delivered_bytes = 0
        """Their payload bytes."""
        self.dropped = 0
        """Messages a subscription dropped: queue full, or still pending at unsubscribe."""
        self.no_responders = 0
        """Requests that found nobody listening."""
        self.timeouts = 0
        """Requests that got no reply in time."""
        self.late_replies = 0
        """Replies that came after their request gave up, discarded."""
        self.callback_errors = 0
        """Exceptions raised by subscription callbacks (logged; delivery goes on)."""
        self.disconnects = 0
        """Times the connection to the server was lost (NatsBus)."""
        self.reconnects = 0
        """Times the connection was re-established (NatsBus)."""
        self.permission_violations = 0
        """Publishes and subscriptions the server refused this connection (NatsBus)."""

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}
