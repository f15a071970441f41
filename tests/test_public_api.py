"""The public API: every name in `__all__` exists, and nothing private leaks into it."""

from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize("package", ["actors", "brokers", "coordination", "benchmarks"])
def test_all_names_exist(package: str) -> None:
    module = importlib.import_module(package)
    names = getattr(module, "__all__", ())
    assert isinstance(names, tuple)
    assert list(names) == sorted(names, key=lambda n: (not n.isupper(), n))
    for name in names:
        assert not name.startswith("_")
        assert hasattr(module, name), f"{package}.{name} is in __all__ but missing"


def test_errors_share_one_root_and_mix_in_builtins() -> None:
    import actors
    import brokers

    assert issubclass(brokers.NoRespondersError, LookupError)
    assert issubclass(brokers.BusTimeoutError, TimeoutError)
    assert issubclass(actors.AskTimeoutError, TimeoutError)
    assert issubclass(brokers.InvalidSubjectError, ValueError)
    for package in (actors, brokers):
        for name in package.__all__:
            obj = getattr(package, name)
            if isinstance(obj, type) and issubclass(obj, Exception):
                assert issubclass(obj, brokers.CorpsError), name


def test_internals_stay_out_of_the_public_names() -> None:
    import actors
    import brokers
    import coordination

    for package, internal in [
        (brokers, {"prechecked_publish", "MemorySubscription", "NatsSubscription"}),
        (actors, {"dispatch"}),
        (coordination, {"InstanceState", "Choreography", "CommandPort"}),
    ]:
        assert not internal & set(package.__all__), package.__name__


@pytest.mark.parametrize(
    "name", ["Mediator", "FrontController", "StampCoupled", "QueryAll", "EventSourced", "Hybrid"]
)
def test_a_strategy_shows_its_user_only_the_strategy_api(name: str) -> None:
    """`help(Mediator)` lists what a user calls, and no hook of the machinery behind it."""
    import pydoc
    import re

    import coordination

    text = pydoc.render_doc(getattr(coordination, name), renderer=pydoc.plaintext)
    shown = set(re.findall(r"^ \|  (?:async )?([a-z]\w*)\(", text, re.MULTILINE))
    api = {"start", "status", "result", "cancel", "pause", "resume", "signal", "stuck"}
    assert shown == api
