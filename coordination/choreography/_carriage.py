"""Turning carried workflow data back into a typed `WorkflowContext`, and back again.

Replies travel as the bytes their service produced, decoded by the workflow's `ReplyCodec`,
so builders downstream see the same typed replies a mediator would hand them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Generic, TypeVar

import msgspec

from ..definition._reply_codec import ReplyCodec
from ..definition._workflow import Replies, Workflow, WorkflowContext, nothing_to_read
from ._events import Carried

__all__ = ("ContextCodec",)

In = TypeVar("In", bound=msgspec.Struct)

_encode = msgspec.msgpack.Encoder().encode
_UNTYPED = msgspec.msgpack.Decoder()


class ContextCodec(Generic[In]):
    """Encodes and decodes the data a workflow's events carry."""

    def __init__(self, workflow: Workflow[In]) -> None:
        self.workflow = workflow
        self._input = workflow.input_decoder
        self._reply_codec = ReplyCodec(workflow)
        self._replies = self._reply_codec.decoders

    def carried(self, workflow_input: In, results: Mapping[str, Any] | None = None) -> Carried:
        encoded = {name: msgspec.Raw(_encode(reply)) for name, reply in (results or {}).items()}
        return Carried(msgspec.Raw(_encode(workflow_input)), encoded)

    def results(self, raw: Mapping[str, msgspec.Raw]) -> dict[str, Any]:
        return self._reply_codec.results(raw)

    def context(
        self,
        workflow_id: str,
        raw_input: msgspec.Raw,
        raw_results: Mapping[str, msgspec.Raw],
        readable: tuple[str, ...] | None = None,
        step: str = "",
    ) -> WorkflowContext[In]:
        """The context carried data stands for; with `readable`, the context `step`'s
        builders see: only those replies are decoded (see `Replies`)."""
        if readable is None:
            results = self.results(raw_results)
        elif not readable:
            results = nothing_to_read(step)
        else:
            replies = self._replies
            decoder = self._reply_codec.decoder  # a for-each's item: its step's decoder
            results = Replies(
                step,
                {
                    name: (replies.get(name) or decoder(name) or _UNTYPED).decode(raw_results[name])
                    for name in readable
                    if name in raw_results
                },
            )
        return WorkflowContext(workflow_id, self._input.decode(raw_input), results)
