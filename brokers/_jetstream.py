"""JetStream mode of NatsBus: durable, at-least-once delivery on stream-backed subjects.

- `ensure_stream` declares a stream (file storage) over some subjects.
- `publish` stores a message and waits for the stream's ack. JetStream drops a message whose
  `Nats-Msg-Id` header it saw within the stream's duplicate window, and every corps message
  carries one, so a retried publish is stored once.
- `subscribe` runs a durable push consumer. A message is acked only after the callback returns.
  A callback that raises gets its message redelivered (nak, after `retry_delay`), as does one
  that does not finish within `ack_wait`. After `max_deliver` deliveries the message goes to a
  dead-letter subject with the error and is terminated. With `concurrency` above 1, that many
  messages are handled at once, each in a task of its own (and acked as it finishes).
- A `work_queue` stream keeps a message only until a consumer acks it: the stream holds what is
  still to be done, not a history.

Push consumers with file storage keep working across a server restart: the consumer lives on
the server, and nats-py re-subscribes its delivery subject on reconnect. Pull consumers do not
(nats.py issue #504), and ephemeral or memory-stored consumers are gone after a restart (nats.py
issue #234), so corps uses neither.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.msg import Msg as NatsMsg
from nats.aio.subscription import Subscription as RawSubscription
from nats.js import JetStreamContext, api

from ._bus import MessageCallback
from ._errors import BusError, BusTimeoutError
from ._message import Headers, Msg
from ._nats_client import delivery_task, join
from ._subjects import validate_pattern, validate_subject

if TYPE_CHECKING:
    from ._nats import NatsBus

__all__ = ("DeadLetterNotice", "DurableSubscription", "JetStream", "JetStreamError", "PublishAck")

logger = logging.getLogger("brokers.jetstream")

DEAD_LETTER_PREFIX = "corps.dead-letters"
DELIVER_PREFIX = "_CORPS.deliver"
"""Where a shared (queue) consumer delivers: `<prefix>.<stream>.<durable>`."""
_CONSUMER_NAME_IN_USE = 10013
"""JetStream's error code for a consumer created meanwhile by someone else."""
_CREATE_ATTEMPTS = 3


class _MaxDeliveries(msgspec.Struct):
    """The fields corps reads from a JetStream max-deliveries advisory."""

    stream_seq: int
    deliveries: int


class JetStreamError(BusError):
    """Raised when JetStream refuses a stream, a consumer or a message."""


@dataclass(frozen=True, slots=True)
class PublishAck:
    """The stream's receipt for a stored message."""

    stream: str
    sequence: int
    duplicate: bool
    """True when the stream already held a message with the same Nats-Msg-Id."""


@dataclass(frozen=True, slots=True)
class DeadLetterNotice:
    """A message given up on after `max_deliver` deliveries."""

    subject: str
    data: bytes
    headers: Headers | None
    deliveries: int
    error: str


