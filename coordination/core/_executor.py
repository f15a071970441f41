"""CommandPort: the one step executor. Many commands in flight from one coordinator, replies
handled as they land, the same timeout and retry rules whichever way a command travels.

A coordinator (the mediator, a choreography adapter) sends a step's command with a reply
subject of its own instead of waiting in `ask`: nothing blocks between sending and the reply,
so one coordinator keeps every workflow instance moving at once. The port matches a reply to
its command by the causation id the service puts on it, retries a technical failure (an error
reply, no reply within the step's timeout) with the same message id and the policy's backoff,
and reports each command's end once: `on_reply` for an answer (a `Rejected` included: the
business said no), `on_error` when the retries are spent. An answer to an earlier attempt that
comes while a later one is pending is the answer all the same (the message id is the same); an
answer after the command's end is discarded and counted (`late_answers` in the metrics).

A sidecar runs its service's handler in place instead (`call_begins`, then `call_answered`
or `call_failed`): the port holds its timeout and its retries all the same, and sends a retry
back through the service's mailbox (`again`), so a sidecar's step times out, retries and
gives up exactly as a command over the bus does, and a hung handler holds its instance no
longer than the step's timeout and retries say.

Timeouts are checked by one sweeper task per port, every `TICK` seconds while commands are
pending, over buckets of a tick each (no timer and no heap entry per command): a command
times out up to a tick late. Deadlines and backoffs are read on the strategy's clock: the
event loop's own time by default, a `ManualClock`'s in a test that skips time (a step with a
day's timeout times out when the test advances the clock a day).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Generic, TypeVar

import msgspec

from actors import CAUSATION_ID, ERROR_KIND, ActorError, ActorRef, ActorSystem, Request
from brokers import Msg, Subscription, new_id

from .._clock import Clock, SystemClock
from .._metrics import WorkflowMetrics
from ..definition._workflow import RetryPolicy, Workflow, WorkflowContext, builder_context

__all__ = ("TICK", "CommandPort", "send_notices", "tell_with_retry")

NOTICE = "failure notice"
"""The step name a failure notice's builder sees."""

logger = logging.getLogger("coordination")

TICK = 0.01

T = TypeVar("T")


class _Pending(msgspec.Struct, Generic[T], gc=False):
    """A command in flight (a Struct: one is made per command, by a constructor in C, and the
    garbage collector need not track it)."""

    token: T
    ref: ActorRef[Any] | None
    """Where the command goes over the bus; None for a sidecar's (see `again`)."""
    command: msgspec.Struct | None
    decoder: msgspec.msgpack.Decoder[Any] | None
    correlation_id: str
    policy: RetryPolicy
    timeout: float
    attempt: int = 1
    bucket: int = 0
    """The tick at which its timeout or resend is due."""
    resend: bool = False
    """Whether what is due is a resend (after a backoff) rather than a timeout."""


