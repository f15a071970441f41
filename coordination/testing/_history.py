"""A history checker in the style of Jepsen's: after a run with faults, did every workflow end
correctly, and did every service effect happen exactly as often as it should?

A run records two things into a `History`: each workflow started (with its business key, e.g.
the order id) and how it ended, and each effect a service applied (`key`, `effect`), written
where the effect is applied, after any de-duplication. `History.check(rules)` then reports:

- lost: started, and never reached a terminal outcome;
- duplicated: an effect applied more than once for the same key;
- unexpected: an effect for a key no workflow was started for;
- inconsistent: an end that the effects contradict, e.g. a charge without its refund after
  compensation, a refund without a charge, or a completed workflow missing an effect.

A workflow that ended NEEDS_ATTENTION is not counted as inconsistent: it says itself that
something is left undone, which is the point of the state. It is counted apart.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from .._status import Outcome

__all__ = ("History", "HistoryRules", "HistoryVerdict")


@dataclass(frozen=True, slots=True)
class HistoryRules:
    """What a correct end looks like, in effects.

    `undone_by` pairs an effect with the effect that undoes it (`{"charge": "refund"}`);
    `on_completion` lists the effects a completed workflow must have applied. An effect named
    in neither may happen at most once and is otherwise free.
    """

    undone_by: Mapping[str, str] = field(default_factory=dict)
    on_completion: tuple[str, ...] = ()


@dataclass(slots=True)
class HistoryVerdict:
    """What `History.check` found: every list names keys with the reason, empty when correct."""

    started: int
    outcomes: Counter[Outcome]
    lost: list[str]
    duplicated: list[str]
    unexpected: list[str]
    inconsistent: list[str]

    @property
    def ok(self) -> bool:
        """No workflow lost, no effect twice, none unexpected, none inconsistent."""
        return not (self.lost or self.duplicated or self.unexpected or self.inconsistent)

    @property
    def needs_attention(self) -> int:
        return self.outcomes[Outcome.NEEDS_ATTENTION]

    def summary(self) -> str:
        ended = ", ".join(f"{o.value} {n}" for o, n in sorted(self.outcomes.items(), key=_by))
        problems = [
            f"{name} {len(found)}: {', '.join(found[:5])}{' ...' if len(found) > 5 else ''}"
            for name, found in (
                ("lost", self.lost),
                ("duplicated", self.duplicated),
                ("unexpected", self.unexpected),
                ("inconsistent", self.inconsistent),
            )
            if found
        ]
        verdict = "; ".join(problems) if problems else "no anomaly"
        return f"{self.started} started ({ended or 'none ended'}): {verdict}"


def _by(item: tuple[Outcome, int]) -> str:
    return item[0].value


class History:
    """Workflows started and ended, and effects applied, in one run."""

    def __init__(self) -> None:
        self._started: dict[str, str] = {}  # key -> workflow id
        self._ended: dict[str, Outcome] = {}
        self._effects: dict[str, list[str]] = {}

    def started(self, key: str, workflow_id: str = "") -> None:
        self._started[key] = workflow_id

    def ended(self, key: str, outcome: Outcome) -> None:
        self._ended[key] = outcome

    def effect(self, key: str, effect: str) -> None:
        """Record that a service applied `effect` for `key`: call it where the effect happens."""
        applied = self._effects.get(key)
        if applied is None:
            self._effects[key] = [effect]
        else:
            applied.append(effect)

    def effects(self, key: str) -> list[str]:
        return list(self._effects.get(key, ()))

    def unended(self) -> list[tuple[str, str]]:
        """The (key, workflow id) of every workflow started and not seen to end."""
        ended = self._ended
        return [(key, wid) for key, wid in self._started.items() if key not in ended]

    def check(self, rules: HistoryRules) -> HistoryVerdict:
        verdict = HistoryVerdict(len(self._started), Counter(), [], [], [], [])
        undoes = {undo: do for do, undo in rules.undone_by.items()}
        for key in self._started:
            outcome = self._ended.get(key)
            applied = Counter(self._effects.get(key, ()))
            twice = sorted(effect for effect, n in applied.items() if n > 1)
            if twice:
                verdict.duplicated.append(f"{key} ({', '.join(twice)})")
            if outcome is None or outcome is Outcome.RUNNING:
                verdict.lost.append(key)
                continue
            verdict.outcomes[outcome] += 1
            why = _contradiction(outcome, applied, rules, undoes)
            if why is not None:
                verdict.inconsistent.append(f"{key} ({outcome.value}: {why})")
        verdict.unexpected.extend(
            f"{key} ({', '.join(effects)})"
            for key, effects in self._effects.items()
            if key not in self._started
        )
        return verdict


def _contradiction(
    outcome: Outcome,
    applied: Counter[str],
    rules: HistoryRules,
    undoes: Mapping[str, str],
) -> str | None:
    """Why `applied` cannot be the effects of a workflow that ended `outcome`, or None."""
    for undo, do in undoes.items():
        if applied[undo] and not applied[do]:
            return f"{undo} without {do}"
    if outcome is Outcome.NEEDS_ATTENTION:
        return None  # it says itself what is left undone
    if outcome is Outcome.COMPLETED:
        missing = [effect for effect in rules.on_completion if not applied[effect]]
        if missing:
            return f"missing {', '.join(missing)}"
        undone = [undo for undo in undoes if applied[undo]]
        if undone:
            return f"completed, yet {', '.join(undone)}"
        return None
    left = [do for do, undo in rules.undone_by.items() if applied[do] and not applied[undo]]
    if left:
        return f"{', '.join(left)} not undone"
    return None
