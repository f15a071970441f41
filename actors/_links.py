"""Communication links: who sent what to whom, as a run really did it.

With `ActorSystem(record_links=True)` every tell and ask is recorded as a link (sender,
receiver, message type, request or not), counted, and kept in order per correlation id (the
latest conversations, bounded), so that a strategy's coupling can be drawn from real runs as
Mermaid flowcharts and sequence diagrams.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from contextvars import ContextVar, Token
from dataclasses import dataclass

__all__ = ("Link", "LinkRecorder", "acting_as")

_acting: ContextVar[str | None] = ContextVar("corps_acting_as", default=None)


class acting_as:
    """Attribute what this context sends to `name` (code that is not an actor handler, such
    as a mediator moving its instances on).

    A class rather than a generator-based context manager: coordinators enter it for every
    reply they handle.
    """

    __slots__ = ("_name", "_token")

    def __init__(self, name: str) -> None:
        self._name = name
        self._token: Token[str | None] | None = None

    def __enter__(self) -> None:
        self._token = _acting.set(self._name)

    def __exit__(self, *exc_info: object) -> None:
        if self._token is not None:
            _acting.reset(self._token)


def sender_override() -> str | None:
    return _acting.get()


@dataclass(frozen=True, slots=True, order=True)
class Link:
    sender: str
    receiver: str
    message: str
    request: bool
    """True for an ask (the sender waits for a reply), False for a tell."""


class LinkRecorder:
    """Counts links, and keeps the sequence of the latest `conversations` correlation ids."""

    def __init__(self, conversations: int = 1000) -> None:
        self.counts: Counter[Link] = Counter()
        self._sequences: OrderedDict[str, list[Link]] = OrderedDict()
        self._conversations = conversations

    def record(self, link: Link, correlation_id: str | None) -> None:
        self.counts[link] += 1
        if correlation_id is None:
            return
        sequence = self._sequences.get(correlation_id)
        if sequence is None:
            sequence = self._sequences[correlation_id] = []
            if len(self._sequences) > self._conversations:
                self._sequences.popitem(last=False)
        if len(sequence) < 1000:
            sequence.append(link)

    @property
    def links(self) -> set[Link]:
        """The distinct links used."""
        return set(self.counts)

    def sequence(self, correlation_id: str) -> list[Link]:
        """The links of one conversation (a workflow instance), in order."""
        return list(self._sequences.get(correlation_id, ()))

    def clear(self) -> None:
        self.counts.clear()
        self._sequences.clear()

    def flowchart(self) -> str:
        """A Mermaid flowchart of the links used: solid for requests, dotted for tells."""
        lines = ["flowchart LR"]
        for link in sorted(self.counts):
            arrow = "-->" if link.request else "-.->"
            lines.append(f"    {_node(link.sender)} {arrow}|{link.message}| {_node(link.receiver)}")
        return "\n".join(lines)

    def sequence_diagram(self, correlation_id: str) -> str:
        """A Mermaid sequence diagram of one conversation."""
        lines = ["sequenceDiagram"]
        for link in self.sequence(correlation_id):
            arrow = "->>" if link.request else "-)"
            lines.append(f"    {_node(link.sender)}{arrow}{_node(link.receiver)}: {link.message}")
        return "\n".join(lines)


def _node(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)
