"""Buses: NATS-style publish/subscribe and request/reply, in memory or on a NATS server.

`brokers` knows nothing of actors. `MemoryBus` is the embedded default; every bus implements
the `Bus` protocol.
"""

from ._bus import Bus, MessageCallback, Overflow, Subscription
from ._errors import (
    BusClosedError,
    BusError,
    BusTimeoutError,
    CorpsError,
    InvalidHeaderError,
    InvalidSubjectError,
    MaxPayloadError,
    NoRespondersError,
    SlowConsumerError,
)
from ._ids import IdGenerator, new_id
from ._memory import DEFAULT_MAX_PAYLOAD, DEFAULT_PENDING_LIMIT, MemoryBus
from ._memory_subscription import MemorySubscription
from ._message import Headers, Msg
from ._stats import BusStats
from ._subjects import subject_matches, validate_pattern, validate_queue, validate_subject

__all__ = (
    "DEFAULT_MAX_PAYLOAD",
    "DEFAULT_PENDING_LIMIT",
    "Bus",
    "BusClosedError",
    "BusError",
    "BusStats",
    "BusTimeoutError",
    "CorpsError",
    "Headers",
    "IdGenerator",
    "InvalidHeaderError",
    "InvalidSubjectError",
    "MaxPayloadError",
    "MemoryBus",
    "MemorySubscription",
    "MessageCallback",
    "Msg",
    "NoRespondersError",
    "Overflow",
    "SlowConsumerError",
    "Subscription",
    "new_id",
    "subject_matches",
    "validate_pattern",
    "validate_queue",
    "validate_subject",
)
