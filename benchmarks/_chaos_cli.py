"""`python -m benchmarks chaos` (and `make chaos`): every fault, then the fault table."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from dataclasses import replace

from ._chaos import (
    FAULTS,
    QUICK,
    ChaosSettings,
    FaultReport,
    fault_table,
    run_fault,
)
from ._chaos_faults import Schedule
from ._strategy_cases import STRATEGIES

__all__ = ("chaos_main",)


def _parse(argv: list[str]) -> argparse.Namespace:
    defaults = ChaosSettings()
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks chaos",
        description=(
            "Run order-placement workflows under the Mediator while faults are injected, then "
            "check the history: every workflow must reach a correct end (none lost) and every "
            "service effect must happen once (none duplicated, none unexpected, every refund "
            "matching a charge). Exits 1 when any anomaly is found."
        ),
    )
    parser.add_argument(
        "--faults", nargs="+", choices=FAULTS, default=list(FAULTS), help="the faults to run"
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=defaults.duration,
        help="seconds orders are started while a fault strikes (default %(default)s)",
    )
    parser.add_argument(
        "--clients", type=int, default=defaults.clients, help="orders in flight (%(default)s)"
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=defaults.settle,
        help="seconds every order then has to end before it counts as lost (%(default)s)",
    )
    parser.add_argument(
        "--every",
        type=float,
        nargs=2,
        default=defaults.schedule.every,
        metavar=("MIN", "MAX"),
        help="seconds between two broker faults, drawn uniformly (default 5 20)",
    )
    parser.add_argument(
        "--down",
        type=float,
        nargs=2,
        default=defaults.schedule.down,
        metavar=("MIN", "MAX"),
        help="seconds a broker fault lasts, drawn uniformly (default 0 5)",
    )
    parser.add_argument(
        "--strategies",
        nargs="+",
        choices=sorted(STRATEGIES),
        default=["mediator"],
        help="the strategies the faults run under (mediator-kill: the Mediator only; default: "
        "mediator)",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed, help="random seed")
    parser.add_argument(
        "--quick", action="store_true", help="the short version the tests run (3 s per fault)"
    )
    parser.add_argument("--json", metavar="PATH", help="write every figure as JSON")
    parser.add_argument("--verbose", action="store_true", help="show the library's warnings")
    return parser.parse_args(argv)


def chaos_main(argv: list[str]) -> int:
    args = _parse(argv)
    logging.basicConfig(level=logging.WARNING if args.verbose else logging.CRITICAL)
    settings = (
        QUICK
        if args.quick
        else ChaosSettings(
            duration=args.duration,
            clients=args.clients,
            settle=args.settle,
            seed=args.seed,
            schedule=Schedule((args.every[0], args.every[1]), (args.down[0], args.down[1])),
        )
    )
    reports: list[FaultReport] = []
    runs = [
        (fault, strategy)
        for fault in args.faults
        for strategy in (args.strategies if fault != "mediator-kill" else ["mediator"])
    ]
    for fault, strategy in dict.fromkeys(runs):
        began = time.monotonic()
        print(f"{fault} ({strategy}) ...", end="", flush=True, file=sys.stderr)
        report = asyncio.run(run_fault(fault, replace(settings, strategy=strategy)))
        reports.append(report)
        verdict = report.verdict
        print(
            f"\r{fault} ({strategy}): {report.injected:,} {report.detail}; {verdict.summary()} "
            f"({time.monotonic() - began:.0f} s)",
            file=sys.stderr,
        )
    print()
    print(fault_table(reports))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump([report.as_dict() for report in reports], out, indent=2)
    return 0 if all(report.verdict.ok for report in reports) else 1
