"""NATS subject rules: validation and wildcard matching.

Subjects are tokens separated by `.`. In a subscription pattern a token `*` matches exactly one
token and a final token `>` matches one or more trailing tokens. A wildcard character inside a
longer token (`foo*`) is a literal, as on nats-server. Publish subjects hold no wildcard tokens.
Both buses use these functions, so the in-memory bus refuses exactly what NATS refuses.
"""

from __future__ import annotations

from ._errors import InvalidSubjectError

__all__ = (
    "MAX_SUBJECT_LENGTH",
    "subject_matches",
    "validate_pattern",
    "validate_queue",
    "validate_subject",
)

MAX_SUBJECT_LENGTH = 4096
"""Longest subject accepted: nats-server's default control line is 4 KiB."""

_WHITESPACE = frozenset(" \t\r\n\f\v")


def _tokens(subject: object, what: str) -> list[str]:
    if not isinstance(subject, str):
        raise InvalidSubjectError(f"{what} must be a str, not {type(subject).__name__}")
    if not subject:
        raise InvalidSubjectError(f"{what} must not be empty")
    if len(subject) > MAX_SUBJECT_LENGTH:
        raise InvalidSubjectError(
            f"{what} is {len(subject)} characters long; the limit is {MAX_SUBJECT_LENGTH}"
        )
    if not _WHITESPACE.isdisjoint(subject):
        raise InvalidSubjectError(f"{what} {subject!r} contains whitespace")
    tokens = subject.split(".")
    if "" in tokens:
        raise InvalidSubjectError(f"{what} {subject!r} has an empty token")
    return tokens


def validate_subject(subject: object) -> list[str]:
    """Check a publish subject (no wildcards) and return its tokens.

    Raises InvalidSubjectError with the reason when the subject is not valid.
    """
    tokens = _tokens(subject, "subject")
    if "*" in tokens or ">" in tokens:
        raise InvalidSubjectError(f"cannot publish to {subject!r}: it contains a wildcard token")
    return tokens


def validate_pattern(pattern: object) -> list[str]:
    """Check a subscription pattern and return its tokens.

    Raises InvalidSubjectError when the pattern is not valid, for example when `>` is not the
    last token.
    """
    tokens = _tokens(pattern, "subject")
    for index, token in enumerate(tokens):
        if token == ">" and index != len(tokens) - 1:
            raise InvalidSubjectError(f"{pattern!r}: '>' is only allowed as the last token")
    return tokens


def validate_queue(queue: object) -> str:
    """Check a queue group name: a non-empty string without whitespace."""
    if not isinstance(queue, str):
        raise InvalidSubjectError(f"queue group must be a str, not {type(queue).__name__}")
    if not queue or not _WHITESPACE.isdisjoint(queue):
        raise InvalidSubjectError(f"invalid queue group name {queue!r}")
    return queue


def subject_matches(pattern: str, subject: str) -> bool:
    """Tell whether a valid publish `subject` matches a valid subscription `pattern`."""
    pattern_tokens = pattern.split(".")
    subject_tokens = subject.split(".")
    for index, token in enumerate(pattern_tokens):
        if token == ">":
            return len(subject_tokens) > index
        if index >= len(subject_tokens):
            return False
        if token != "*" and token != subject_tokens[index]:
            return False
    return len(subject_tokens) == len(pattern_tokens)
