"""A choreography's events kept in a JetStream stream until a host has handled them.

Acknowledged events (`_acks`) are sent again by their sender until the receiver handles them,
which protects them from a lost message but not from the death of the one process that holds
them: an adapter that sends the next event to a service it hosts itself, and is then killed,
leaves nobody to send it again. With `durable_events`, each event that carries an instance
forward is stored in a work-queue stream, `<prefix>.<route>.events.<service>`, before the
event that led to it is acknowledged to the stream. Every host of a service consumes that
subject through one durable consumer it shares with the other hosts: a host that dies with
events in hand has them delivered to another host once `ack_wait` has passed.

A delivered event goes to the service's mailbox as a request (the sidecar handlers run there,
one message at a time with the service's own), and is acknowledged to the stream once the
handler has answered: by then the events the handler sent are stored, and what it told over
plain NATS (an instance's end, a front controller's call-back) went out on the same
connection before the answer did. An event handled twice (a host died after handling it, before
acknowledging) sends its next events with the same message ids, which the stream's duplicate
window drops.
"""

from __future__ import annotations

import functools
import logging
import re
from typing import TYPE_CHECKING, Any

from actors import ERROR_KIND, ActorRef, ActorSystem
from actors._codec import encode
from actors._context import outgoing_headers
from brokers import BusError, DurableSubscription, JetStream, Msg, NatsBus

from ._events import Advance, Unwind

if TYPE_CHECKING:
    from ..definition._workflow import Workflow

__all__ = ("StoredEvents",)

logger = logging.getLogger("coordination")

MAX_STORED = 1_000_000
"""Events a choreography's stream holds at most: beyond, a step's next event is refused (its
instance fails, saying so) rather than an older one dropped."""
CONCURRENCY = 128
"""Events of one service a host hands its mailbox at once."""
MAX_DELIVERIES = 10
RETRY_DELAY = 0.5
"""Seconds before an event whose handling failed (its host stopped answering) comes again."""
PUBLISH_ATTEMPTS = 3


def _token(text: str) -> str:
    """`text` as a stream or consumer name may spell it (no dots, wildcards or separators)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", text)


class StoredEvents:
    """Stores one choreography's events in its stream, and hands the events of the services
    this process hosts to their mailboxes."""

    def __init__(self, system: ActorSystem, route: str, workflow: Workflow[Any]) -> None:
        bus = system.bus
        assert isinstance(bus, NatsBus)
        self.bus = bus
        self.jetstream: JetStream = bus.jetstream
        self.route = route
        self.subject = f"{system.prefix}.{route}.events."
        self.stream = _token(f"CORPS-{system.prefix}-{route}")
        longest = max(step.timeout for step in workflow.steps)
        self.handling_timeout = longest + 2.0
        """How long a service's mailbox may take over one event (a sidecar runs one attempt
        of a step per event: its retry is another event)."""
        self.ack_wait = self.handling_timeout + 3.0
        self._consumers: list[DurableSubscription] = []

    async def open(self, hosted: dict[str, ActorRef[Any]]) -> None:
        """Declare the stream, and consume the events of the services in `hosted` (by name,
        the ref of each one's mailbox)."""
        await self.jetstream.ensure_stream(
            self.stream, [f"{self.subject}>"], work_queue=True, max_msgs=MAX_STORED
        )
        for service, mailbox in hosted.items():
            durable = _token(f"{self.route}.{service}")
            consumer = await self.jetstream.subscribe(
                self.subject + service,
                functools.partial(self._hand_over, mailbox.subject),
                durable=durable,
                stream=self.stream,
                queue=durable,
                max_deliver=MAX_DELIVERIES,
                ack_wait=self.ack_wait,
                concurrency=CONCURRENCY,
                retry_delay=RETRY_DELAY,
            )
            self._consumers.append(consumer)

    async def close(self) -> None:
        """Finish the events in hand, then stop consuming (the consumers stay on the server,
        for the other hosts and the next start)."""
        consumers, self._consumers = self._consumers, []
        for consumer in consumers:
            await consumer.drain()

    async def store(self, service: str, event: Advance | Unwind, message_id: str) -> None:
        """Store `event` for `service`'s hosts; a publish the server did not confirm is made
        again (the same message id: stored once)."""
        headers = outgoing_headers(event.workflow_id, message_id)
        data = encode(event)
        subject = self.subject + service
        for attempt in range(1, PUBLISH_ATTEMPTS + 1):
            try:
                await self.jetstream.publish(subject, data, headers)
                return
            except BusError as exc:
                if attempt == PUBLISH_ATTEMPTS:
                    raise
                logger.warning("%s: storing %s failed (%r), again", self.route, message_id, exc)

    async def _hand_over(self, mailbox: str, msg: Msg) -> None:
        """Have the service's mailbox handle a stored event; raising has it delivered again."""
        reply = await self.bus.request(mailbox, msg.data, self.handling_timeout, msg.headers)
        if reply.headers is not None and ERROR_KIND in reply.headers:
            kind = reply.headers[ERROR_KIND]
            raise RuntimeError(f"{self.route}: the event was not handled ({kind})")
