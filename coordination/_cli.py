"""The `corps` command: `corps serve module.path:function` hosts services in this process."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from ._serve import CREDENTIALS, ServeError, ServeOptions, serve

__all__ = ("main",)

DEFAULT_SERVER = "nats://127.0.0.1:4222"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="corps", description="corps: asyncio actors and workflows on NATS."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    credentials = ", ".join(CREDENTIALS)
    serve_parser = commands.add_parser(
        "serve",
        help="host the services a function spawns, in this process, on NATS",
        description=(
            "Host services in this process. TARGET names a function, module.path:function, "
            "that takes the running ActorSystem and spawns this host's services (it may be "
            "async, and may return an async context manager, such as a strategy, entered "
            "until shutdown). A line on stderr says when everything listens. SIGTERM or "
            "SIGINT drains: messages already in mailboxes are handled, then the process "
            f"exits 0. Credentials come from the environment: {credentials}. Exit codes: 2 "
            "for a bad target or URL, 3 when no server can be reached, 4 when the target's "
            "build function raises (its traceback goes to stderr)."
        ),
    )
    serve_parser.add_argument(
        "target", metavar="TARGET", help="the function that spawns the services: module:function"
    )
    serve_parser.add_argument(
        "--nats",
        metavar="URL",
        action="append",
        help=(
            f"a NATS server to connect to (default {DEFAULT_SERVER}); repeat the option, or "
            "separate URLs with commas, for a cluster: the first reachable one is used, the "
            "others on failover"
        ),
    )
    serve_parser.add_argument(
        "--prefix",
        default="corps.actors",
        help="the subject prefix the actors listen under (default: %(default)s)",
    )
    serve_parser.add_argument(
        "--drain-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how long shutdown lets the mailboxes drain before cancelling (default: %(default)s)",
    )
    serve_parser.add_argument(
        "--connect-attempts",
        type=int,
        default=3,
        metavar="N",
        help="tries per server before giving up at start (default: %(default)s)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    servers = [
        url.strip() for given in arguments.nats or [DEFAULT_SERVER] for url in given.split(",")
    ]
    options = ServeOptions(
        arguments.target,
        [url for url in servers if url],
        prefix=arguments.prefix,
        drain_timeout=arguments.drain_timeout,
        connect_attempts=max(1, arguments.connect_attempts),
    )
    try:
        asyncio.run(serve(options))
    except ServeError as exc:
        print(f"corps serve: {exc}", file=sys.stderr)
        return exc.code
    return 0


if __name__ == "__main__":
    sys.exit(main())
