"""ActorCell: runs one actor instance behind one bus subscription.

The subscription's pending queue is the mailbox and its delivery task runs the handlers, so a
message takes one queue hop from sender to handler. The cell decodes (bounded), dispatches,
replies, turns failures into dead letters and error replies, and applies its supervisor's
directive (resume, restart, stop).
"""

from __future__ import annotations

import asyncio
import logging
from bisect import bisect_left
from collections.abc import Callable
from time import perf_counter
from typing import TYPE_CHECKING, Any

from brokers import Bus, Msg, Overflow, Subscription
from brokers._memory import prechecked_publish

from ._actor import Actor
from ._codec import ErrorReply, encode, oversized, undecodable
from ._context import ERROR_KIND, ErrorKind, _current, reply_headers
from ._dead_letters import DeadLetterReason
from ._errors import HandlerTimeoutError
from ._handlers import HandlerTable
from ._supervision import Directive, RestartTracker, SupervisorPolicy

if TYPE_CHECKING:
    from ._system import ActorGroup, ActorSystem

__all__ = ("ActorCell",)

logger = logging.getLogger("actors")


class ActorCell:
    """One running instance of an actor."""

    __slots__ = (
        "_handlers",
        "_publish_reply",
        "_replies",
        "actor",
        "begun",
        "bus",
        "decoder",
        "durations",
        "factory",
        "failed",
        "group",
        "handled",
        "handler_timeout",
        "max_message_size",
        "restarts",
        "stopped",
        "subscription",
        "system",
        "timed",
        "tracker",
    )

    def __init__(
        self,
        system: ActorSystem,
        group: ActorGroup,
        factory: Callable[[], Actor],
        table: HandlerTable,
        policy: SupervisorPolicy,
        max_message_size: int,
        handler_timeout: float | None,
    ) -> None:
        self.system = system
        self.handler_timeout = handler_timeout
        self.bus: Bus = system.bus
        self._publish_reply = prechecked_publish(self.bus)
        self.group = group
        self.factory = factory
        self._handlers = table.handlers
        self.decoder = table.decoder
        self.tracker = RestartTracker(policy)
        self.max_message_size = max_message_size
        self.actor: Actor | None = None
        self.subscription: Subscription | None = None
        self.stopped = False
        self.restarts = 0
        self.handled = 0
        """Messages whose handler returned."""
        self.failed = 0
        """Messages whose handler raised."""
        self.begun = 0
        """Messages whose handler was called: one is running while this exceeds the two above."""
        self.durations = group.durations
        self.timed = system.metrics.timed
        self._replies: set[asyncio.Task[None]] = set()
        """Error replies to dropped asks, sent from tasks the cell joins when it stops."""

    @property
    def idle(self) -> bool:
        """Nothing in the mailbox, and no handler running."""
        subscription = self.subscription
        waiting = getattr(subscription, "pending", 0) if subscription is not None else 0
        return not waiting and self.begun == self.handled + self.failed

    def use_table(self, table: HandlerTable) -> None:
        """Dispatch with `table` from the next message on (handlers added or removed)."""
        self._handlers = table.handlers
        self.decoder = table.decoder

    async def start(self, first: Actor | None, mailbox_size: int, overflow: Overflow) -> None:
        """Create (or take) the instance, run on_start, then start listening."""
        self.actor = await self._new_instance(first)
        self.subscription = await self.bus.subscribe(
            self.group.subject,
            self._on_message,
            self.group.name,
            pending_limit=mailbox_size,
            overflow=overflow,
            on_drop=self._on_drop,
        )

    async def stop(self) -> None:
        """Handle what is in the mailbox, then stop the instance."""
        if self.subscription is not None:
            await self.subscription.drain()
        await self._finish()
        await self._join_replies()

    async def stop_now(self) -> None:
        """Stop without handling the mailbox: what is left in it is refused."""
        await self._finish()
        if self.subscription is not None:
            await self.subscription.drain()

    async def kill(self) -> None:
        """Stop at once, cancelling a running handler; what is still in the mailbox is
        dead-lettered and its askers are told the actor stopped."""
        if not self.stopped:
            self.stopped = True
            self.group.instance_stopped()
        if self.subscription is not None:
            await self.subscription.unsubscribe()
        await self._join_replies()

    async def _join_replies(self, timeout: float = 1.0) -> None:
        if self._replies:
            _, late = await asyncio.wait(self._replies, timeout=timeout)
            for reply in late:
                reply.cancel()
            if late:
                await asyncio.wait(late)

    async def _new_instance(self, instance: Actor | None = None) -> Actor:
        actor = self.factory() if instance is None else instance
        actor.ref = self.group.ref
        actor.system = self.system
        actor.name = self.group.name
        await actor.on_start()
        return actor

    async def _finish(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        self.group.instance_stopped()
        await self._call_on_stop()

    async def _call_on_stop(self) -> None:
        if self.actor is not None:
            try:
                await self.actor.on_stop()
            except Exception:
                logger.exception("actor %r: on_stop failed", self.group.name)

    async def _on_message(self, msg: Msg) -> None:
        if self.stopped:
            await self._refuse(msg, DeadLetterReason.ACTOR_STOPPED, ErrorKind.STOPPED, None)
            return
        data = msg.data
        if len(data) > self.max_message_size:
            error = oversized(len(data), self.max_message_size)
            await self._refuse(msg, DeadLetterReason.OVERSIZED, ErrorKind.DECODE, error)
            return
        try:
            message = self.decoder.decode(data)
        except Exception as exc:
            # RecursionError for deep nesting too: hostile bytes never kill the actor.
            error = undecodable(exc)
            await self._refuse(msg, DeadLetterReason.UNDECODABLE, ErrorKind.DECODE, error)
            return
        token = _current.set(msg)
        timed = self.timed
        started = perf_counter() if timed else 0.0
        self.begun += 1
        try:
            if self.handler_timeout is None:
                result = await self._handlers[type(message)](self.actor, message)
            else:
                result = await self._run_with_timeout(message)
            if msg.reply is not None:
                data = encode(result)
        except Exception as exc:
            _current.reset(token)
            if timed:
                self.durations.observe(perf_counter() - started)
            self.failed += 1
            await self._failed(msg, exc)
            return
        except asyncio.CancelledError:
            # Killed mid-handler (shutdown past its deadline): tell the asker, then go.
            _current.reset(token)
            if msg.reply is not None:
                await self._reply_error(msg, ErrorKind.STOPPED, "stopped while handling")
            raise
        _current.reset(token)
        if timed:
            # Histogram.observe, inlined: this runs for every message.
            took = perf_counter() - started
            durations = self.durations
            durations.counts[bisect_left(durations.bounds, took)] += 1
            durations.sum += took
        self.handled += 1
        if msg.reply is not None:
            try:
                await self._publish_reply(msg.reply, data, reply_headers(msg))
            except Exception as exc:  # e.g. a reply over the bus's max payload
                await self._reply_error(msg, ErrorKind.HANDLER, exc)

    async def _run_with_timeout(self, message: Any) -> Any:
        timeout = self.handler_timeout
        try:
            async with asyncio.timeout(timeout):
                return await self._handlers[type(message)](self.actor, message)
        except TimeoutError:
            raise HandlerTimeoutError(
                f"{type(message).__name__} handler ran longer than {timeout} s"
            ) from None

    def _on_drop(self, msg: Msg) -> None:
        """A message the mailbox could not keep: full (Overflow.DROP), or left at a kill."""
        if self.stopped:
            reason, kind = DeadLetterReason.ACTOR_STOPPED, ErrorKind.STOPPED
        else:
            reason, kind = DeadLetterReason.MAILBOX_FULL, ErrorKind.MAILBOX_FULL
        self.system.dead_letters.record(reason, self.group.name, msg.subject, msg.data, msg.headers)
        if msg.reply is not None:
            # Called synchronously by the publisher: answer the asker from a task of our own.
            reply = asyncio.get_running_loop().create_task(
                self._reply_error(msg, kind, reason.value)
            )
            self._replies.add(reply)
            reply.add_done_callback(self._replies.discard)

    async def _refuse(
        self, msg: Msg, reason: DeadLetterReason, kind: str, error: BaseException | None
    ) -> None:
        self.system.dead_letters.record(
            reason, self.group.name, msg.subject, msg.data, msg.headers, error
        )
        if msg.reply is not None:
            await self._reply_error(msg, kind, error or reason.value)

    async def _reply_error(self, msg: Msg, kind: str, error: BaseException | str) -> None:
        assert msg.reply is not None
        if isinstance(error, BaseException):
            body = ErrorReply(type(error).__name__, str(error))
        else:
            body = ErrorReply(kind, error)
        headers = reply_headers(msg)
        headers[ERROR_KIND] = kind
        try:
            await self._publish_reply(msg.reply, encode(body), headers)
        except Exception:
            logger.exception("actor %r: cannot send an error reply", self.group.name)

    async def _failed(self, msg: Msg, error: Exception) -> None:
        name = self.group.name
        self.system.dead_letters.record(
            DeadLetterReason.HANDLER_ERROR, name, msg.subject, msg.data, msg.headers, error
        )
        if msg.reply is not None:
            await self._reply_error(msg, ErrorKind.HANDLER, error)
        await self.supervise(error)

    async def supervise(self, error: Exception) -> None:
        """A handler of this instance raised `error` (its message has failed already): apply
        the policy's directive to the actor. Called for a message the mailbox delivered and
        for one a sidecar dispatched in place, so both obey the same directive."""
        name = self.group.name
        try:
            directive = self.tracker.policy.decide(error)
        except Exception as decider_error:  # a broken decider must not kill the mailbox
            logger.exception("actor %r: the supervisor's decider failed", name)
            directive = Directive.STOP
            error = decider_error
        if directive is Directive.RESUME:
            logger.info("actor %r: handler failed, resuming: %r", name, error)
            return
        if directive is Directive.STOP:
            await self._escalate(error)
            return
        loop = asyncio.get_running_loop()
        if not self.tracker.allow_restart(loop.time()):
            await self._escalate(error)
            return
        logger.warning("actor %r: handler failed, restarting: %r", name, error)
        await self._call_on_stop()
        await asyncio.sleep(self.tracker.backoff())
        try:
            self.actor = await self._new_instance()
        except Exception as start_error:
            await self._escalate(start_error)
            return
        self.restarts += 1

    async def _escalate(self, error: BaseException) -> None:
        """Stop for good: the directive says so, too many restarts, or a restart that failed.
        The rest of the mailbox is refused (askers get ActorStoppedError) and the system
        records the failure."""
        logger.error(
            "actor %r: stopping (after %d restarts); last error: %r",
            self.group.name,
            self.restarts,
            error,
        )
        self.system._escalate(self.group.name, error)
        await self._finish()
        if self.subscription is not None:
            await self.subscription.drain()
