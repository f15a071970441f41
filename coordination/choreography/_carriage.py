"""Turning carried workflow data back into a typed `WorkflowContext`, and back again.

Replies travel as the bytes their service produced; each step's are decoded with a decoder
for the union of the reply types its service declares, so builders downstream see the same
typed replies a mediator would hand them.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from typing import Any, Generic, TypeVar

import msgspec

from actors import Actor
from actors._handlers import handler_table

from ..definition._workflow import Replies, Workflow, WorkflowContext, nothing_to_read
from ._events import Carried

__all__ = ("ContextCodec", "reply_decoder")

In = TypeVar("In", bound=msgspec.Struct)

_encode = msgspec.msgpack.Encoder().encode


def reply_decoder(service: type[Actor]) -> msgspec.msgpack.Decoder[Any]:
    """A decoder for any reply `service` gives (the union of its handlers' return types)."""
    members: list[Any] = []
    for decoder in handler_table(service).reply_decoders.values():
        kind = decoder.type
        parts = typing.get_args(kind) if _is_union(kind) else (kind,)
        for part in parts:
            if part is not Any and part not in members:
                members.append(part)
    if not members:
        return msgspec.msgpack.Decoder()
    try:
        return msgspec.msgpack.Decoder(typing.Union[tuple(members)])  # noqa: UP007
    except TypeError:  # replies msgspec cannot tell apart: decode them untyped
        return msgspec.msgpack.Decoder()


def _is_union(kind: object) -> bool:
    return typing.get_origin(kind) in (typing.Union, types.UnionType)


class ContextCodec(Generic[In]):
    """Encodes and decodes the data a workflow's events carry."""

    def __init__(self, workflow: Workflow[In]) -> None:
        self.workflow = workflow
        self._input = workflow.input_decoder
        self._replies = {
            step.name: reply_decoder(workflow.services[step.service])
            for step in (*workflow.done_elsewhere, *workflow.steps)
            if step.wait
        }

    def carried(self, workflow_input: In, results: Mapping[str, Any] | None = None) -> Carried:
        encoded = {name: msgspec.Raw(_encode(reply)) for name, reply in (results or {}).items()}
        return Carried(msgspec.Raw(_encode(workflow_input)), encoded)

    def results(self, raw: Mapping[str, msgspec.Raw]) -> dict[str, Any]:
        replies = self._replies
        return {
            name: replies[name].decode(data) if name in replies else msgspec.msgpack.decode(data)
            for name, data in raw.items()
        }

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
            results = Replies(
                step,
                {
                    name: replies[name].decode(raw_results[name])
                    for name in readable
                    if name in raw_results
                },
            )
        return WorkflowContext(workflow_id, self._input.decode(raw_input), results)
