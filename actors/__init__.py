"""Actors: typed message handlers on a bus, supervised, with tell and ask.

```python
async with ActorSystem() as system:
    counter = await system.spawn(Counter)
    await counter.tell(Add(amount=2))
    total = await counter.ask(GetTotal())
```
"""

from brokers import CorpsError

from ._actor import Actor
from ._context import (
    CAUSATION_ID,
    CORRELATION_ID,
    ERROR_KIND,
    MESSAGE_ID,
    MessageContext,
    current_message,
    current_message_id,
)
from ._dead_letters import DeadLetter, DeadLetterReason, DeadLetters
from ._errors import (
    ActorError,
    ActorNotFoundError,
    ActorStoppedError,
    AskTimeoutError,
    DuplicateActorError,
    HandlerError,
    HandlerTimeoutError,
    InvalidActorError,
    MailboxFullError,
    MessageDecodeError,
    UnhandledMessageError,
)
from ._handlers import handler
from ._idempotency_store import IdempotencyStore, MemoryIdempotencyStore, SqliteIdempotencyStore
from ._idempotent import idempotent
from ._links import Link, LinkRecorder, acting_as
from ._message import Message, Request
from ._metrics import LATENCY_BUCKETS, Histogram, SystemMetrics
from ._metrics_http import MetricsServer, metrics_app, serve_metrics, serve_registry
from ._ref import ActorRef
from ._supervision import Directive, SupervisorPolicy
from ._system import ActorFailure, ActorSystem

__all__ = (
    "CAUSATION_ID",
    "CORRELATION_ID",
    "ERROR_KIND",
    "LATENCY_BUCKETS",
    "MESSAGE_ID",
    "Actor",
    "ActorError",
    "ActorFailure",
    "ActorNotFoundError",
    "ActorRef",
    "ActorStoppedError",
    "ActorSystem",
    "AskTimeoutError",
    "CorpsError",
    "DeadLetter",
    "DeadLetterReason",
    "DeadLetters",
    "Directive",
    "DuplicateActorError",
    "HandlerError",
    "HandlerTimeoutError",
    "Histogram",
    "IdempotencyStore",
    "InvalidActorError",
    "Link",
    "LinkRecorder",
    "MailboxFullError",
    "MemoryIdempotencyStore",
    "Message",
    "MessageContext",
    "MessageDecodeError",
    "MetricsServer",
    "Request",
    "SqliteIdempotencyStore",
    "SupervisorPolicy",
    "SystemMetrics",
    "UnhandledMessageError",
    "acting_as",
    "current_message",
    "current_message_id",
    "handler",
    "idempotent",
    "metrics_app",
    "serve_metrics",
    "serve_registry",
)
