"""ActorRef: the handle through which actors are told and asked."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

import msgspec

from brokers import (
    Bus,
    BusTimeoutError,
    Headers,
    NoRespondersError,
    SlowConsumerError,
)
from brokers._memory import prechecked_publish

from ._actor import Actor
from ._codec import ErrorReply, decode, encode
from ._context import CORRELATION_ID, ERROR_KIND, ErrorKind, _current, outgoing_headers
from ._errors import (
    ActorNotFoundError,
    ActorStoppedError,
    AskTimeoutError,
    HandlerError,
    MailboxFullError,
    MessageDecodeError,
    UnhandledMessageError,
)
from ._handlers import HandlerTable
from ._links import Link, LinkRecorder, sender_override

if TYPE_CHECKING:
    from ._message import Request
    from ._system import ActorGroup

__all__ = ("ActorRef",)

A = TypeVar("A", bound=Actor)
R = TypeVar("R")

_error_decoder = msgspec.msgpack.Decoder(ErrorReply)


class ActorRef(Generic[A]):
    """Sends messages to the actor (all its instances) named `name`, local or remote.

    A ref checks what it can before sending: the message type must be one the actor handles,
    and a local actor must not have stopped. Both fail at once.
    """

    __slots__ = (
        "_bus",
        "_group",
        "_handlers",
        "_links",
        "_max_reply",
        "_prefix",
        "_publish",
        "_reply_decoders",
        "name",
        "subject",
    )

    def __init__(
        self,
        bus: Bus,
        name: str,
        subject: str,
        table: HandlerTable,
        max_reply: int,
        group: ActorGroup | None = None,
        links: LinkRecorder | None = None,
        prefix: str = "",
    ) -> None:
        self._bus = bus
        self._links = links
        self._prefix = prefix + "."
        self._publish = prechecked_publish(bus)
        self.name = name
        self.subject = subject
        self._handlers = table.handlers
        self._reply_decoders = table.reply_decoders
        self._max_reply = max_reply
        self._group = group

    def __repr__(self) -> str:
        return f"<ActorRef {self.name!r} on {self.subject!r}>"

    @property
    def stopped(self) -> bool:
        """True once every local instance has stopped (always False for a remote actor)."""
        group = self._group
        return group is not None and group.stopped

    async def tell(
        self,
        message: msgspec.Struct,
        *,
        correlation_id: str | None = None,
        message_id: str | None = None,
    ) -> None:
        """Send `message` without waiting for it to be handled.

        Waits only while the mailbox is full under Overflow.BLOCK. Raises
        UnhandledMessageError, ActorStoppedError or MailboxFullError (Overflow.REJECT).
        A `message_id` you choose makes a resend recognisable (see `idempotent`).
        """
        # tell and ask repeat these checks inline: they are the hot path, and a shared
        # helper would cost a call per message.
        if type(message) not in self._handlers:
            raise self._unhandled(message)
        group = self._group
        if group is not None and group.stopped:
            raise ActorStoppedError(f"actor {self.name!r} has stopped")
        headers = outgoing_headers(correlation_id, message_id)
        if self._links is not None:
            self._record(message, headers, request=False)
        try:
            await self._publish(self.subject, encode(message), headers)
        except SlowConsumerError as exc:
            raise MailboxFullError(f"actor {self.name!r}: {exc}") from exc

    async def send(
        self,
        message: msgspec.Struct,
        reply_to: str,
        *,
        correlation_id: str | None = None,
        message_id: str | None = None,
    ) -> None:
        """Send a request whose reply the handler publishes to `reply_to`, a subject of yours.

        Unlike `ask`, nothing waits here: a coordinator keeps many requests in flight and
        handles each reply as a message when it lands. The reply carries this message's id as
        its causation id (`CAUSATION_ID`), and an error reply carries the `Corps-Error` header.
        Decode a reply with `reply_decoder(type(message))`. Raises what `tell` raises.
        """
        if type(message) not in self._reply_decoders:
            raise self._unhandled(message)
        group = self._group
        if group is not None and group.stopped:
            raise ActorStoppedError(f"actor {self.name!r} has stopped")
        headers = outgoing_headers(correlation_id, message_id)
        if self._links is not None:
            self._record(message, headers, request=True)
        try:
            await self._publish(self.subject, encode(message), headers, reply_to)
        except SlowConsumerError as exc:
            raise MailboxFullError(f"actor {self.name!r}: {exc}") from exc

    def reply_decoder(self, message_type: type) -> msgspec.msgpack.Decoder[Any]:
        """The decoder of the replies to `message_type` (raises UnhandledMessageError)."""
        decoder = self._reply_decoders.get(message_type)
        if decoder is None:
            raise UnhandledMessageError(
                f"actor {self.name!r} has no handler for {message_type.__name__}"
            )
        return decoder

    @overload
    async def ask(
        self,
        message: Request[R],
        *,
        timeout: float = ...,
        correlation_id: str | None = ...,
        message_id: str | None = ...,
    ) -> R: ...

    @overload
    async def ask(
        self,
        message: msgspec.Struct,
        *,
        timeout: float = ...,
        correlation_id: str | None = ...,
        message_id: str | None = ...,
    ) -> Any: ...

    async def ask(
        self,
        message: msgspec.Struct,
        *,
        timeout: float = 5.0,
        correlation_id: str | None = None,
        message_id: str | None = None,
    ) -> Any:
        """Send `message` and return the handler's reply, decoded to its return type.

        Raises UnhandledMessageError or ActorStoppedError at once, HandlerError when the
        handler raised, AskTimeoutError (a TimeoutError) when no reply came in `timeout`
        seconds, ActorNotFoundError when no instance listens.
        """
        reply_decoder = self._reply_decoders.get(type(message))
        if reply_decoder is None:
            raise self._unhandled(message)
        group = self._group
        if group is not None and group.stopped:
            raise ActorStoppedError(f"actor {self.name!r} has stopped")
        headers = outgoing_headers(correlation_id, message_id)
        if self._links is not None:
            self._record(message, headers, request=True)
        try:
            reply = await self._bus.request(self.subject, encode(message), timeout, headers)
        except NoRespondersError:
            if self.stopped:
                raise ActorStoppedError(f"actor {self.name!r} has stopped") from None
            raise ActorNotFoundError(f"no instance of actor {self.name!r} is running") from None
        except BusTimeoutError:
            raise AskTimeoutError(
                f"actor {self.name!r} did not answer {type(message).__name__} within {timeout} s"
            ) from None
        except SlowConsumerError as exc:
            raise MailboxFullError(f"actor {self.name!r}: {exc}") from exc
        reply_headers = reply.headers
        if reply_headers is not None and ERROR_KIND in reply_headers:
            raise self.reply_error(reply_headers[ERROR_KIND], reply.data)
        return decode(reply_decoder, reply.data, self._max_reply)

    def _record(self, message: msgspec.Struct, headers: Headers, *, request: bool) -> None:
        assert self._links is not None
        sender = sender_override()
        if sender is None:
            current = _current.get()
            subject = current.subject if current is not None else ""
            prefix = self._prefix
            sender = subject[len(prefix) :] if subject.startswith(prefix) else "client"
            sender = sender.partition(".@")[0]  # a private actor is linked by its name
        link = Link(sender, self.name, type(message).__name__, request)
        self._links.record(link, headers.get(CORRELATION_ID))

    def _unhandled(self, message: object) -> UnhandledMessageError:
        handled = ", ".join(sorted(t.__name__ for t in self._handlers))
        return UnhandledMessageError(
            f"actor {self.name!r} has no handler for {type(message).__name__} "
            f"(it handles: {handled})"
        )

    def reply_error(self, kind: str, data: bytes) -> Exception:
        """The exception an error reply stands for: `kind` is its `Corps-Error` header."""
        try:
            body = _error_decoder.decode(data)
        except Exception:
            body = ErrorReply("unknown", "unreadable error reply")
        if kind == ErrorKind.STOPPED:
            return ActorStoppedError(f"actor {self.name!r} stopped before handling the message")
        if kind == ErrorKind.MAILBOX_FULL:
            return MailboxFullError(f"actor {self.name!r}: mailbox full, the message was dropped")
        if kind == ErrorKind.DECODE:
            return MessageDecodeError(f"actor {self.name!r} could not decode: {body.message}")
        return HandlerError(self.name, body.error_type, body.message)
