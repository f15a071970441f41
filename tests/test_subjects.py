"""NATS subject rules and the subject index, checked against a brute-force reference."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brokers import (
    InvalidSubjectError,
    subject_matches,
    validate_pattern,
    validate_queue,
    validate_subject,
)
from brokers._subject_index import SubjectIndex

TOKENS = st.sampled_from(["a", "b", "c", "orders", "foo*", "x>"])
SUBJECTS = st.lists(TOKENS, min_size=1, max_size=5).map(".".join)


@st.composite
def patterns(draw: st.DrawFn) -> str:
    tokens = draw(st.lists(st.one_of(TOKENS, st.just("*")), min_size=1, max_size=5))
    if draw(st.booleans()):
        tokens.append(">")
    return ".".join(tokens)


def reference_match(pattern: str, subject: str) -> bool:
    """Straight from the NATS documentation, written independently of the library."""
    p, s = pattern.split("."), subject.split(".")
    if p[-1] == ">":
        return len(s) >= len(p) and all(a in ("*", b) for a, b in zip(p[:-1], s, strict=False))
    return len(p) == len(s) and all(a in ("*", b) for a, b in zip(p, s, strict=True))


class Member:
    def __init__(self, queue: str | None = None) -> None:
        self.queue = queue


@pytest.mark.parametrize(
    ("pattern", "subject", "expected"),
    [
        ("foo.bar", "foo.bar", True),
        ("foo.*", "foo.bar", True),
        ("foo.*", "foo.bar.baz", False),
        ("foo.>", "foo.bar.baz", True),
        ("foo.>", "foo", False),
        (">", "foo", True),
        ("*.bar", "foo.bar", True),
        ("foo*", "foo*", True),
        ("foo*", "fooX", False),
        ("*", "a.b", False),
    ],
)
def test_wildcards_follow_nats(pattern: str, subject: str, expected: bool) -> None:
    assert subject_matches(pattern, subject) is expected
    index: SubjectIndex[Member] = SubjectIndex()
    member = Member()
    index.add(pattern, member)
    assert (member in index.route(subject).fixed) is expected


@pytest.mark.parametrize(
    "subject", ["", "foo..bar", ".foo", "foo.", "foo bar", "foo\tbar", "a\nb", "x" * 5000]
)
def test_invalid_subjects_are_refused(subject: str) -> None:
    with pytest.raises(InvalidSubjectError):
        validate_subject(subject)
    with pytest.raises(InvalidSubjectError):
        validate_pattern(subject)


@pytest.mark.parametrize("subject", ["foo.*", "foo.>", "*", ">"])
def test_publish_subjects_have_no_wildcards(subject: str) -> None:
    with pytest.raises(InvalidSubjectError, match="wildcard"):
        validate_subject(subject)
    validate_pattern(subject)


def test_full_wildcard_only_last() -> None:
    with pytest.raises(InvalidSubjectError, match="last token"):
        validate_pattern("foo.>.bar")


def test_subject_must_be_str() -> None:
    with pytest.raises(InvalidSubjectError, match="str"):
        validate_subject(b"foo")


@pytest.mark.parametrize("queue", ["", "a b", "q\n"])
def test_invalid_queue_names(queue: str) -> None:
    with pytest.raises(InvalidSubjectError):
        validate_queue(queue)


@given(pattern=patterns(), subject=SUBJECTS)
def test_matching_agrees_with_reference(pattern: str, subject: str) -> None:
    assert subject_matches(pattern, subject) is reference_match(pattern, subject)


@settings(max_examples=200)
@given(
    entries=st.lists(st.tuples(patterns(), st.sampled_from([None, "q1", "q2"])), max_size=12),
    subjects=st.lists(SUBJECTS, min_size=1, max_size=6),
    removals=st.lists(st.integers(min_value=0, max_value=11), max_size=6),
)
def test_index_routes_like_brute_force(
    entries: list[tuple[str, str | None]], subjects: list[str], removals: list[int]
) -> None:
    """Whatever the order of adds, lookups (which fill the cache) and removals, the index
    answers exactly what a scan of every subscription would."""
    index: SubjectIndex[Member] = SubjectIndex(cache_size=4)
    live: list[tuple[str, Member]] = []
    for pattern, queue in entries:
        member = Member(queue)
        index.add(pattern, member)
        live.append((pattern, member))
        for subject in subjects:
            index.route(subject)  # fill the cache between changes
    for position in removals:
        if position < len(live):
            pattern, member = live.pop(position)
            assert index.remove(pattern, member)
            index.route(subjects[0])
    assert len(index) == len(live)
    for subject in subjects:
        route = index.route(subject)
        expected = [m for p, m in live if reference_match(p, subject)]
        expected_plain = {id(m) for m in expected if m.queue is None}
        assert {id(m) for m in route.plain} == expected_plain
        expected_groups: dict[str, set[int]] = {}
        for m in expected:
            if m.queue is not None:
                expected_groups.setdefault(m.queue, set()).add(id(m))
        got_groups = [{id(m) for m in g} for g in route.groups]
        got_groups += [{id(m)} for m in route.fixed if m.queue is not None]
        assert sorted(map(sorted, got_groups)) == sorted(map(sorted, expected_groups.values()))
        assert route.empty is (not expected)


def test_remove_prunes_nodes() -> None:
    index: SubjectIndex[Member] = SubjectIndex()
    members = [Member() for _ in range(100)]
    for number, member in enumerate(members):
        index.add(f"actors.{number}.inbox", member)
    for number, member in enumerate(members):
        assert index.remove(f"actors.{number}.inbox", member)
    assert index._root.is_empty()
    assert not index.remove("actors.1.inbox", members[1])