class CommandPort(Generic[T]):
    """Sends commands for `owner` (a name, for logs and links) and reports their ends.

    `on_reply(token, reply, data)` gets the decoded reply and its bytes; `on_error(token,
    reason)` a technical failure that outlived its retries. `token` is whatever the caller
    gave `send` to know the command again.
    """

    def __init__(
        self,
        system: ActorSystem,
        owner: str,
        on_reply: Callable[[T, Any, bytes], Awaitable[None]],
        on_error: Callable[[T, str], Awaitable[None]],
        metrics: WorkflowMetrics,
        again: Callable[[T, int], Awaitable[None]] | None = None,
        describe: Callable[[T], tuple[str, RetryPolicy, float]] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.system = system
        self._clock = None if clock is None or type(clock) is SystemClock else clock
        """A clock of the test's (None: the event loop's time, monotonic)."""
        self.owner = owner
        self.subject = f"{system.prefix}.{owner}.replies.{new_id()}"
        """Unique per port: two processes running the same coordinator get their own replies."""
        self._on_reply = on_reply
        self._on_error = on_error
        self._again = again
        self._describe = describe
        """A sidecar's: the correlation id, retry policy and timeout of a call's command."""
        self.metrics = metrics
        """Counts the retries, and the answers that came after their command had ended
        (timed out for good, or answered already), which are discarded."""
        self._pending: dict[str, _Pending[T]] = {}
        self._calls: dict[str, T] = {}
        """Sidecar calls on their first attempt, under way: their tokens."""
        self._seen: dict[str, float] = {}
        """When the sweeper first saw each call that lives past a tick."""
        self._buckets: dict[int, set[str]] = {}
        """Tick number to the message ids due then."""
        self._ticks: list[int] = []
        """The ticks that have a bucket, as a heap."""
        self._subscription: Subscription | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        """Kept from `open`: on Python 3.11 `asyncio.get_running_loop()` makes a getpid()
        system call, too dear for every command."""

    async def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._subscription = await self.system.bus.subscribe(self.subject, self._reply)

    async def close(self) -> None:
        """Stop listening; commands still pending are forgotten (their owner is stopping)."""
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None:
            sweeper.cancel()
            await asyncio.gather(sweeper, return_exceptions=True)
        if self._subscription is not None:
            await self._subscription.unsubscribe()
            self._subscription = None
        self._pending.clear()
        self._calls.clear()
        self._seen.clear()

    async def send(
        self,
        ref: ActorRef[Any],
        command: msgspec.Struct,
        token: T,
        *,
        message_id: str,
        correlation_id: str,
        policy: RetryPolicy,
        timeout: float,
    ) -> None:
        """Send `command` to `ref`; its end comes back through `on_reply` or `on_error`.

        `message_id` must be stable for the command (retries reuse it, so an idempotent
        service answers a resend with its first result) and unique among pending commands.
        """
        if not isinstance(command, Request):
            # A definition bug (a waited-for step whose command has no reply type): the
            # command fails at once, no retry can help, and its owner hears it as any failure.
            reason = f"{type(command).__name__} is waited for: it must subclass actors.Request"
            await self._report_error(token, reason)
            return
        try:
            decoder = ref.reply_decoder(type(command))
        except ActorError as exc:  # the service has no handler for it: no retry can help
            await self._report_error(token, f"{type(exc).__name__}: {exc}")
            return
        pending = _Pending(token, ref, command, decoder, correlation_id, policy, timeout)
        self._pending[message_id] = pending
        await self._transmit(message_id, pending)

    def call_begins(self, message_id: str, token: T) -> None:
        """A sidecar is about to run its service's handler for a command in place (one call at
        a time per service instance: its mailbox runs one message at a time). Its end goes
        to `call_answered` or `call_failed`; a retry comes back through the port's
        `again(token, attempt)`, which runs the handler again in the service's mailbox.

        A first attempt costs a dict entry, no timer and no clock read: the port's sweeper
        notes when it first sees a call under way, and takes up one that outlives its
        timeout (or fails) as a pending command (retried, or failed): it times out up to two
        ticks late. A retry is pending already, and timed from its resend."""
        if message_id in self._pending:
            return  # a retry, timed by the port since it was sent again
        self._calls[message_id] = token
        if self._clock is not None:  # a test's clock moves in leaps: timed from now
            self._seen[message_id] = self._clock.now()
        if self._sweeper is None:
            loop = self._loop
            if loop is None:
                loop = self._loop = asyncio.get_running_loop()
            self._sweeper = loop.create_task(self._sweep(), name=f"{self.owner} timeouts")

    def attempt(self, message_id: str) -> int | None:
        """The attempt of the command `message_id` that is due; None when it has ended (a
        retry that comes after the command ended is not to be run)."""
        pending = self._pending.get(message_id)
        return None if pending is None else pending.attempt

    async def call_answered(self, message_id: str, reply: Any, data: bytes) -> None:
        """A sidecar's handler answered `reply` (encoded: `data`)."""
        token = self._calls.pop(message_id, None)
        if token is not None:  # in time, first attempt: nothing pending
            try:
                await self._on_reply(token, reply, data)
            except Exception:
                logger.exception("%s: handling the reply to %s failed", self.owner, message_id)
            return
        pending = self._pending.pop(message_id, None)
        if pending is None:
            self.metrics.late_answers += 1
            return
        self._unschedule(message_id, pending)
        try:
            await self._on_reply(pending.token, reply, data)
        except Exception:
            logger.exception("%s: handling the reply to %s failed", self.owner, message_id)

    async def call_failed(self, message_id: str, reason: str) -> None:
        """A sidecar's handler raised: retried per the policy, or the command's end."""
        token = self._calls.pop(message_id, None)
        if token is not None:
            await self._failed(message_id, self._adopt(message_id, token), reason)
            return
        pending = self._pending.get(message_id)
        if pending is None:
            self.metrics.late_answers += 1
            return
        self._unschedule(message_id, pending)
        await self._failed(message_id, pending, reason)

    def _adopt(self, message_id: str, token: T) -> _Pending[T]:
        """A sidecar's call whose first attempt failed or timed out: from now on a pending
        command."""
        assert self._describe is not None
        correlation_id, policy, timeout = self._describe(token)
        pending = _Pending(token, None, None, None, correlation_id, policy, timeout)
        self._pending[message_id] = pending
        return pending

    def _schedule(self, message_id: str, pending: _Pending[T], delay: float, resend: bool) -> None:
        if pending.bucket:  # due already for something else: not any more
            bucket = self._buckets.get(pending.bucket)
            if bucket is not None:
                bucket.discard(message_id)
        loop = self._loop
        if loop is None:  # sending before `open`
            loop = self._loop = asyncio.get_running_loop()
        now = loop.time() if self._clock is None else self._clock.now()
        tick = -int(-(now + delay) // TICK)  # the first tick at or after the deadline
        bucket = self._buckets.get(tick)
        if bucket is None:
            bucket = self._buckets[tick] = set()
            heapq.heappush(self._ticks, tick)
        bucket.add(message_id)
        pending.bucket = tick
        pending.resend = resend
        if self._sweeper is None:
            self._sweeper = loop.create_task(self._sweep(), name=f"{self.owner} timeouts")

    def _unschedule(self, message_id: str, pending: _Pending[T]) -> None:
        bucket = self._buckets.get(pending.bucket)
        if bucket is not None:
            bucket.discard(message_id)

    async def _transmit(self, message_id: str, pending: _Pending[T]) -> None:
        self._schedule(message_id, pending, pending.timeout, resend=False)
        if pending.ref is None:  # a sidecar's: the handler runs again in its mailbox
            assert self._again is not None
            try:
                await self._again(pending.token, pending.attempt)
            except Exception as exc:
                await self._failed(message_id, pending, f"{type(exc).__name__}: {exc}")
            return
        assert pending.command is not None
        try:
            await pending.ref.send(
                pending.command,
                self.subject,
                correlation_id=pending.correlation_id,
                message_id=message_id,
            )
        except ActorError as exc:  # stopped, mailbox full: a technical failure like any other
            await self._failed(message_id, pending, f"{type(exc).__name__}: {exc}")

    async def _reply(self, msg: Msg) -> None:
        headers = msg.headers
        if headers is None:
            return
        message_id = headers.get(CAUSATION_ID)
        pending = self._pending.get(message_id) if message_id is not None else None
        if pending is None:
            if message_id is not None:
                self.metrics.late_answers += (
                    1  # the command ended: timed out for good, or answered already
                )
            return
        assert message_id is not None
        assert pending.ref is not None
        # An answer to an earlier attempt, come while a resend waits, is the answer all the same.
        self._unschedule(message_id, pending)
        kind = headers.get(ERROR_KIND)
        if kind is not None:
            error = pending.ref.reply_error(kind, msg.data)
            await self._failed(message_id, pending, f"{type(error).__name__}: {error}")
            return
        del self._pending[message_id]
        assert pending.decoder is not None
        try:
            reply = pending.decoder.decode(msg.data)
        except Exception as exc:  # a service answering out of contract: not worth a retry
            await self._report_error(pending.token, f"undecodable reply: {exc}")
            return
        try:
            await self._on_reply(pending.token, reply, msg.data)
        except Exception:
            logger.exception("%s: handling the reply to %s failed", self.owner, message_id)

    async def _failed(self, message_id: str, pending: _Pending[T], reason: str) -> None:
        """A technical failure of one attempt: resend after the backoff, or give up."""
        policy = pending.policy
        if pending.attempt >= policy.attempts:
            del self._pending[message_id]
            await self._report_error(pending.token, reason)
            return
        logger.warning(
            "%s: %s attempt %d failed: %s",
            pending.correlation_id,
            message_id,
            pending.attempt,
            reason,
        )
        pending.attempt += 1
        self.metrics.retries += 1
        self._schedule(message_id, pending, policy.delay(pending.attempt - 1), resend=True)

    async def _report_error(self, token: T, reason: str) -> None:
        try:
            await self._on_error(token, reason)
        except Exception:
            logger.exception("%s: handling a failed command failed", self.owner)

    async def _time_out_calls(self, now: float) -> None:
        """Sidecar calls past their timeout, counted from when the sweeper first saw them:
        their attempt failed (the handler may still answer: then it is a late answer, or the
        answer to a retry that is due)."""
        seen, calls = self._seen, self._calls
        for message_id in [mid for mid in seen if mid not in calls]:
            del seen[message_id]  # ended
        late = []
        for message_id, token in calls.items():
            first = seen.get(message_id)
            if first is None:
                seen[message_id] = now
                continue
            assert self._describe is not None
            timeout = self._describe(token)[2]
            if now - first >= timeout:
                late.append((message_id, token, timeout))
        for message_id, token, timeout in late:
            if calls.pop(message_id, None) is None:
                continue  # answered meanwhile
            seen.pop(message_id, None)
            pending = self._adopt(message_id, token)
            await self._failed(message_id, pending, f"no reply within {timeout} s")

    async def _sweep(self) -> None:
        """Time commands out and resend them, while any is pending."""
        loop = asyncio.get_running_loop()
        clock = self._clock
        buckets, ticks = self._buckets, self._ticks
        try:
            while self._pending or self._calls:
                await asyncio.sleep(TICK)
                time = loop.time() if clock is None else clock.now()
                if self._calls:
                    await self._time_out_calls(time)
                now = time // TICK
                while ticks and ticks[0] <= now:
                    for message_id in buckets.pop(heapq.heappop(ticks)):
                        pending = self._pending.get(message_id)
                        if pending is None:
                            continue
                        if pending.resend:
                            await self._transmit(message_id, pending)
                        else:
                            reason = f"no reply within {pending.timeout} s"
                            await self._failed(message_id, pending, reason)
        finally:
            self._sweeper = None
            if not self._pending:
                buckets.clear()
                ticks.clear()


async def tell_with_retry(
    ref: ActorRef[Any],
    command: msgspec.Struct,
    *,
    policy: RetryPolicy,
    workflow_id: str,
    message_id: str,
) -> str | None:
    """Tell a command nobody waits for, retrying a refusal (a full mailbox, a stopped actor)
    per `policy`: None once it is sent, else why it could not be."""
    for attempt in range(1, policy.attempts + 1):
        try:
            await ref.tell(command, correlation_id=workflow_id, message_id=message_id)
        except ActorError as exc:
            if attempt == policy.attempts:
                return f"{type(exc).__name__}: {exc}"
            await asyncio.sleep(policy.delay(attempt))
        else:
            return None
    raise AssertionError("unreachable")  # pragma: no cover


async def send_notices(
    workflow: Workflow[Any],
    refs: Mapping[str, ActorRef[Any]],
    context: WorkflowContext[Any],
    workflow_id: str,
) -> None:
    """Send the workflow's failure notices. Each has a message id of its own that stays the
    same when the notices are sent again (a duplicated event, a coordinator that resumed), so
    that an idempotent service acts on it once. A notice that cannot be sent is logged."""
    for index, notify in enumerate(workflow.on_failure):
        try:
            await refs[notify.service].tell(
                notify.command(builder_context(context, (), NOTICE)),
                correlation_id=workflow_id,
                message_id=f"{workflow_id}.notice.{index}",
            )
        except Exception as exc:  # an unreachable service, or a bug in the builder
            logger.error("%s: failure notice to %r not sent: %r", workflow_id, notify.service, exc)
