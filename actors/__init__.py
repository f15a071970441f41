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
)
from ._dead_letters import DeadLetter, DeadLetterReason, DeadLetters
from ._dispatch import dispatch
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
from ._idempotent import idempotent
from ._links import Link, LinkRecorder, acting_as
from ._message import Message, Request
from ._ref import ActorRef
from ._supervision import SupervisorPolicy
from ._system import ActorFailure, ActorSystem

__all__ = (
    "CAUSATION_ID",
    "CORRELATION_ID",
    "ERROR_KIND",
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
    "DuplicateActorError",
    "HandlerError",
    "HandlerTimeoutError",
    "InvalidActorError",
    "Link",
    "LinkRecorder",
    "MailboxFullError",
    "Message",
    "MessageContext",
    "MessageDecodeError",
    "Request",
    "SupervisorPolicy",
    "UnhandledMessageError",
    "acting_as",
    "current_message",
    "dispatch",
    "handler",
    "idempotent",
)
