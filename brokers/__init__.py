"""Buses: NATS-style publish/subscribe and request/reply, in memory or on a NATS server.

`brokers` knows nothing of actors. `MemoryBus` is the embedded default, `NatsBus` runs the same
protocol on a real nats-server; `NatsServer` starts one on loopback for tests and benchmarks.
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
    PermissionDeniedError,
    SlowConsumerError,
)
from ._ids import IdGenerator, new_id
from ._jetstream import DeadLetterNotice, DurableSubscription, JetStream, JetStreamError, PublishAck
from ._memory import DEFAULT_MAX_PAYLOAD, DEFAULT_PENDING_LIMIT, MemoryBus
from ._message import Headers, Msg
from ._nats import BusConnectionError, ConnectionStatus, NatsBus
from ._nats_server import NatsServer, NatsServerError, find_nats_server
from ._stats import BusStats
from ._subjects import subject_matches, validate_pattern, validate_queue, validate_subject

__all__ = (
    "DEFAULT_MAX_PAYLOAD",
    "DEFAULT_PENDING_LIMIT",
    "Bus",
    "BusClosedError",
    "BusConnectionError",
    "BusError",
    "BusStats",
    "BusTimeoutError",
    "ConnectionStatus",
    "CorpsError",
    "DeadLetterNotice",
    "DurableSubscription",
    "Headers",
    "IdGenerator",
    "InvalidHeaderError",
    "InvalidSubjectError",
    "JetStream",
    "JetStreamError",
    "MaxPayloadError",
    "MemoryBus",
    "MessageCallback",
    "Msg",
    "NatsBus",
    "NatsServer",
    "NatsServerError",
    "NoRespondersError",
    "Overflow",
    "PermissionDeniedError",
    "PublishAck",
    "SlowConsumerError",
    "Subscription",
    "find_nats_server",
    "new_id",
    "subject_matches",
    "validate_pattern",
    "validate_queue",
    "validate_subject",
)