class DurableSubscription:
    """A durable JetStream consumer feeding a callback; see the module doc for the delivery
    contract. Unsubscribing keeps the consumer on the server, so a later subscribe with the
    same `durable` name resumes where this one stopped; `delete` removes it."""

    def __init__(
        self,
        jetstream: JetStream,
        subject: str,
        stream: str,
        durable: str,
        queue: str | None,
        callback: MessageCallback,
        max_deliver: int,
        ack_wait: float,
        dead_letter_subject: str,
        on_dead_letter: Callable[[DeadLetterNotice], None] | None,
        concurrency: int = 1,
        retry_delay: float | None = None,
    ) -> None:
        self._jetstream = jetstream
        self.subject = subject
        self.stream = stream
        self.durable = durable
        self.queue = queue
        self._callback = callback
        self.max_deliver = max_deliver
        self.ack_wait = ack_wait
        self.dead_letter_subject = dead_letter_subject
        self.on_dead_letter = on_dead_letter
        self.retry_delay = retry_delay
        self._slots = asyncio.Semaphore(concurrency) if concurrency > 1 else None
        """With concurrency: how many more messages may be handled at once."""
        self._handling: set[asyncio.Task[None]] = set()
        self._raw: RawSubscription | None = None
        self._advisories: RawSubscription | None = None
        self.acked = 0
        self.redelivered = 0
        """Deliveries of a message seen before (failed, timed out, or unacked at a crash)."""
        self.failed = 0
        self.dead_lettered = 0

    def __repr__(self) -> str:
        return f"<DurableSubscription {self.subject!r} durable={self.durable!r}>"

    async def _deliver(self, raw: NatsMsg) -> None:
        slots = self._slots
        if slots is None:
            await self._handle(raw)
            return
        await slots.acquire()  # the delivery task waits here: back-pressure on the consumer
        task = asyncio.get_running_loop().create_task(self._handle(raw))
        self._handling.add(task)
        task.add_done_callback(self._handled)

    def _handled(self, task: asyncio.Task[None]) -> None:
        self._handling.discard(task)
        assert self._slots is not None
        self._slots.release()

    async def _join_handling(self) -> None:
        if self._handling:
            await asyncio.gather(*self._handling, return_exceptions=True)

    async def _handle(self, raw: NatsMsg) -> None:
        deliveries = raw.metadata.num_delivered
        if deliveries > 1:
            self.redelivered += 1
        msg = Msg(raw.subject, raw.data, raw.headers, None)
        try:
            await self._callback(msg)
        except Exception as exc:
            self.failed += 1
            if deliveries >= self.max_deliver:
                await self._dead_letter(raw, deliveries, exc)
            else:
                logger.warning(
                    "durable %r: delivery %d of %r failed, redelivering: %r",
                    self.durable,
                    deliveries,
                    raw.subject,
                    exc,
                )
                await _quietly(raw.nak(self.retry_delay))
            return
        await _quietly(raw.ack())
        self.acked += 1

    async def _dead_letter(self, raw: NatsMsg, deliveries: int, error: Exception) -> None:
        await self._send_dead_letter(
            raw.subject, raw.data, raw.headers, deliveries, f"{type(error).__name__}: {error}"
        )
        await _quietly(raw.term())

    async def _on_max_deliveries(self, advisory: NatsMsg) -> None:
        """The server gave up on a message that was never acked nor failed (its handler kept
        running past ack_wait, or its process died): dead-letter it from the stream."""
        try:
            event = msgspec.json.decode(advisory.data, type=_MaxDeliveries)
            stored = await self._jetstream._js().get_msg(self.stream, event.stream_seq)
        except (msgspec.DecodeError, nats.errors.Error) as exc:
            logger.error("durable %r: unusable max-deliveries advisory: %r", self.durable, exc)
            return
        await self._send_dead_letter(
            stored.subject or self.subject,
            stored.data or b"",
            stored.headers,
            event.deliveries,
            f"not acknowledged within {self.ack_wait} s in {event.deliveries} deliveries",
        )

    async def _send_dead_letter(
        self, subject: str, data: bytes, original: Headers | None, deliveries: int, error: str
    ) -> None:
        headers = dict(original or {})
        headers.pop("Nats-Msg-Id", None)  # a dead letter is a new message, not a duplicate
        headers.update(
            {
                "Corps-Dead-Subject": subject,
                "Corps-Dead-Deliveries": str(deliveries),
                "Corps-Dead-Error": error.replace("\r", " ").replace("\n", " "),
            }
        )
        self.dead_lettered += 1
        logger.error(
            "durable %r: giving up on %r after %d deliveries: %s",
            self.durable,
            subject,
            deliveries,
            error,
        )
        try:
            await self._jetstream.bus.publish(self.dead_letter_subject, data, headers)
        except BusError:
            logger.exception("durable %r: cannot publish the dead letter", self.durable)
        if self.on_dead_letter is not None:
            self.on_dead_letter(DeadLetterNotice(subject, data, original, deliveries, error))

    async def unsubscribe(self) -> None:
        """Stop receiving; the durable consumer stays on the server."""
        raw, self._raw = self._raw, None
        if raw is not None:
            await _quietly(raw.unsubscribe())
            await _join_delivery(raw)
        for task in self._handling:
            task.cancel()  # not acked: the server delivers it again
        await self._join_handling()
        await self._stop_advisories()

    async def _stop_advisories(self) -> None:
        advisories, self._advisories = self._advisories, None
        if advisories is not None:
            await _quietly(advisories.unsubscribe())
            await _join_delivery(advisories)

    async def drain(self) -> None:
        """Finish the messages already delivered, then stop; the consumer stays."""
        raw, self._raw = self._raw, None
        if raw is not None:
            await _quietly(raw.drain())  # type: ignore[no-untyped-call]
            await _join_delivery(raw)
        await self._join_handling()
        await self._stop_advisories()

    async def delete(self) -> None:
        """Stop and remove the durable consumer from the server."""
        await self.unsubscribe()
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await self._jetstream._js().delete_consumer(self.stream, self.durable)


