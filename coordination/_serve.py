"""`corps serve`: host the services an importable function spawns, in this process, on NATS.

The target is `module.path:function`. The function is called with the running `ActorSystem`
(`build(system)`, sync or async) and spawns the services this host runs. It may return an
async context manager (a strategy, an `AsyncExitStack` of several), which is entered now and
left on shutdown, before the actors drain. Once everything listens, one line goes to stderr:

    corps: serving myapp.services:build on nats://127.0.0.1:4222 as node <node> (order, payment)

SIGTERM or SIGINT drains: the system stops taking new messages, the handlers finish what
their mailboxes hold (for up to `--drain-timeout` seconds), and the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import os
import signal
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from actors import ActorSystem
from brokers import BusConnectionError, NatsBus

__all__ = ("ServeError", "ServeOptions", "load_target", "nats_options", "serve")

EXIT_USAGE = 2
"""A bad target, or a bad URL."""
EXIT_UNREACHABLE = 3
"""No server of the list could be reached (or the credentials were refused)."""
EXIT_BUILD = 4
"""The target's build function (or the context it returned) raised."""

CREDENTIALS = {
    "CORPS_NATS_USER": "user",
    "CORPS_NATS_PASSWORD": "password",
    "CORPS_NATS_TOKEN": "token",
    "CORPS_NATS_CREDS": "user_credentials",
}
"""The environment variables `serve` reads credentials from, and nats-py's option for each
(never on the command line, where other users of the machine can read them)."""


class ServeError(Exception):
    """Why the host cannot start, and the exit code to say it with."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class ServeOptions:
    target: str
    servers: Sequence[str]
    prefix: str = "corps.actors"
    drain_timeout: float = 10.0
    connect_attempts: int = 3


def load_target(target: str) -> Callable[[ActorSystem], Any]:
    """The function `module.path:function` names, imported from the current directory or the
    installed packages; ServeError saying what is wrong if none."""
    if os.getcwd() not in sys.path:  # a console script's path starts at its own directory
        sys.path.insert(0, os.getcwd())
    module_name, colon, attribute = target.partition(":")
    if not colon or not module_name or not attribute:
        raise ServeError(
            f"{target!r} is not module.path:function (for example myapp.services:build)",
            EXIT_USAGE,
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ServeError(f"cannot import {module_name!r}: {exc}", EXIT_USAGE) from exc
    found: Any = module
    for part in attribute.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise ServeError(f"{module_name!r} has no {attribute!r}", EXIT_USAGE) from None
    if not callable(found):
        raise ServeError(f"{target} is not callable: it must be build(system)", EXIT_USAGE)
    return found  # type: ignore[no-any-return]


def nats_options(environ: Mapping[str, str]) -> dict[str, Any]:
    """nats-py's credential options from the environment (see `CREDENTIALS`)."""
    return {option: environ[name] for name, option in CREDENTIALS.items() if environ.get(name)}


def _check_urls(servers: Sequence[str]) -> None:
    for url in servers:
        scheme, sep, rest = url.partition("://")
        if not sep or scheme not in ("nats", "tls", "ws", "wss") or not rest.strip("/"):
            raise ServeError(
                f"{url!r} is not a NATS URL (nats://host:port, tls://host:port)", EXIT_USAGE
            )


async def serve(options: ServeOptions, ready: Callable[[str], None] | None = None) -> None:
    """Host `options.target` until SIGTERM or SIGINT, then drain. Raises ServeError."""
    _check_urls(options.servers)
    build = load_target(options.target)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    bus = NatsBus(
        list(options.servers),
        connect_attempts=options.connect_attempts,
        **nats_options(os.environ),
    )
    try:
        await bus.__aenter__()
    except BusConnectionError as exc:
        raise ServeError(f"cannot reach NATS: {exc}", EXIT_UNREACHABLE) from exc
    try:
        async with (
            ActorSystem(
                bus, prefix=options.prefix, shutdown_timeout=options.drain_timeout
            ) as system,
            contextlib.AsyncExitStack() as stack,
        ):
            try:
                built = build(system)
                if inspect.isawaitable(built):
                    built = await built
                if built is not None:
                    await stack.enter_async_context(built)
            except Exception as exc:
                traceback.print_exc()
                raise ServeError(f"{options.target} failed: {exc!r}", EXIT_BUILD) from exc
            await bus.flush()  # the server knows every subscription before we say we are ready
            names = ", ".join(sorted(system.local_names()))
            line = (
                f"corps: serving {options.target} on {bus.connected_url} "
                f"as node {system.node} ({names})"
            )
            (ready or _to_stderr)(line)
            await stop.wait()
            print("corps: draining", file=sys.stderr, flush=True)
    finally:
        await bus.__aexit__(None, None, None)


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
