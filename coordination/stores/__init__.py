"""Where strategies keep their instances: memory by default; SQLite on one machine; NATS
(JetStream key-value and streams) across machines. `InstanceState` is what a state store
saves, for writing a store of your own."""

from ._event_store import EventStore, MemoryEventStore
from ._nats_event_store import NatsEventStore
from ._nats_state_store import NatsStateStore
from ._sqlite_event_store import SqliteEventStore
from ._sqlite_store import SqliteStateStore
from ._store import InstanceState, MemoryStateStore, StateStore

__all__ = (
    "EventStore",
    "InstanceState",
    "MemoryEventStore",
    "MemoryStateStore",
    "NatsEventStore",
    "NatsStateStore",
    "SqliteEventStore",
    "SqliteStateStore",
    "StateStore",
)
