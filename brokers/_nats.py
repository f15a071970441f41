"""NatsBus: the Bus protocol over nats-py, against a real nats-server."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any, Self

from ._bus import MessageCallback, Overflow
from ._errors import BusClosedError, BusError, MaxPayloadError, PermissionDeniedError
from ._headers import HeaderCheck
from ._jetstream import JetStream
from ._message import Headers, Msg, as_bytes
from ._nats_client import CorpsNatsClient, delivery_task, join
from ._replies import Replies
from ._stats import BusStats
from ._subjects import validate_pattern, validate_queue, validate_subject

try:
    import nats
    import nats.errors
    from nats.aio.client import Client
    from nats.aio.msg import Msg as NatsMsg
    from nats.aio.subscription import Subscription as RawSubscription
except ImportError as exc:  # pragma: no cover - nats-py is a core dependency
    raise ImportError("NatsBus needs nats-py: `pip install nats-py`") from exc

__all__ = ("BusConnectionError", "ConnectionStatus", "NatsBus", "NatsSubscription")

logger = logging.getLogger("brokers.nats")

DEFAULT_NATS_PENDING_LIMIT = 65536
_VALIDATED_KEPT = 8192

# How nats-server words a refused publish or subscription (nats-py hands it to error_cb).
_VIOLATION = re.compile(
    r'permissions violation for (publish|subscription) to "([^"]*)"(?: using queue "([^"]*)")?',
    re.IGNORECASE,
)


class BusConnectionError(BusError, ConnectionError):
    """Raised when the NATS connection cannot be made or cannot take a message."""


class ConnectionStatus(enum.Enum):
    """Where the NATS connection stands."""

    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    DRAINING = "draining"
    CLOSED = "closed"


class NatsSubscription:
    """A subscription on NATS. Its pending queue is nats-py's, bounded by `limit` messages:
    NATS cannot make a remote publisher wait, so a full queue drops (a slow consumer), whatever
    the overflow policy; drops are counted and passed to `on_drop` (subject and reply only)."""

    __slots__ = (
        "_bus",
        "_callback",
        "_drain_task",
        "_raw",
        "delivered",
        "denied",
        "dropped",
        "limit",
        "on_drop",
        "overflow",
        "queue",
        "subject",
    )

    def __init__(
        self,
        bus: NatsBus,
        subject: str,
        queue: str | None,
        callback: MessageCallback,
        limit: int,
        overflow: Overflow,
        on_drop: Callable[[Msg], None] | None,
    ) -> None:
        self._bus = bus
        self.subject = subject
        self.queue = queue
        self._callback = callback
        self.limit = limit
        self.overflow = overflow
        self.on_drop = on_drop
        self._raw: RawSubscription | None = None
        self._drain_task: asyncio.Task[None] | None = None
        self.delivered = 0
        self.dropped = 0
        self.denied: PermissionDeniedError | None = None
        """Set when the server refused the subscription: it delivers nothing."""

    def __repr__(self) -> str:
        return f"<NatsSubscription {self.subject!r} queue={self.queue!r}>"

    @property
    def pending(self) -> int:
        raw = self._raw
        return raw.pending_msgs if raw is not None else 0

    async def _deliver(self, raw: NatsMsg) -> None:
        stats = self._bus.stats
        stats.delivered += 1
        stats.delivered_bytes += len(raw.data)
        try:
            await self._callback(Msg(raw.subject, raw.data, raw.headers, raw.reply or None))
        except Exception:
            self._bus.stats.callback_errors += 1
            logger.exception("subscription %r: callback failed", self.subject)
        self.delivered += 1

    def _dropped(self, subject: str, reply: str | None) -> None:
        self._dropped_msg(Msg(subject, b"", None, reply or None))

    def _dropped_msg(self, msg: Msg) -> None:
        self.dropped += 1
        self._bus.stats.dropped += 1
        if self.on_drop is not None:
            self.on_drop(msg)

    async def unsubscribe(self) -> None:
        """Stop at once: pending messages are dropped (and reported), a running callback is
        cancelled, a drain under way is cut short."""
        raw = self._raw
        if raw is None:
            return
        self._bus._forget(self)
        task = delivery_task(raw)
        if self._drain_task is not None:
            self._drain_task.cancel()
        # A closed or draining connection has dropped the subscription already.
        with contextlib.suppress(nats.errors.Error):
            await raw.unsubscribe()
        if task is not None and task is not asyncio.current_task():
            task.cancel()  # also when nats-py refused the unsubscribe
        for msg in _take_pending(raw):
            self._dropped_msg(Msg(msg.subject, msg.data, msg.headers, msg.reply or None))
        await join(task)
        await join(self._drain_task)

    async def drain(self) -> None:
        """Stop taking new messages, deliver the pending ones, then stop.

        From the subscription's own callback it returns at once; the drain finishes after.
        """
        raw = self._raw
        if raw is None or self._drain_task is not None:
            await join(self._drain_task)
            return
        task = delivery_task(raw)
        self._drain_task = asyncio.get_running_loop().create_task(self._drain(raw))
        if task is asyncio.current_task():
            return
        await join(self._drain_task)
        await join(task)

    async def _drain(self, raw: RawSubscription) -> None:
        try:
            # A connection that closed meanwhile sends nothing more: the drain is done.
            with contextlib.suppress(nats.errors.Error):
                await raw.drain()  # type: ignore[no-untyped-call]
        finally:
            self._bus._forget(self)


class NatsBus:
    """The Bus protocol on a NATS server.

    `NatsBus("nats://127.0.0.1:4222")` or `NatsBus(["nats://a:4222", "nats://b:4222"], user=...,
    password=..., tls=ssl_context, ...)`: every keyword nats-py's `connect` takes passes
    through (token, user_credentials, tls, reconnect_time_wait, max_reconnect_attempts, name,
    ...). Use it as `async with NatsBus(url) as bus:`.

    Reconnects are not swallowed: they are logged, counted in `stats`, and `status` says where
    the connection stands; subscriptions are re-established by nats-py on reconnect.
    """

    def __init__(
        self,
        servers: str | Sequence[str] = "nats://127.0.0.1:4222",
        *,
        pending_limit: int = DEFAULT_NATS_PENDING_LIMIT,
        drain_timeout: float = 5.0,
        connect_attempts: int = 3,
        **connect_options: Any,
    ) -> None:
        if pending_limit <= 0:
            raise ValueError("pending_limit must be positive")
        if connect_attempts < 1:
            raise ValueError("connect_attempts must be >= 1")
        self.connect_attempts = connect_attempts
        self.servers = [servers] if isinstance(servers, str) else list(servers)
        self.pending_limit = pending_limit
        self.drain_timeout = drain_timeout
        self.stats = BusStats()
        self._options = connect_options
        self._nc: Client | None = None
        self._closed = False
        self._check_headers = HeaderCheck()
        self._validated: set[str] = set()
        self._replies = Replies(self.stats)
        self._valid_reply = ""
        self._inbox_ready = False
        self._subscriptions: dict[int, NatsSubscription] = {}
        self._last_error: Exception | None = None
        self._jetstream: JetStream | None = None
        self._denied: dict[str, PermissionDeniedError] = {}
        self._requesting: dict[str, str] = {}  # reply subject -> the subject requested

    # -- connection ----------------------------------------------------------------------

    async def connect(self) -> None:
        """Connect to the first reachable server, trying each `connect_attempts` times.

        Raises BusConnectionError, naming the last error, when none accepts the connection.
        Once connected, lost connections are retried as `max_reconnect_attempts` says
        (forever by default, every `reconnect_time_wait` = 0.5 s).
        """
        if self._nc is not None:
            return
        options: dict[str, Any] = {
            "reconnect_time_wait": 0.5,
            "max_reconnect_attempts": -1,
            "name": "corps",
            "allow_reconnect": True,
            **self._options,
        }
        for key, ours in (
            ("error_cb", self._on_error),
            ("disconnected_cb", self._on_disconnected),
            ("reconnected_cb", self._on_reconnected),
            ("closed_cb", self._on_closed),
        ):
            options[key] = self._chain(ours, options.get(key))
        options["drain_timeout"] = self.drain_timeout
        # nats-py bounds its first connect by max_reconnect_attempts only when it is positive:
        # bound it here, then give the reconnect setting back for later losses.
        reconnect_attempts = options["max_reconnect_attempts"]
        options["max_reconnect_attempts"] = self.connect_attempts
        client = CorpsNatsClient()
        # An overall deadline as well: after a failed TLS handshake nats-py waits for the
        # socket to close, and that wait never ends (asyncio's StreamWriter.wait_closed).
        per_attempt = float(options.get("connect_timeout", 2)) + options["reconnect_time_wait"]
        deadline = per_attempt * self.connect_attempts * len(self.servers) + 1.0
        try:
            async with asyncio.timeout(deadline):
                await client.connect(self.servers, **options)
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            cause = self._last_error or exc
            await _abandon(client)
            raise BusConnectionError(
                f"cannot connect to {[_redacted(url) for url in self.servers]}: {cause!r}"
            ) from exc
        client.options["max_reconnect_attempts"] = reconnect_attempts
        self._nc = client
        # One round trip before anyone publishes. Measured on nats-server 2.15.1: a publish
        # made at once on a new connection can miss subscriptions that other connections
        # made (and flushed) just before; a round trip on the publisher settles it.
        await self.flush()

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def status(self) -> ConnectionStatus:
        nc = self._nc
        if nc is None:
            return ConnectionStatus.CLOSED if self._closed else ConnectionStatus.DISCONNECTED
        if nc.is_closed:
            return ConnectionStatus.CLOSED
        if nc.is_draining:
            return ConnectionStatus.DRAINING
        if nc.is_reconnecting:
            return ConnectionStatus.RECONNECTING
        if nc.is_connecting:
            return ConnectionStatus.CONNECTING
        if nc.is_connected:
            return ConnectionStatus.CONNECTED
        return ConnectionStatus.DISCONNECTED

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def jetstream(self) -> JetStream:
        """Durable, at-least-once delivery on stream-backed subjects."""
        if self._jetstream is None:
            self._jetstream = JetStream(self)
        return self._jetstream

    @property
    def max_payload(self) -> int:
        """The server's max payload, learned when connecting."""
        return self._client().max_payload

    @property
    def connected_url(self) -> str | None:
        """The server this bus is connected to, without any user or password in the URL."""
        nc = self._nc
        url = nc.connected_url if nc is not None else None
        return None if url is None else _redacted(url.geturl())

    @property
    def subscription_count(self) -> int:
        return len(self._subscriptions)

    @property
    def subjects(self) -> list[str]:
        """The subjects and patterns subscribed now (the request inbox excluded), sorted."""
        return sorted({sub.subject for sub in self._subscriptions.values()})

    # -- the Bus protocol ----------------------------------------------------------------

    async def publish(
        self,
        subject: str,
        data: bytes,
        headers: Headers | None = None,
        reply: str | None = None,
    ) -> None:
        """Send `data` on `subject`, validated as MemoryBus validates it."""
        nc = self._client()
        if subject not in self._validated:
            self._validate(subject)
        if type(data) is not bytes:
            data = as_bytes(data)
        if len(data) > nc.max_payload:
            raise MaxPayloadError(
                f"payload of {len(data)} bytes exceeds the server limit of {nc.max_payload}"
            )
        if headers is not None:
            self._check_headers(headers)
        if (
            reply is not None
            and reply != self._valid_reply
            and not reply.startswith(self._replies.prefix)
        ):
            validate_subject(reply)
            self._valid_reply = reply  # coordinators send many requests with one reply subject
        stats = self.stats
        stats.published += 1
        stats.published_bytes += len(data)
        try:
            await nc.publish(subject, data, reply or "", headers)
        except nats.errors.ConnectionClosedError:
            raise BusClosedError("the bus is closed") from None
        except nats.errors.OutboundBufferLimitError as exc:
            raise BusConnectionError(
                "the connection is down and its outbound buffer is full"
            ) from exc

    async def subscribe(
        self,
        subject: str,
        callback: MessageCallback,
        queue: str | None = None,
        *,
        pending_limit: int | None = None,
        overflow: Overflow | None = None,
        on_drop: Callable[[Msg], None] | None = None,
    ) -> NatsSubscription:
        """Deliver messages matching `subject` to `callback`, one at a time.

        At most `pending_limit` messages wait; beyond that NATS drops (see NatsSubscription).
        """
        nc = self._client()
        validate_pattern(subject)
        if queue is not None:
            validate_queue(queue)
        limit = self.pending_limit if pending_limit is None else pending_limit
        if limit <= 0:
            raise ValueError("pending_limit must be positive")
        sub = NatsSubscription(
            self, subject, queue, callback, limit, overflow or Overflow.DROP, on_drop
        )
        raw = await nc.subscribe(
            subject,
            queue=queue or "",
            cb=sub._deliver,
            pending_msgs_limit=limit,
            pending_bytes_limit=0,
        )
        sub._raw = raw
        self._subscriptions[raw._id] = sub
        if nc.is_connected:
            # The server refuses a subscription only by a later error message: a round trip
            # makes sure it has arrived, so that a denied subscribe raises here, not never.
            await self.flush()
            if sub.denied is not None:
                await sub.unsubscribe()
                raise sub.denied
        return sub

    async def request(
        self,
        subject: str,
        data: bytes,
        timeout: float = 5.0,
        headers: Headers | None = None,
    ) -> Msg:
        """Publish with a unique reply subject and return the first reply.

        NoRespondersError at once when nobody listens, BusTimeoutError after `timeout` s; a
        late reply is discarded and counted in `stats.late_replies`.
        """
        nc = self._client()
        if not self._inbox_ready:
            await nc.subscribe(
                self._replies.pattern,
                cb=self._on_reply,
                pending_msgs_limit=0,
                pending_bytes_limit=0,
            )
            self._inbox_ready = True
        reply, future = self._replies.open()
        requesting = self._requesting
        requesting[reply] = subject
        try:
            await self.publish(subject, data, headers, reply)
            return await self._replies.wait(future, subject, timeout)
        finally:
            self._replies.close(reply)
            del requesting[reply]

    async def flush(self, timeout: float = 10.0) -> None:
        """Return once the server has processed everything published so far."""
        try:
            await self._client().flush(timeout)  # type: ignore[arg-type]  # takes a float
        except nats.errors.ConnectionClosedError:
            raise BusClosedError("the bus is closed") from None
        except nats.errors.TimeoutError as exc:
            raise BusConnectionError(f"flush got no answer within {timeout} s") from exc

    async def close(self) -> None:
        """Drain every subscription (up to `drain_timeout`), then close the connection."""
        if self._closed:
            return
        self._closed = True
        self._replies.fail_all()
        nc = self._nc
        if nc is None:
            return
        tasks = [delivery_task(sub._raw) for sub in self._subscriptions.values() if sub._raw]
        tasks += [sub._drain_task for sub in self._subscriptions.values()]
        try:
            if nc.is_connected:
                await nc.drain()
            else:
                await nc.close()
        except nats.errors.Error:
            await nc.close()
        for task in tasks:
            if task is not None and not task.done():
                task.cancel()
            await join(task)
        await _join_client(nc)
        self._subscriptions.clear()

    # -- internals -----------------------------------------------------------------------

    def _client(self) -> Client:
        if self._closed:
            raise BusClosedError("the bus is closed")
        nc = self._nc
        if nc is None:
            raise BusConnectionError("not connected: use `async with NatsBus(...)` or connect()")
        return nc

    def _validate(self, subject: str) -> None:
        denied = self._denied.get(subject)
        if denied is not None:
            raise PermissionDeniedError(denied.action, subject)
        validate_subject(subject)
        if len(self._validated) >= _VALIDATED_KEPT:
            self._validated.clear()
        self._validated.add(subject)

    def _forget(self, sub: NatsSubscription) -> None:
        if sub._raw is not None:
            self._subscriptions.pop(sub._raw._id, None)

    async def _on_reply(self, raw: NatsMsg) -> None:
        self._replies.deliver(Msg(raw.subject, raw.data, raw.headers, None))

    async def _on_error(self, error: Exception) -> None:
        if isinstance(error, nats.errors.SlowConsumerError):
            sub = self._subscriptions.get(error.sid)
            if sub is not None:
                sub._dropped(error.subject, error.reply)
            logger.warning("slow consumer on %r: message dropped", error.subject)
            return
        violation = _VIOLATION.search(str(error))
        if violation is not None:
            action, subject, queue = violation.groups()
            self._refused("publish" if action.lower() == "publish" else "subscribe", subject, queue)
            return
        self._last_error = error
        logger.error("NATS error: %r", error)

    def _refused(self, action: str, subject: str, queue: str | None) -> None:
        """The server refused a publish or a subscription: tell whoever can still hear it."""
        self.stats.permission_violations += 1
        if action == "publish":
            denied = PermissionDeniedError("publish", subject)
            self._denied[subject] = denied
            self._validated.discard(subject)  # the next publish takes the checking path
            for reply, requested in list(self._requesting.items()):
                if requested == subject:
                    self._replies.fail(reply, PermissionDeniedError("publish", subject))
        else:
            denied = PermissionDeniedError("subscribe", subject, queue)
            for sub in self._subscriptions.values():
                if sub.subject == subject and (sub.queue or None) == queue:
                    sub.denied = denied
        self._last_error = denied
        logger.error("%s", denied)

    async def _on_disconnected(self) -> None:
        if not self._closed:
            self.stats.disconnects += 1
            where = self.connected_url or [_redacted(url) for url in self.servers]
            logger.warning("NATS connection lost (%s)", where)

    async def _on_reconnected(self) -> None:
        self.stats.reconnects += 1
        self._denied.clear()  # the server may be another one, or its permissions reloaded
        logger.warning("NATS connection re-established to %s", self.connected_url)

    async def _on_closed(self) -> None:
        logger.info("NATS connection closed")

    @staticmethod
    def _chain(
        ours: Callable[..., Awaitable[None]], theirs: Callable[..., Awaitable[None]] | None
    ) -> Callable[..., Awaitable[None]]:
        if theirs is None:
            return ours

        async def both(*args: Any) -> None:
            await ours(*args)
            await theirs(*args)

        return both


