"""The history checker finds each kind of anomaly, and only those."""

from __future__ import annotations

from coordination import History, HistoryRules, Outcome

RULES = HistoryRules(
    undone_by={"charge": "refund", "ship": "restock"},
    on_completion=("charge", "ship", "email"),
)


def history_of(*workflows: tuple[str, Outcome | None, list[str]]) -> History:
    history = History()
    for key, outcome, effects in workflows:
        history.started(key)
        for effect in effects:
            history.effect(key, effect)
        if outcome is not None:
            history.ended(key, outcome)
    return history


def test_correct_ends_pass() -> None:
    verdict = history_of(
        ("o1", Outcome.COMPLETED, ["charge", "ship", "email"]),
        ("o2", Outcome.COMPENSATED, ["charge", "refund"]),
        ("o3", Outcome.FAILED, []),
        ("o4", Outcome.CANCELLED, ["charge", "ship", "restock", "refund"]),
    ).check(RULES)
    assert verdict.ok, verdict.summary()
    assert verdict.started == 4
    assert verdict.outcomes[Outcome.COMPLETED] == 1
    assert "no anomaly" in verdict.summary()


def test_a_workflow_that_never_ended_is_lost() -> None:
    verdict = history_of(
        ("o1", None, ["charge"]), ("o2", Outcome.RUNNING, []), ("o3", Outcome.FAILED, [])
    ).check(RULES)
    assert verdict.lost == ["o1", "o2"]
    history = history_of(("o1", None, []), ("o2", Outcome.COMPLETED, []))
    assert history.unended() == [("o1", "")]
    assert not verdict.ok
    assert "lost 2: o1, o2" in verdict.summary()


def test_an_effect_applied_twice_is_duplicated() -> None:
    verdict = history_of(
        ("o1", Outcome.COMPLETED, ["charge", "charge", "ship", "email"]),
    ).check(RULES)
    assert verdict.duplicated == ["o1 (charge)"]
    assert verdict.inconsistent == []


def test_an_effect_without_a_workflow_is_unexpected() -> None:
    history = history_of(("o1", Outcome.FAILED, []))
    history.effect("ghost", "charge")
    verdict = history.check(RULES)
    assert verdict.unexpected == ["ghost (charge)"]


def test_ends_the_effects_contradict_are_inconsistent() -> None:
    verdict = history_of(
        ("left", Outcome.COMPENSATED, ["charge", "ship", "restock"]),  # the refund is missing
        ("short", Outcome.COMPLETED, ["charge", "ship"]),  # no email
        ("undone", Outcome.COMPLETED, ["charge", "ship", "email", "refund"]),
        ("orphan", Outcome.FAILED, ["refund"]),  # a refund without a charge
        ("fine", Outcome.COMPENSATED, ["charge", "refund"]),
    ).check(RULES)
    assert verdict.inconsistent == [
        "left (compensated: charge not undone)",
        "short (completed: missing email)",
        "undone (completed: completed, yet refund)",
        "orphan (failed: refund without charge)",
    ]


def test_needs_attention_is_counted_apart_not_inconsistent() -> None:
    verdict = history_of(("o1", Outcome.NEEDS_ATTENTION, ["charge", "ship", "restock"])).check(
        RULES
    )
    assert verdict.ok
    assert verdict.needs_attention == 1
