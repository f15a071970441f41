"""The process the mediator-kill fault kills: a Mediator on an SQLite store that starts orders.

    python -m benchmarks._chaos_host NATS_URL DB PREFIX CLIENTS

It resumes whatever the store holds running, then starts orders `<PREFIX>-<n>` from CLIENTS
concurrent clients until a line `stop` arrives on stdin; then it waits for every order it
knows of to end and exits. It reports on stdout, one line each:

    started <order id> <workflow id>
    resumed <order id> <workflow id>      (an order the killed process left in flight)
    ended <order id> <outcome>
"""

from __future__ import annotations

import asyncio
import itertools
import random
import sys

from actors import ActorSystem
from brokers import NatsBus
from coordination import Mediator, SqliteStateStore
from coordination.scenarios.order_placement import PlaceOrder

from ._chaos import NORMAL_MIX
from ._chaos_services import chaos_workflow


def say(*words: str) -> None:
    print(*words, flush=True)


async def host(url: str, db: str, prefix: str, clients: int) -> None:
    workflow = chaos_workflow()
    store = SqliteStateStore(db, workflow)
    left = await store.running()  # what the process before this one left in flight
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_reader(sys.stdin.fileno(), lambda: _read_stop(stop))
    async with (
        NatsBus(url) as bus,
        ActorSystem(bus) as system,
        Mediator(system, workflow, store=store) as mediator,
    ):

        async def finish(order_id: str, workflow_id: str) -> None:
            result = await mediator.result(workflow_id)
            say("ended", order_id, result.outcome.value)

        waits = []
        for state in left:
            order_id = state.input.order_id
            say("resumed", order_id, state.workflow_id)
            waits.append(loop.create_task(finish(order_id, state.workflow_id)))
        numbers = itertools.count()
        rng = random.Random(prefix)
        kinds, weights = list(NORMAL_MIX), list(NORMAL_MIX.values())

        async def client() -> None:
            while not stop.is_set():
                customer, item = rng.choices(kinds, weights)[0]
                order_id = f"{prefix}-{next(numbers)}"
                workflow_id = await mediator.start(PlaceOrder(order_id, customer, item, 1, 1000))
                say("started", order_id, workflow_id)
                await finish(order_id, workflow_id)

        await asyncio.gather(*waits, *(client() for _ in range(clients)))
    store.close()


def _read_stop(stop: asyncio.Event) -> None:
    line = sys.stdin.readline()
    if not line or line.strip() == "stop":
        stop.set()
        asyncio.get_running_loop().remove_reader(sys.stdin.fileno())


if __name__ == "__main__":
    url, db, prefix, clients = sys.argv[1:]
    asyncio.run(host(url, db, prefix, int(clients)))
