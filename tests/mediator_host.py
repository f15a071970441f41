"""A second OS process hosting a Mediator on an SQLite store, for the crash tests.

    python -m tests.mediator_host NATS_URL DB start COUNT   # start COUNT orders, then wait
    python -m tests.mediator_host NATS_URL DB resume        # finish what the store holds

`start` prints "started" once every order is under way (and is killed by the test); `resume`
prints "resumed N", then one line per order it finished: "<workflow id> <outcome>".
"""

from __future__ import annotations

import asyncio
import sys

from actors import ActorSystem
from brokers import NatsBus
from coordination import Mediator, SqliteStateStore
from coordination.scenarios.order_placement import PlaceOrder, order_workflow


async def host(url: str, db: str, mode: str, count: int) -> None:
    store = SqliteStateStore(db, order_workflow)
    left = [state.workflow_id for state in await store.running()]  # what a crash left
    bus = NatsBus(url)
    async with (
        bus,
        ActorSystem(bus) as system,
        Mediator(system, order_workflow, store=store) as mediator,
    ):
        if mode == "start":
            ids = [
                await mediator.start(PlaceOrder(f"o{n}", "ann", "book", 1, 1000))
                for n in range(count)
            ]
            print("started", flush=True)
            for workflow_id in ids:
                await mediator.result(workflow_id)
            return
        print(f"resumed {mediator.resumed}", flush=True)
        for workflow_id in left:
            result = await mediator.result(workflow_id, timeout=30)
            print(workflow_id, result.outcome.value, flush=True)


if __name__ == "__main__":
    url, db, mode, *rest = sys.argv[1:]
    asyncio.run(host(url, db, mode, int(rest[0]) if rest else 0))