class JetStream:
    """The JetStream side of a NatsBus: `bus.jetstream`."""

    def __init__(self, bus: NatsBus) -> None:
        self.bus = bus
        self._context: JetStreamContext | None = None

    def _js(self) -> JetStreamContext:
        if self._context is None:
            self._context = self.bus._client().jetstream()
        return self._context

    def context(self) -> JetStreamContext:
        """nats-py's JetStream context on this bus's connection, for what corps does not wrap
        (key-value buckets, object stores, stream administration)."""
        return self._js()

    async def ensure_stream(
        self,
        name: str,
        subjects: list[str],
        *,
        duplicate_window: float = 120.0,
        max_msgs: int = -1,
        max_bytes: int = -1,
        max_age: float = 0.0,
        work_queue: bool = False,
    ) -> None:
        """Create the stream `name` over `subjects` (file storage), or update it to match.

        `duplicate_window` is how long, in seconds, a Nats-Msg-Id is remembered for dedup.
        A `work_queue` stream drops each message once a consumer acks it; when it is full it
        refuses new messages (the publisher gets an error) rather than dropping old ones,
        which are work not done yet.
        """
        for subject in subjects:
            validate_pattern(subject)
        config = api.StreamConfig(
            name=name,
            subjects=subjects,
            storage=api.StorageType.FILE,
            duplicate_window=duplicate_window,
            max_msgs=max_msgs,
            max_bytes=max_bytes,
            max_age=max_age,
            retention=api.RetentionPolicy.WORK_QUEUE if work_queue else None,
            discard=api.DiscardPolicy.NEW if work_queue else api.DiscardPolicy.OLD,
        )
        js = self._js()
        try:
            await js.add_stream(config)
        except nats.js.errors.BadRequestError:
            await js.update_stream(config)  # it exists with another configuration
        except nats.js.errors.ServiceUnavailableError:
            raise JetStreamError(
                f"cannot create stream {name!r}: the server does not run JetStream "
                "(start nats-server with -js, or `jetstream {}` in its configuration)"
            ) from None
        except nats.js.errors.Error as exc:
            raise JetStreamError(f"cannot create stream {name!r}: {exc}") from exc

    async def publish(
        self,
        subject: str,
        data: bytes,
        headers: Headers | None = None,
        *,
        timeout: float = 5.0,
    ) -> PublishAck:
        """Store a message in the stream that covers `subject` and return its receipt.

        Raises JetStreamError when no stream covers the subject, BusTimeoutError when the
        stream does not acknowledge in time.
        """
        validate_subject(subject)
        if headers is not None:
            self.bus._check_headers(headers)
        try:
            ack = await self._js().publish(subject, data, timeout=timeout, headers=headers)
        except (nats.errors.NoRespondersError, nats.js.errors.NoStreamResponseError):
            raise JetStreamError(f"no stream stores subject {subject!r}") from None
        except nats.errors.TimeoutError:
            raise BusTimeoutError(f"no stream acknowledged {subject!r} in {timeout} s") from None
        except nats.js.errors.Error as exc:
            raise JetStreamError(f"cannot store a message on {subject!r}: {exc}") from exc
        return PublishAck(ack.stream, ack.seq, bool(ack.duplicate))

    async def subscribe(
        self,
        subject: str,
        callback: MessageCallback,
        *,
        durable: str,
        stream: str | None = None,
        queue: str | None = None,
        max_deliver: int = 5,
        ack_wait: float = 30.0,
        dead_letter_subject: str | None = None,
        on_dead_letter: Callable[[DeadLetterNotice], None] | None = None,
        pending_limit: int = 65536,
        concurrency: int = 1,
        retry_delay: float | None = None,
    ) -> DurableSubscription:
        """Consume `subject` from its stream through the durable consumer `durable`.

        Instances sharing `queue` (and `durable`) split the messages between them. Dead letters
        go to `dead_letter_subject` (default `corps.dead-letters.<durable>`). Up to
        `concurrency` messages are handled at once; one whose callback raised is delivered
        again after `retry_delay` seconds (at once by default).
        """
        validate_pattern(subject)
        if max_deliver < 1 or ack_wait <= 0:
            raise ValueError("max_deliver must be >= 1 and ack_wait > 0")
        if concurrency < 1 or (retry_delay is not None and retry_delay < 0):
            raise ValueError("concurrency must be >= 1 and retry_delay >= 0")
        js = self._js()
        try:
            stream = stream or await js.find_stream_name_by_subject(subject)
        except nats.js.errors.NotFoundError:
            raise JetStreamError(f"no stream stores subject {subject!r}") from None
        sub = DurableSubscription(
            self,
            subject,
            stream,
            durable,
            queue,
            callback,
            max_deliver,
            ack_wait,
            dead_letter_subject or f"{DEAD_LETTER_PREFIX}.{durable}",
            on_dead_letter,
            concurrency,
            retry_delay,
        )
        config = api.ConsumerConfig(
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=ack_wait,
            max_deliver=max_deliver,
            max_ack_pending=max(1000, concurrency),
            # Processes that share a consumer may create it at the same moment. Each would
            # otherwise name an inbox of its own as the delivery subject, and the last one
            # to create it would take every delivery: the others would listen on a subject
            # nothing is sent to, and once that process died the consumer would deliver to
            # nobody. One delivery subject, the same for all, makes their creations alike.
            deliver_subject=f"{DELIVER_PREFIX}.{stream}.{durable}" if queue else None,
        )
        options: dict[str, Any] = {"queue": queue} if queue else {}
        for attempt in range(_CREATE_ATTEMPTS):
            try:
                sub._raw = await js.subscribe(
                    subject,
                    cb=sub._deliver,
                    durable=durable,
                    stream=stream,
                    config=config,
                    manual_ack=True,
                    pending_msgs_limit=pending_limit,
                    **options,
                )
                break
            except nats.js.errors.BadRequestError as exc:
                # Hosts that start together race to create their shared consumer: the one
                # that loses finds it there the next time.
                if exc.err_code != _CONSUMER_NAME_IN_USE or attempt == _CREATE_ATTEMPTS - 1:
                    raise JetStreamError(
                        f"cannot consume {subject!r} as {durable!r}: {exc}"
                    ) from exc
            except nats.js.errors.Error as exc:
                raise JetStreamError(f"cannot consume {subject!r} as {durable!r}: {exc}") from exc
        sub._advisories = await self.bus._client().subscribe(
            f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{stream}.{durable}",
            queue=queue or "",
            cb=sub._on_max_deliveries,
        )
        return sub


async def _quietly(operation: Any) -> None:
    """Acks and unsubscribes on a connection that is going away fail; the server redelivers
    what was not acked, which is the at-least-once contract."""
    try:
        await operation
    except (TimeoutError, nats.errors.Error) as exc:
        logger.debug("JetStream operation failed: %r", exc)


async def _join_delivery(raw: RawSubscription) -> None:
    task = delivery_task(raw)
    if task is not None and task is not asyncio.current_task():
        task.cancel()
    await join(task)
