"""Idempotent handlers with a store: a resent command is answered with its first reply after
the instance was replaced (a crash) and after the process restarted, without acting again."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors import (
    Actor,
    ActorSystem,
    Directive,
    HandlerError,
    IdempotencyStore,
    MemoryIdempotencyStore,
    Message,
    Request,
    SqliteIdempotencyStore,
    SupervisorPolicy,
    idempotent,
)
from brokers import Bus

pytestmark = pytest.mark.anyio


class Receipt(Message):
    number: int
    card: str


class Declined(Message):
    why: str


class ChargeCard(Request[Receipt | Declined]):
    card: str


class Crash(Request[None]):
    pass


RESTART = SupervisorPolicy(Directive.RESTART, backoff_initial=0)
"""A crash replaces the instance (the default directive would keep it)."""


class Ledger(Actor):
    """Charges cards; the charges go to `effects`, which stands for a payment provider."""

    def __init__(self, effects: list[str], store: IdempotencyStore | None) -> None:
        self.effects = effects
        self.idempotency = store

    @idempotent
    async def charge(self, msg: ChargeCard) -> Receipt | Declined:
        if msg.card == "stolen":
            return Declined("reported stolen")
        self.effects.append(msg.card)
        return Receipt(len(self.effects), msg.card)

    async def crash(self, msg: Crash) -> None:
        raise RuntimeError("the instance dies and a fresh one replaces it")


async def test_a_store_keeps_replies_across_a_crash_of_the_instance(bus: Bus) -> None:
    effects: list[str] = []
    store = MemoryIdempotencyStore()
    async with ActorSystem(bus) as system:
        ledger = await system.spawn(
            lambda: Ledger(effects, store), name="ledger", supervision=RESTART
        )
        first = await ledger.ask(ChargeCard("visa"), message_id="m1")
        with pytest.raises(HandlerError):
            await ledger.ask(Crash())  # a fresh instance from here on
        again = await ledger.ask(ChargeCard("visa"), message_id="m1")
        other = await ledger.ask(ChargeCard("visa"), message_id="m2")
    assert first == again == Receipt(1, "visa")  # the typed first reply
    assert other == Receipt(2, "visa")
    assert effects == ["visa", "visa"]  # m1 once, m2 once
    assert len(store) == 2


async def test_without_a_store_a_fresh_instance_has_forgotten(bus: Bus) -> None:
    """What the store is for: the default memory is the instance's own."""
    effects: list[str] = []
    async with ActorSystem(bus) as system:
        ledger = await system.spawn(
            lambda: Ledger(effects, None), name="ledger", supervision=RESTART
        )
        await ledger.ask(ChargeCard("visa"), message_id="m1")
        await ledger.ask(ChargeCard("visa"), message_id="m1")
        assert effects == ["visa"]
        with pytest.raises(HandlerError):
            await ledger.ask(Crash())
        await ledger.ask(ChargeCard("visa"), message_id="m1")
    assert effects == ["visa", "visa"]


async def test_sqlite_keeps_replies_across_a_restart_of_the_process(
    bus: Bus, tmp_path: Path
) -> None:
    effects: list[str] = []
    path = tmp_path / "replies.db"
    for _ in range(2):  # two runs of the service, as two processes would be
        store = SqliteIdempotencyStore(path, "ledger")
        async with ActorSystem(bus) as system:
            ledger = await system.spawn(lambda store=store: Ledger(effects, store), name="ledger")
            assert await ledger.ask(ChargeCard("visa"), message_id="m1") == Receipt(1, "visa")
            assert await ledger.ask(ChargeCard("stolen"), message_id="m2") == Declined(
                "reported stolen"
            )
        store.close()
    assert effects == ["visa"]
    other = SqliteIdempotencyStore(path, "another-actor")  # actors keep their own replies
    assert await other.recall("charge:m1") is None
    other.close()
