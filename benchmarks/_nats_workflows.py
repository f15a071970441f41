"""Workflows on NATS: the corps strategies on a NatsBus beside the same steps hand-written on
raw nats-py request/reply (the floor on NATS), one connection each, in a closed loop."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import msgspec
import nats
from nats.aio.msg import Msg

from brokers import NatsBus

from ._scenarios import SCENARIOS
from ._stats import Sample
from ._strategy_cases import StrategyRun, run_strategy

__all__ = ("NATS_TARGET", "NatsComparison", "compare_on_nats", "print_nats", "raw_nats_workflow")

NATS_TARGET = 0.70
"""Each strategy's share of raw nats-py's workflows/s to reach on NATS."""


class _Step(msgspec.Struct, array_like=True):
    workflow: int
    number: int


async def raw_nats_workflow(url: str, steps: int, duration: float, clients: int = 100) -> float:
    """Workflows per second of `steps` sequential requests each, to a service per step that
    decodes and answers, msgpack on every hop, on one nats-py connection."""
    nc = await nats.connect(url)
    encode = msgspec.msgpack.encode
    decode = msgspec.msgpack.Decoder(_Step).decode
    try:

        def service() -> Callable[[Msg], Awaitable[None]]:
            async def answer(msg: Msg) -> None:
                step = decode(msg.data)
                await msg.respond(encode(_Step(step.workflow, step.number + 1)))

            return answer

        for number in range(steps):
            await nc.subscribe(f"bench.raw.wf.{number}", cb=service())
        await nc.flush()
        ids = itertools.count()
        done = [0]
        started = time.perf_counter()
        deadline = started + duration

        async def client() -> None:
            clock = time.perf_counter
            while clock() < deadline:
                workflow = next(ids)
                for number in range(steps):
                    reply = await nc.request(
                        f"bench.raw.wf.{number}", encode(_Step(workflow, number)), timeout=5
                    )
                    decode(reply.data)
                done[0] += 1

        await asyncio.gather(*(client() for _ in range(clients)))
        return done[0] / (time.perf_counter() - started)
    finally:
        await nc.close()


@dataclass(frozen=True, slots=True)
class NatsComparison:
    strategy: str
    runs: tuple[StrategyRun, ...]
    floor: Sample

    @property
    def throughput(self) -> Sample:
        return Sample(tuple(run.workflows_per_s for run in self.runs))

    @property
    def ratio(self) -> Sample:
        return self.throughput.ratio_to(self.floor)

    @property
    def met(self) -> bool:
        return self.ratio.median >= NATS_TARGET

    def as_json(self) -> dict[str, object]:
        return {
            "bus": "nats",
            "scenario": "order-placement",
            "strategy": self.strategy,
            "workflows_per_s": list(self.throughput.values),
            "floor_name": "raw nats-py request/reply",
            "floor": list(self.floor.values),
            "ratio_median": self.ratio.median,
            "target_ratio": NATS_TARGET,
            "met": self.met,
            "p99_s": Sample(tuple(run.p99 for run in self.runs)).median,
            "messages_per_workflow": self.runs[-1].messages_per_workflow,
        }


async def compare_on_nats(
    url: str,
    strategies: Sequence[str],
    duration: float,
    repeat: int,
    step: Callable[[str], None],
) -> list[NatsComparison]:
    """Order placement under each strategy on NATS, beside raw nats-py in each repetition."""
    scenario = SCENARIOS["order-placement"]
    steps = len(scenario.workflow.steps)
    floor: list[float] = []
    runs: dict[str, list[StrategyRun]] = {name: [] for name in strategies}
    for repetition in range(repeat):
        floor.append(await raw_nats_workflow(url, steps, duration))
        step("nats: raw nats-py workflow")
        for name in strategies:
            run = await run_strategy(
                name, scenario, duration=duration, extras=False, bus=lambda: NatsBus(url)
            )
            runs[name].append(run)
            step(f"nats: {name} ({repetition + 1}/{repeat})")
    return [NatsComparison(name, tuple(runs[name]), Sample(tuple(floor))) for name in strategies]


def print_nats(comparisons: list[NatsComparison], url: str, duration: float) -> None:
    if not comparisons:
        return
    print(
        f"\nstrategies on NatsBus ({url}): order-placement, 100 clients in a closed loop, "
        f"{duration:g} s per run; floor: the same steps on raw nats-py request/reply"
    )
    header = f"{'strategy':<17} {'workflows/s [min-max]':>22} {'floor':>8} {'ratio':>6}  target"
    print(header)
    print("-" * (len(header) + 12))
    for c in comparisons:
        wfs = c.throughput
        verdict = f">= {NATS_TARGET:.2f} {'ok' if c.met else 'MISSED'}"
        print(
            f"{c.strategy:<17} {f'{wfs.median:,.0f} [{wfs.low:,.0f}-{wfs.high:,.0f}]':>22}"
            f" {c.floor.median:>8,.0f} {c.ratio.median:>6.2f}  {verdict}"
        )
