"""What only NATS has: a server that restarts, connection options, connection status."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
from pathlib import Path

import anyio
import nats
import nats.aio.msg
import pytest

from brokers import BusConnectionError, ConnectionStatus, Msg, NatsBus, NatsServer

from .helpers import Inbox, until

pytestmark = [pytest.mark.anyio, pytest.mark.nats]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_subscriptions_and_requests_survive_a_server_restart() -> None:
    disconnected = anyio.Event()
    with NatsServer(jetstream=False) as server:

        async def on_disconnect() -> None:
            disconnected.set()

        async with NatsBus(server.url, disconnected_cb=on_disconnect) as bus:
            inbox, grouped = Inbox(), Inbox()
            await bus.subscribe("events.>", inbox)
            await bus.subscribe("work", grouped, queue="workers")

            async def echo(msg: Msg) -> None:
                assert msg.reply is not None
                await bus.publish(msg.reply, msg.data)

            await bus.subscribe("echo", echo)
            await bus.publish("events.a", b"before")
            assert (await bus.request("echo", b"1", timeout=2)).data == b"1"
            await inbox.wait_for(1)

            server.stop()
            with anyio.fail_after(5):
                await disconnected.wait()  # the user's own callback still runs
            assert bus.stats.disconnects == 1
            await until(lambda: bus.status is ConnectionStatus.RECONNECTING)
            server.start()  # same port
            await until(lambda: bus.stats.reconnects == 1, timeout=10)
            assert bus.status is ConnectionStatus.CONNECTED

            await bus.publish("events.b", b"after")
            await bus.publish("work", b"job")
            await inbox.wait_for(2)
            await grouped.wait_for(1)
            assert inbox.data == [b"before", b"after"]
            assert (await bus.request("echo", b"2", timeout=2)).data == b"2"


async def test_user_and_password_pass_through() -> None:
    auth = "authorization { user: corps, password: s3cret }"
    with NatsServer(jetstream=False, extra_config=auth) as server:
        async with NatsBus(server.url, user="corps", password="s3cret") as bus:
            inbox = Inbox()
            await bus.subscribe("x", inbox)
            await bus.publish("x", b"ok")
            await inbox.wait_for(1)
        with pytest.raises(BusConnectionError):
            async with NatsBus(
                server.url, user="corps", password="wrong", max_reconnect_attempts=0
            ):
                pass


async def test_token_passes_through() -> None:
    with NatsServer(jetstream=False, extra_config="authorization { token: t0ken }") as server:
        async with NatsBus(server.url, token="t0ken") as bus:
            await bus.flush()
            assert bus.status is ConnectionStatus.CONNECTED


async def test_several_servers_connect_to_one_that_answers(nats_server: NatsServer) -> None:
    dead = f"nats://127.0.0.1:{closed_port()}"
    async with NatsBus([dead, nats_server.url], dont_randomize=True) as bus:
        assert bus.connected_url == nats_server.url
        await bus.flush()


async def test_unreachable_server_fails_clearly() -> None:
    bus = NatsBus(f"nats://127.0.0.1:{closed_port()}", connect_timeout=1)
    with anyio.fail_after(10), pytest.raises(BusConnectionError, match="cannot connect"):
        await bus.connect()
    assert bus.status is ConnectionStatus.DISCONNECTED


async def test_use_before_connect_is_a_clear_error() -> None:
    bus = NatsBus("nats://127.0.0.1:1")
    with pytest.raises(BusConnectionError, match="not connected"):
        await bus.publish("x", b"")


async def test_server_max_payload_is_learned(tmp_path: object) -> None:
    with NatsServer(jetstream=False, max_payload=4096) as server:
        async with NatsBus(server.url) as bus:
            assert bus.max_payload == 4096
            await bus.publish("x", b"x" * 4096)
            with pytest.raises(ValueError, match="4097 bytes"):
                await bus.publish("x", b"x" * 4097)


def test_server_helper_binds_loopback_only() -> None:
    with NatsServer(jetstream=False) as server:
        assert server.url.startswith("nats://127.0.0.1:")
        assert "Listening for client connections on 127.0.0.1:" in server.log()
        port = server.port
        server.restart()
        assert server.port == port
        assert server.running
    assert not server.running


async def test_headers_interoperate_with_a_stock_nats_client(nats_server: NatsServer) -> None:
    """corps writes and parses header blocks itself (faster than nats-py): a plain nats-py
    client must read what it writes, and the other way round."""
    headers = {"Nats-Msg-Id": "id-1", "Trace": "a b  c", "Empty": "", "Unicode": "été"}
    stock = await nats.connect(nats_server.url)
    try:
        received: list[nats.aio.msg.Msg] = []

        async def keep(msg: nats.aio.msg.Msg) -> None:
            received.append(msg)

        await stock.subscribe("interop.to-stock", cb=keep)
        await stock.flush()
        async with NatsBus(nats_server.url) as bus:
            inbox = Inbox()
            await bus.subscribe("interop.to-corps", inbox)
            await bus.flush()
            # Measured: another connection's publish can miss a subscription for a moment
            # even after the subscriber's flush; a round trip on the publisher settles it.
            await stock.flush()
            await bus.publish("interop.to-stock", b"1", headers=headers, reply="r.s")
            await stock.publish("interop.to-corps", b"2", headers=headers)
            (msg,) = await inbox.wait_for(1)
            assert msg.headers == headers
            await until(lambda: len(received) == 1)
            assert received[0].headers == headers
            assert received[0].reply == "r.s"
            assert received[0].data == b"1"
    finally:
        await stock.close()


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate and key for 127.0.0.1."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_tls_context_passes_through(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    tls = f'tls {{\n  cert_file: "{cert}"\n  key_file: "{key}"\n}}'
    with NatsServer(jetstream=False, extra_config=tls) as server:
        context = ssl.create_default_context(cafile=str(cert))
        async with NatsBus(server.url, tls=context, tls_hostname="127.0.0.1") as bus:
            inbox = Inbox()
            await bus.subscribe("secure", inbox)
            await bus.publish("secure", b"over tls")
            await inbox.wait_for(1)
        untrusting = NatsBus(server.url, tls=ssl.create_default_context(), connect_attempts=1)
        with anyio.fail_after(10), pytest.raises(BusConnectionError, match="CERTIFICATE_VERIFY"):
            await untrusting.connect()  # fails with the cause, and does not hang
