"""Which subscriptions receive a subject: a token trie with a per-subject route cache.

A publish to a subject already seen is one dict lookup. The cache is invalidated narrowly: a
subscription on a literal subject only forgets that subject's route; one with a wildcard forgets
all of them. The cache is bounded and cleared when it fills.
"""

from __future__ import annotations

from typing import Generic, Protocol, TypeVar

from ._subjects import validate_pattern, validate_subject

__all__ = ("Route", "SubjectIndex")


class _Member(Protocol):
    @property
    def queue(self) -> str | None: ...


M = TypeVar("M", bound=_Member)


class Route(Generic[M]):
    """The subscribers of one subject: every plain one, and one member of each queue group.

    `fixed` holds the subscribers that get every message: the plain ones and the only member
    of each one-member queue group. `groups` holds the larger queue groups, which take turns.
    """

    __slots__ = ("_turn", "empty", "fixed", "groups", "plain")

    def __init__(self, plain: tuple[M, ...], groups: tuple[tuple[M, ...], ...]) -> None:
        self.plain = plain
        self.fixed = plain + tuple(group[0] for group in groups if len(group) == 1)
        self.groups = tuple(group for group in groups if len(group) > 1)
        self.empty = not (self.fixed or self.groups)
        self._turn = 0

    def pick(self, group: tuple[M, ...]) -> M:
        """The member of `group` whose turn it is (round robin)."""
        self._turn += 1
        return group[self._turn % len(group)]


class _Node(Generic[M]):
    __slots__ = ("children", "members", "star", "tail")

    def __init__(self) -> None:
        self.children: dict[str, _Node[M]] = {}
        self.star: _Node[M] | None = None
        self.tail: _Node[M] | None = None  # the `>` child
        self.members: list[M] = []

    def is_empty(self) -> bool:
        return not (self.members or self.children or self.star or self.tail)


class SubjectIndex(Generic[M]):
    """Subscriptions indexed by pattern, answering "who gets this subject" fast."""

    def __init__(self, cache_size: int = 8192) -> None:
        self._root: _Node[M] = _Node()
        self._cache: dict[str, Route[M]] = {}
        self._cache_size = cache_size
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, pattern: str, member: M) -> None:
        """Index `member` under `pattern` (validated)."""
        tokens = validate_pattern(pattern)
        node = self._root
        for token in tokens:
            node = self._child(node, token)
        node.members.append(member)
        self._count += 1
        self._invalidate(pattern, tokens)

    def remove(self, pattern: str, member: M) -> bool:
        """Remove `member` from `pattern`; prune emptied nodes. False if it was not there."""
        tokens = pattern.split(".")
        path: list[tuple[_Node[M], str]] = []
        node = self._root
        for token in tokens:
            path.append((node, token))
            if token == "*":
                child = node.star
            elif token == ">":
                child = node.tail
            else:
                child = node.children.get(token)
            if child is None:
                return False
            node = child
        try:
            node.members.remove(member)
        except ValueError:
            return False
        self._count -= 1
        for parent, token in reversed(path):
            if not node.is_empty():
                break
            if token == "*":
                parent.star = None
            elif token == ">":
                parent.tail = None
            else:
                del parent.children[token]
            node = parent
        self._invalidate(pattern, tokens)
        return True

    def route(self, subject: str) -> Route[M]:
        """The subscribers of publish `subject` (validated on first sight, then cached)."""
        route = self._cache.get(subject)
        if route is not None:
            return route
        tokens = validate_subject(subject)
        found: list[M] = []
        self._collect(self._root, tokens, 0, found)
        plain: list[M] = []
        groups: dict[str, list[M]] = {}
        for member in found:
            queue = member.queue
            if queue is None:
                plain.append(member)
            else:
                groups.setdefault(queue, []).append(member)
        route = Route(tuple(plain), tuple(tuple(group) for group in groups.values()))
        if len(self._cache) >= self._cache_size:
            self._cache.clear()
        self._cache[subject] = route
        return route

    @staticmethod
    def _child(node: _Node[M], token: str) -> _Node[M]:
        if token == "*":
            if node.star is None:
                node.star = _Node()
            return node.star
        if token == ">":
            if node.tail is None:
                node.tail = _Node()
            return node.tail
        child = node.children.get(token)
        if child is None:
            child = node.children[token] = _Node()
        return child

    def _collect(self, node: _Node[M], tokens: list[str], index: int, found: list[M]) -> None:
        if node.tail is not None and index < len(tokens):
            found.extend(node.tail.members)
        if index == len(tokens):
            found.extend(node.members)
            return
        child = node.children.get(tokens[index])
        if child is not None:
            self._collect(child, tokens, index + 1, found)
        if node.star is not None:
            self._collect(node.star, tokens, index + 1, found)

    def _invalidate(self, pattern: str, tokens: list[str]) -> None:
        if "*" in tokens or ">" in tokens:
            self._cache.clear()
        else:
            self._cache.pop(pattern, None)
