"""nats-py's client with faster header handling, and a flush that flushes.

corps sends three id headers with every message, and nats-py builds and parses header blocks
in Python a character or a call at a time: that cost more than the rest of a NATS delivery. This
client writes the same HPUB frames and reads the same header lines with one string join and
bytes methods that run in C. NatsBus validates headers before they get here (HeaderCheck applies
nats-py's rules), so the writer does not check again. Should nats-py's internals change, the
writer steps aside to nats-py's own code and the parser override is simply unused.

nats-py 2.16 writes a flush's PING straight to the socket, ahead of the commands still waiting
in its outbound buffer: `flush()` could return before the server had seen a SUB or PUB made
just before it (seen with a subscription the server refused: its error came after the PONG).
Here the PING waits in the buffer behind them, so the PONG means they were all processed.
"""

from __future__ import annotations

import asyncio
from typing import Any

from nats.aio.client import PING_PROTO, Client
from nats.aio.subscription import Subscription

__all__ = ("CorpsNatsClient", "delivery_task", "join")


class CorpsNatsClient(Client):
    def __init__(self) -> None:
        super().__init__()
        # The internals the fast writer relies on; without them it steps aside.
        self._fast_publish = all(
            hasattr(self, name) for name in ("_send_command", "_flush_queue", "_flush_pending")
        )

    async def _send_publish(
        self,
        subject: str,
        reply: str,
        payload: bytes,
        payload_size: int,
        headers: dict[str, Any] | None,
    ) -> None:
        if headers is None or not subject or not self._fast_publish:
            await super()._send_publish(subject, reply, payload, payload_size, headers)
            return
        block = "".join([f"{name}: {value.strip()}\r\n" for name, value in headers.items()])
        header = f"NATS/1.0\r\n{block}\r\n".encode()
        size = len(header)
        command = f"HPUB {subject} {reply} {size} {size + len(payload)}\r\n".encode()
        self.stats["out_msgs"] += 1
        self.stats["out_bytes"] += payload_size
        await self._send_command(command + header + payload + b"\r\n")
        if self._flush_queue is not None and self._flush_queue.empty():
            await self._flush_pending()

    async def _send_ping(self, future: asyncio.Future[Any] | None = None) -> None:
        if not self._fast_publish or not self.is_connected:
            await super()._send_ping(future)
            return
        self._pongs.append(future if future is not None else asyncio.Future())
        await self._send_command(PING_PROTO)
        await self._flush_pending()

    @staticmethod
    def _parse_header_lines(raw: bytes) -> dict[str, str]:
        headers: dict[str, str] = {}
        for line in raw.split(b"\r\n"):
            name, colon, value = line.partition(b":")
            if not colon:
                continue
            name = name.strip()
            # One whitespace-free ASCII token, as nats-py requires.
            if not name or not name.isascii() or len(name.split()) != 1:
                continue
            headers[name.decode("ascii")] = value.strip().decode("utf-8", "replace")
        return headers


def delivery_task(raw: Subscription | None) -> asyncio.Task[None] | None:
    """The task nats-py runs a callback subscription in (it does not expose it publicly)."""
    task = getattr(raw, "_wait_for_msgs_task", None)
    return task if isinstance(task, asyncio.Task) else None


async def join(task: asyncio.Task[None] | None) -> None:
    """Wait for `task` to finish, unless it is the caller."""
    if task is not None and task is not asyncio.current_task() and not task.done():
        await asyncio.wait((task,))