def _redacted(url: str) -> str:
    """`url` with its user and password, if any, replaced: credentials are never logged."""
    scheme, separator, rest = url.rpartition("://")
    if "@" not in rest:
        return url
    return f"{scheme}{separator}***@{rest.rpartition('@')[2]}"


async def _abandon(client: Client) -> None:
    """Release what a failed first connect left, without waiting on it for long."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(1.0):
            await client.close()
    await _join_client(client)


def _take_pending(raw: RawSubscription) -> list[NatsMsg]:
    # nats-py discards what is still queued when it unsubscribes; take it first so that it
    # is reported as dropped (askers get an answer) rather than lost in silence.
    queue = getattr(raw, "_pending_queue", None)
    taken: list[NatsMsg] = []
    if isinstance(queue, asyncio.Queue):
        while not queue.empty():
            taken.append(queue.get_nowait())
            queue.task_done()
    return taken


async def _join_client(nc: Client) -> None:
    """Wait for the tasks nats-py cancelled on close, so none outlives the bus."""
    names = ("_reading_task", "_flusher_task", "_ping_interval_task", "_reconnection_task")
    tasks = [getattr(nc, name, None) for name in names]
    pending = [t for t in tasks if isinstance(t, asyncio.Task) and not t.done()]
    pending = [t for t in pending if t is not asyncio.current_task()]
    if pending:
        await asyncio.wait(pending, timeout=5)
