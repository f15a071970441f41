"""InstanceState to bytes and back, typed: what a durable state store writes."""

from __future__ import annotations

from typing import Any

import msgspec

from ..choreography._carriage import ContextCodec
from ..core import Progress
from ..definition._workflow import Workflow
from ._store import InstanceState

__all__ = ("StateCodec",)


class _Stored(msgspec.Struct, array_like=True):
    input: msgspec.Raw
    results: dict[str, msgspec.Raw]
    progress: Progress
    history: list[str] = []


_encode = msgspec.msgpack.Encoder().encode
_NIL = _encode(None)
_decode = msgspec.msgpack.Decoder(_Stored).decode


class StateCodec:
    """Encodes the instances of `workflow`; decodes them with the input and reply types."""

    def __init__(self, workflow: Workflow[Any]) -> None:
        self._codec = ContextCodec(workflow)

    def encode(self, state: InstanceState) -> bytes:
        return _encode(
            _Stored(
                msgspec.Raw(_encode(state.input)),
                {name: msgspec.Raw(_encode(reply)) for name, reply in state.results.items()},
                state.progress,
                state.history,
            )
        )

    def decode(self, workflow_id: str, data: bytes) -> InstanceState:
        stored = _decode(data)
        workflow_input: Any = None  # a front controller's record keeps no input
        if bytes(stored.input) != _NIL:
            workflow_input = self._codec.context(workflow_id, stored.input, {}).input
        return InstanceState(
            workflow_id,
            workflow_input,
            self._codec.results(stored.results),
            stored.progress,
            stored.history,
        )
