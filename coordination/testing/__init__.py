"""Helpers for testing workflows: the history checker that judges, from what the services
did, whether every instance ended consistent (the chaos suite's verdict)."""

from ._history import History, HistoryRules, HistoryVerdict

__all__ = ("History", "HistoryRules", "HistoryVerdict")
