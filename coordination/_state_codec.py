"""InstanceState to bytes and back, typed: what a durable state store writes."""

from __future__ import annotations

from typing import Any

import msgspec

from ._carriage import ContextCodec
from ._definition import Failure, Workflow
from ._status import Outcome
from ._store import InstanceState

__all__ = ("StateCodec",)


class _Stored(msgspec.Struct, array_like=True):
    input: msgspec.Raw
    outcome: str
    current_step: str | None
    completed: list[str]
    compensated: list[str]
    results: dict[str, msgspec.Raw]
    failure: tuple[str, str, bool] | None
    cancel_requested: bool
    attention: list[str] = []
    paused: bool = False
    history: list[str] = []


_encode = msgspec.msgpack.Encoder().encode
_NIL = _encode(None)
_decode = msgspec.msgpack.Decoder(_Stored).decode


class StateCodec:
    """Encodes the instances of `workflow`; decodes them with the input and reply types."""

    def __init__(self, workflow: Workflow[Any]) -> None:
        self._codec = ContextCodec(workflow)

    def encode(self, state: InstanceState) -> bytes:
        failure = state.failure
        return _encode(
            _Stored(
                msgspec.Raw(_encode(state.input)),
                state.outcome.value,
                state.current_step,
                list(state.completed),
                list(state.compensated),
                {name: msgspec.Raw(_encode(reply)) for name, reply in state.results.items()},
                (failure.step, failure.reason, failure.technical) if failure else None,
                state.cancel_requested,
                list(state.attention),
                state.paused,
                list(state.history),
            )
        )

    def decode(self, workflow_id: str, data: bytes) -> InstanceState:
        stored = _decode(data)
        workflow_input: Any = None  # a front controller's record keeps no input
        if bytes(stored.input) != _NIL:
            workflow_input = self._codec.context(workflow_id, stored.input, {}).input
        failure = Failure(*stored.failure) if stored.failure is not None else None
        return InstanceState(
            workflow_id,
            workflow_input,
            Outcome(stored.outcome),
            stored.current_step,
            stored.completed,
            stored.compensated,
            self._codec.results(stored.results),
            failure,
            stored.cancel_requested,
            stored.attention,
            stored.paused,
            stored.history,
        )
