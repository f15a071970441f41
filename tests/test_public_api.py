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
