"""Serving a system's metrics: an HTTP endpoint in the caller's event loop, or an ASGI app.

The endpoint binds to 127.0.0.1 unless told otherwise (prometheus_client's own
`start_http_server` listens on every interface, in a thread), answers GET (and HEAD) on its
path and nothing else, bounds what it reads from a client, and stops with the system.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, MutableMapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

if TYPE_CHECKING:
    from ._system import ActorSystem

__all__ = ("MetricsServer", "metrics_app", "serve_metrics", "serve_registry")

MAX_REQUEST_HEAD = 8192
"""Bytes of request line and headers read at most; a longer head is refused."""
READ_TIMEOUT = 5.0
"""Seconds a client has to send its request head."""


class MetricsServer:
    """A running metrics endpoint; `async with` it, or let the system's shutdown close it."""

    def __init__(self, server: asyncio.Server, path: str) -> None:
        self.on_close: Callable[[MetricsServer], None] | None = None
        self.path = path
        self._server = server
        host, port = server.sockets[0].getsockname()[:2]
        self.host: str = host
        self.port: int = port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{self.path}"

    async def close(self) -> None:
        """Stop listening and wait for the connections being served to end."""
        if self.on_close is not None:
            self.on_close(self)
        self._server.close()
        await self._server.wait_closed()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


async def serve_metrics(
    system: ActorSystem, host: str = "127.0.0.1", port: int = 0, path: str = "/metrics"
) -> MetricsServer:
    """Serve `system`'s registry over HTTP at `http://host:port/path` in this event loop.

    `port=0` picks a free port (read it from the result). Only loopback by default: pass
    `host="0.0.0.0"` to be scraped from elsewhere. The server stops when the system shuts
    down, or when closed.
    """
    running = await serve_registry(system.metrics.registry, host, port, path)
    servers = system.metrics.servers
    servers.add(running)
    running.on_close = servers.discard
    return running


async def serve_registry(
    registry: CollectorRegistry, host: str = "127.0.0.1", port: int = 0, path: str = "/metrics"
) -> MetricsServer:
    """Serve any registry the same way (several systems that share one, a benchmark's);
    close it yourself."""
    if not path.startswith("/"):
        raise ValueError("path must start with '/'")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(READ_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
            method, target = _request_line(head)
            status, body, headers = _answer(method, target, path, registry)
            writer.write(_response(status, body if method != "HEAD" else b"", headers))
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            writer.write(_response(400, b"bad request\n", {}))
            with contextlib.suppress(ConnectionError):
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    server = await asyncio.start_server(handle, host, port, limit=MAX_REQUEST_HEAD)
    return MetricsServer(server, path)


def _request_line(head: bytes) -> tuple[str, str]:
    line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise asyncio.IncompleteReadError(head, None)
    return parts[0], parts[1]


def _answer(
    method: str, target: str, path: str, registry: Any
) -> tuple[int, bytes, dict[str, str]]:
    if target.split("?", 1)[0] != path:
        return 404, b"not found\n", {}
    if method not in ("GET", "HEAD"):
        return 405, b"method not allowed\n", {"Allow": "GET, HEAD"}
    return 200, generate_latest(registry), {"Content-Type": CONTENT_TYPE_LATEST}


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}


def _response(status: int, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS[status]}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines.append("Connection: close")
    if "Content-Type" not in headers:
        lines.append("Content-Type: text/plain; charset=utf-8")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def metrics_app(
    system: ActorSystem, path: str = "/metrics"
) -> Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]:
    """An ASGI app that serves `system`'s metrics on `path`, for an ASGI server you run."""
    registry = system.metrics.registry

    async def app(scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                event = await receive()
                kind = event["type"]
                if kind in ("lifespan.startup", "lifespan.shutdown"):
                    await send({"type": kind + ".complete"})
                    if kind == "lifespan.shutdown":
                        return
        if scope["type"] != "http":
            return
        status, body, headers = _answer(scope["method"], scope["path"], path, registry)
        if scope["method"] == "HEAD":
            body = b""
        raw_headers = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        raw_headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": raw_headers})
        await send({"type": "http.response.body", "body": body})

    return app
