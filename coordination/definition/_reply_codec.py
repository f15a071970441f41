"""Decoding a workflow's replies from the bytes their services produced.

Each step's reply is decoded with a decoder for the union of the reply types its service
declares, so whoever reads a reply carried as bytes (a choreography's builders, a result told
by another process, a durable store) sees the typed reply a mediator would hand it.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from typing import Any

import msgspec

from actors import Actor
from actors._handlers import handler_table

from ._workflow import Compute, Sleep, SubWorkflow, WaitFor, Workflow

__all__ = ("ReplyCodec", "reply_decoder")

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


class _ChildResult:
    """Decodes a sub-workflow's reply, the child's `WorkflowResult`, with the child's replies
    typed as the child's own codec says."""

    def __init__(self, child: Workflow[Any]) -> None:
        from .._status import WorkflowResult  # the status module reads definitions

        self.type: Any = WorkflowResult
        self._decoder = msgspec.msgpack.Decoder(WorkflowResult)
        self._child = ReplyCodec(child)

    def decode(self, data: bytes) -> Any:
        result = self._decoder.decode(data)  # the child's replies untyped, then typed
        raw = {name: msgspec.Raw(_encode(reply)) for name, reply in result.results.items()}
        return msgspec.structs.replace(result, results=self._child.results(raw))


class ReplyCodec:
    """The decoders of a workflow's replies, by step (steps nobody waits for have none)."""

    def __init__(self, workflow: Workflow[Any]) -> None:
        self.decoders: dict[str, Any] = {}
        """msgspec decoders (or what decodes like one), by step."""
        for node in (*workflow.done_elsewhere, *workflow.leaf_nodes):
            if isinstance(node, SubWorkflow):
                self.decoders[node.name] = _ChildResult(node.workflow)
            elif isinstance(node, Compute):
                self.decoders[node.name] = msgspec.msgpack.Decoder(node.returns)
            elif isinstance(node, WaitFor):
                self.decoders[node.name] = msgspec.msgpack.Decoder(node.payload)
            elif isinstance(node, Sleep):
                continue  # it answers nothing
            elif node.wait:
                self.decoders[node.name] = reply_decoder(workflow.services[node.service])
        self.workflow = workflow
        for for_each in workflow.for_eaches.values():
            each = self.decoders.get(for_each.step.name)
            if each is not None:  # its reply: the list of its items' replies
                self.decoders[for_each.name] = msgspec.msgpack.Decoder(list[each.type])  # type: ignore[name-defined]

    def decoder(self, name: str) -> msgspec.msgpack.Decoder[Any] | None:
        """The decoder of the reply of `name` (a step, or an item of a for-each), or None."""
        decoder = self.decoders.get(name)
        if decoder is None:
            item = self.workflow.item(name)
            if item is not None:
                return self.decoders.get(item[0].step.name)
        return decoder

    def results(self, raw: Mapping[str, msgspec.Raw]) -> dict[str, Any]:
        """Typed replies, by step, from their bytes."""
        results: dict[str, Any] = {}
        for name, data in raw.items():
            decoder = self.decoder(name)
            results[name] = (
                decoder.decode(data) if decoder is not None else msgspec.msgpack.decode(data)
            )
        return results
