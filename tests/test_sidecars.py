"""Handlers added to a running actor (a sidecar), and calling an actor's own handler from one."""

from __future__ import annotations

from typing import Any

import pytest

from actors import (
    Actor,
    ActorNotFoundError,
    ActorSystem,
    InvalidActorError,
    Message,
    Request,
    UnhandledMessageError,
    current_message,
    idempotent,
)
from actors._dispatch import dispatch
from brokers import Bus, InvalidHeaderError

from .actors_fixtures import Add, Counter, GetTotal
from .helpers import until

pytestmark = pytest.mark.anyio


class Double(Message, tag="test.Double"):
    """Not a Counter message: a sidecar adds it."""


class Charge(Request[int]):
    amount: int


class Wallet(Actor):
    def __init__(self) -> None:
        self.charged = 0
        self.ids: list[str | None] = []

    @idempotent
    async def charge(self, msg: Charge) -> int:
        seen = current_message()
        self.ids.append(seen.message_id if seen else None)
        self.charged += msg.amount
        return self.charged


class ChargeTwice(Message, tag="test.ChargeTwice"):
    amount: int


async def test_added_handlers_run_in_the_actors_mailbox(bus: Bus) -> None:
    async with ActorSystem(bus) as system:
        counter = await system.spawn(Counter, name="counter")
        seen: list[Actor] = []

        async def double(actor: Any, msg: Double) -> None:
            seen.append(actor)
            actor.total *= 2

        extended = system.add_handlers("counter", {Double: double})
        await extended.tell(Add(3))
        await extended.tell(Double())
        assert await extended.ask(GetTotal()) == 6  # in order, with the actor's own messages
        assert isinstance(seen[0], Counter)
        with pytest.raises(UnhandledMessageError):
            await counter.tell(Double())  # a ref taken before does not know the new type
        system.remove_handlers("counter", [Double])
        with pytest.raises(UnhandledMessageError):
            await system.actors["counter"].tell(Double())
        assert await system.actors["counter"].ask(GetTotal()) == 6


async def test_adding_handlers_is_refused_clearly() -> None:
    async with ActorSystem() as system:
        await system.spawn(Counter, name="counter")

        async def nothing(actor: Any, msg: Any) -> None:
            return None

        with pytest.raises(ActorNotFoundError):
            system.add_handlers("nobody", {Double: nothing})
        with pytest.raises(InvalidActorError, match="already handles Add"):
            system.add_handlers("counter", {Add: nothing})
        system.remove_handlers("counter", [Add])  # the actor's own handlers stay
        assert await system.actors["counter"].ask(GetTotal()) == 0


async def test_dispatch_calls_the_actors_handler_with_the_given_ids() -> None:
    async with ActorSystem() as system:
        wallet = Wallet()
        await system.spawn(lambda: wallet, name="wallet")

        async def charge_twice(actor: Any, msg: ChargeTwice) -> None:
            for _ in range(2):  # the same message id: an idempotent handler acts once
                await dispatch(
                    actor, Charge(msg.amount), message_id="pay-1", correlation_id="order-1"
                )

        ref = system.add_handlers("wallet", {ChargeTwice: charge_twice})
        await ref.tell(ChargeTwice(5))
        await until(lambda: wallet.ids == ["pay-1"])
        assert wallet.charged == 5
        with pytest.raises(UnhandledMessageError):
            await dispatch(wallet, GetTotal(), message_id="x", correlation_id="y")
        with pytest.raises(InvalidHeaderError):  # ids the messages it sends would carry
            await dispatch(wallet, Charge(1), message_id="pay\n2", correlation_id="order-1")
        assert wallet.charged == 5
