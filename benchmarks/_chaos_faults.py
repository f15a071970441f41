"""The broker faults the chaos runs inject: a schedule of server restarts, a loopback TCP proxy
whose connections are cut, and a three-node nats-server cluster."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from brokers import NatsServer

__all__ = ("CuttableProxy", "Schedule", "cluster", "run_schedule")


@dataclass(frozen=True, slots=True)
class Schedule:
    """A fault every `every` seconds (drawn uniformly from the range), lasting `down`."""

    every: tuple[float, float]
    down: tuple[float, float]


async def run_schedule(
    schedule: Schedule,
    rng: random.Random,
    until: float,
    fault: Callable[[float], Awaitable[None]],
) -> int:
    """Call `fault(down_for)` on `schedule` until the loop time `until`; returns how often."""
    loop = asyncio.get_running_loop()
    injected = 0
    while True:
        due = loop.time() + rng.uniform(*schedule.every)
        await asyncio.sleep(max(0.0, min(due, until) - loop.time()))
        if loop.time() >= until:
            return injected
        await fault(rng.uniform(*schedule.down))
        injected += 1


class CuttableProxy:
    """A TCP proxy on 127.0.0.1 in front of `target_port`; `cut()` drops every connection
    through it at once, as a network fault would, and `down_for` refuses new ones meanwhile."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[Any]] = set()
        self.cuts = 0

    async def __aenter__(self) -> CuttableProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        self._close_links()
        if self._handlers:  # their links are cut: they end by themselves (cancelling one
            await asyncio.wait(self._handlers, timeout=5)  # makes asyncio log an error)
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    async def cut(self, down_for: float = 0.0) -> None:
        """Reset every connection; for `down_for` seconds nothing listens on the port."""
        self.cuts += 1
        assert self._server is not None
        if down_for > 0:
            self._server.close()
        self._close_links()
        if down_for > 0:
            await self._server.wait_closed()
            await asyncio.sleep(down_for)
            self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    def _close_links(self) -> None:
        for writer in list(self._links):
            with contextlib.suppress(Exception):
                writer.transport.abort()  # a reset, not a polite close
        self._links.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        try:
            await self._link(reader, writer)
        finally:
            self._handlers.discard(handler)

    async def _link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._links.update((writer, up_writer))
        await asyncio.gather(
            _pipe(reader, up_writer), _pipe(up_reader, writer), return_exceptions=True
        )
        self._links.discard(writer)
        self._links.discard(up_writer)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.transport.abort()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def cluster(size: int = 3) -> Iterator[list[NatsServer]]:
    """`size` nats-servers on loopback, routed to each other as one cluster."""
    routes = [_free_port() for _ in range(size)]
    nodes = []
    try:
        for index, port in enumerate(routes):
            others = ", ".join(f"nats-route://127.0.0.1:{p}" for p in routes if p != port)
            config = (
                f"server_name: corps-{index}\n"
                f"cluster {{\n  name: corps-chaos\n  listen: 127.0.0.1:{port}\n"
                f"  routes: [{others}]\n}}"
            )
            node = NatsServer(jetstream=False, extra_config=config)
            nodes.append(node)
            node.start()
        yield nodes
    finally:
        for node in nodes:
            node.close()
