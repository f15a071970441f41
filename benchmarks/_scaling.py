"""`--scaling`: how each strategy's cost grows with the number of steps (a synthetic chain of
2, 4, 8, 16), with the workflows in flight (1 to 1000 clients), and what a status query costs
as participants are added (query-all asks each)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ._scenarios import SCENARIOS, chain
from ._strategy_cases import run_strategy

__all__ = ("IN_FLIGHT", "STEPS", "Scaling", "measure_scaling", "print_scaling")

STEPS = (2, 4, 8, 16)
IN_FLIGHT = (1, 10, 100, 1000)


@dataclass(slots=True)
class Scaling:
    duration: float
    by_steps: dict[str, dict[int, float]] = field(default_factory=dict)
    """Workflows/s of a chain of n steps, per strategy."""
    status_by_steps: dict[str, dict[int, tuple[float, float]]] = field(default_factory=dict)
    """(seconds, messages) of one status query, per strategy and number of participants."""
    by_in_flight: dict[str, dict[int, tuple[float, float]]] = field(default_factory=dict)
    """(workflows/s, p99 seconds) of order placement with n clients, per strategy."""

    def as_json(self) -> dict[str, object]:
        return {
            "duration_s": self.duration,
            "workflows_per_s_by_steps": self.by_steps,
            "status_by_participants": {
                name: {n: {"seconds": s, "messages": m} for n, (s, m) in values.items()}
                for name, values in self.status_by_steps.items()
            },
            "by_in_flight": {
                name: {n: {"workflows_per_s": w, "p99_s": p} for n, (w, p) in values.items()}
                for name, values in self.by_in_flight.items()
            },
        }


async def measure_scaling(
    strategies: Sequence[str], duration: float, step: Callable[[str], None]
) -> Scaling:
    """One run per point: these are shapes (how a figure grows), not precise figures."""
    scaling = Scaling(duration)
    for name in strategies:
        for steps in STEPS:
            run = await run_strategy(name, chain(steps), duration=duration, extras=False)
            scaling.by_steps.setdefault(name, {})[steps] = run.workflows_per_s
            scaling.status_by_steps.setdefault(name, {})[steps] = (
                run.status_seconds,
                run.status_messages,
            )
        step(f"scaling: {name} by steps")
        for clients in IN_FLIGHT:
            run = await run_strategy(
                name,
                SCENARIOS["order-placement"],
                duration=duration,
                clients=clients,
                extras=False,
            )
            scaling.by_in_flight.setdefault(name, {})[clients] = (run.workflows_per_s, run.p99)
        step(f"scaling: {name} by workflows in flight")
    return scaling


def print_scaling(scaling: Scaling) -> None:
    steps = " ".join(f"{n:>8}" for n in STEPS)
    print(f"\nscaling (one {scaling.duration:g} s run per point): workflows/s by steps in a chain")
    print(f"{'strategy':<17} {steps}   status us / messages by participants")
    for name, values in scaling.by_steps.items():
        status = "  ".join(
            f"{s * 1e6:.0f}/{m:.0f}" for s, m in scaling.status_by_steps[name].values()
        )
        print(f"{name:<17} " + " ".join(f"{values[n]:>8,.0f}" for n in STEPS) + f"   {status}")
    flights = " ".join(f"{n:>15}" for n in IN_FLIGHT)
    print("\nscaling: order placement, workflows/s and p99 ms by workflows in flight")
    print(f"{'strategy':<17} {flights}")
    for name, points in scaling.by_in_flight.items():
        cells = []
        for throughput, p99 in points.values():
            cell = f"{throughput:,.0f} / {p99 * 1e3:.1f}"
            cells.append(f"{cell:>15}")
        print(f"{name:<17} {' '.join(cells)}")
