"""A process that starts orders under one strategy on a NATS server, for the tests of several
starter processes sharing one workflow.

    python -m tests.order_starter NATS_URL STRATEGY COUNT TAG [hosted|durable|screened]

With `hosted`, a choreography's adapters run beside the services in their hosts
(`remote_sidecars=True`, see `tests.served.take_part`): this process keeps the start and the
end. `durable` is `hosted` with the events kept in JetStream (`durable_events=True`).
`screened` is `hosted` for the screened order placement, whose charge and reservation run in
parallel (see `tests.served.take_part_screened`): this process is their join.

It starts COUNT orders (every fifth customer declined, some items backordered), saying
`{"started": n}` once the first fifth are started, waits for
their results and checks each one's status, then prints one JSON line: its node and
`{workflow id: outcome}`. It then reads one JSON line on stdin, another starter's
`{workflow id: outcome}`, asks status and result of each of those instances (started by the
other process), prints `{"checked": n, "wrong": [...]}`, and exits at the next line on stdin.
"""

from __future__ import annotations

import asyncio
import json
import sys

from actors import ActorSystem
from benchmarks._strategy_cases import STRATEGIES
from brokers import NatsBus
from coordination import Outcome, Strategy
from coordination.scenarios.order_placement import (
    PlaceOrder,
    order_workflow,
    screened_order_workflow,
)

from .served import CHOREOGRAPHIES


def order(tag: str, number: int) -> PlaceOrder:
    customer = "mallory" if number % 5 == 0 else "ann"
    item = "rare" if number % 7 == 3 else "book"
    return PlaceOrder(f"{tag}-{number}", customer, item, 1, amount=1000)


def coordinator_for(system: ActorSystem, strategy: str, mode: str) -> Strategy[PlaceOrder]:
    workflow = screened_order_workflow if mode == "screened" else order_workflow
    if mode and strategy in CHOREOGRAPHIES:
        return CHOREOGRAPHIES[strategy](
            system, workflow, remote_sidecars=True, durable_events=mode == "durable"
        )
    return STRATEGIES[strategy](system, order_workflow)


async def main(url: str, strategy: str, count: int, tag: str, mode: str) -> None:
    async with (
        NatsBus(url) as bus,
        ActorSystem(bus) as system,
        coordinator_for(system, strategy, mode) as coordinator,
    ):
        adapters = [name for name in system.local_names() if name.endswith(".payment")]
        if mode and adapters:
            raise AssertionError(f"adapters run in the starter: {adapters}")
        ids = [await coordinator.start(order(tag, n)) for n in range(count // 5)]
        print(json.dumps({"started": len(ids)}), flush=True)  # a moment to strike at
        ids += [await coordinator.start(order(tag, n)) for n in range(len(ids), count)]
        try:
            results = await asyncio.gather(*(coordinator.result(i, timeout=60) for i in ids))
        except TimeoutError:
            for workflow_id in ids:  # where the instances that did not end stand
                status = await coordinator.status(workflow_id)
                if status.outcome is Outcome.RUNNING:
                    print(f"{workflow_id} has not ended: {status}", file=sys.stderr)
            raise
        wrong = []
        for workflow_id, result in zip(ids, results, strict=True):
            status = await coordinator.status(workflow_id)
            if status.outcome is not result.outcome:
                wrong.append(f"{workflow_id}: status {status.outcome}, result {result.outcome}")
        outcomes = {r.workflow_id: r.outcome.value for r in results}
        print(json.dumps({"node": system.node, "ids": outcomes, "wrong": wrong}), flush=True)
        theirs: dict[str, str] = json.loads(await asyncio.to_thread(sys.stdin.readline))
        for workflow_id, outcome in theirs.items():
            status = await coordinator.status(workflow_id)
            result = await coordinator.result(workflow_id, timeout=10)
            if status.outcome is None or status.outcome.value != outcome:
                wrong.append(f"{workflow_id}: status {status.outcome}, expected {outcome}")
            if result.outcome.value != outcome:
                wrong.append(f"{workflow_id}: result {result.outcome}, expected {outcome}")
        print(json.dumps({"checked": len(theirs), "wrong": wrong}), flush=True)
        await asyncio.to_thread(sys.stdin.readline)  # the other may still ask: stay till told


if __name__ == "__main__":
    url, strategy, count, tag, *mode = sys.argv[1:]
    if mode not in ([], ["hosted"], ["durable"], ["screened"]):
        raise SystemExit(f"unknown mode {mode}: hosted, durable or screened")
    asyncio.run(main(url, strategy, int(count), tag, mode[0] if mode else ""))
