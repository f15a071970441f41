"""`corps serve`: a real OS process hosting services on a real nats-server."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from actors import ActorSystem
from brokers import NatsBus, NatsServer
from coordination import Mediator, Outcome
from coordination.scenarios.order_placement import PlaceOrder, order_workflow

from .served import Nap, Sleeper, Witness

pytestmark = [pytest.mark.anyio, pytest.mark.nats]

ROOT = Path(__file__).resolve().parent.parent
CORPS = str(Path(sys.executable).parent / "corps")
"""The console script `pip install` made (`make test` installs the project)."""


def corps(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [CORPS, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


async def ready_line(process: subprocess.Popen[str]) -> str:
    assert process.stderr is not None
    with anyio.fail_after(30):
        line = await anyio.to_thread.run_sync(process.stderr.readline, abandon_on_cancel=True)
    if not line.startswith("corps: serving"):
        process.kill()
        raise AssertionError(f"no readiness line: {line}{process.communicate()[1]}")
    return line


async def test_serve_hosts_services_and_drains_on_sigterm(nats_server: NatsServer) -> None:
    host = corps("serve", "tests.served:build", "--nats", nats_server.url)
    try:
        line = await ready_line(host)
        assert "tests.served:build" in line
        assert "payment" in line
        assert "sleeper" in line
        async with (
            NatsBus(nats_server.url) as bus,
            ActorSystem(bus) as system,
            Mediator(system, order_workflow) as mediator,
        ):
            ids = [
                await mediator.start(PlaceOrder(f"o{n}", "ann", "book", 1, 1000)) for n in range(20)
            ]
            for workflow_id in ids:
                result = await mediator.result(workflow_id, timeout=10)
                assert result.outcome is Outcome.COMPLETED
            witness = Witness()
            await system.spawn(lambda: witness, name="witness")
            await bus.flush()
            sleeper = system.ref(Sleeper, "sleeper")
            async with anyio.create_task_group() as tasks:
                answers: list[str] = []

                async def nap() -> None:
                    answers.append(await sleeper.ask(Nap(0.5), timeout=10))

                tasks.start_soon(nap)
                with anyio.fail_after(10):
                    await witness.begun.wait()
                host.send_signal(signal.SIGTERM)  # while the nap is under way
            assert answers == ["rested"]  # the message in hand was handled before exit
        code = await anyio.to_thread.run_sync(host.wait, 30)
        assert code == 0
        assert host.stderr is not None
        assert "corps: draining" in host.stderr.read()
    finally:
        if host.poll() is None:
            host.kill()
        host.communicate()


def finished(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CORPS, *args], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize(
    ("target", "says"),
    [
        ("tests.nothing_here:build", "cannot import 'tests.nothing_here'"),
        ("tests.served:nothing", "has no 'nothing'"),
        ("tests.served", "is not module.path:function"),
        ("tests.served:NOT_A_FUNCTION", "is not callable"),
    ],
)
def test_serve_says_what_is_wrong_with_a_target(
    nats_server: NatsServer, target: str, says: str
) -> None:
    done = finished("serve", target, "--nats", nats_server.url)
    assert done.returncode == 2
    assert says in done.stderr


def test_serve_says_when_the_build_function_raises(nats_server: NatsServer) -> None:
    done = finished("serve", "tests.served:broken", "--nats", nats_server.url)
    assert done.returncode == 4
    assert "tests.served:broken failed: RuntimeError('no stock database')" in done.stderr
    assert "Traceback" in done.stderr  # where it raised, for whoever fixes it


def test_serve_refuses_a_url_that_is_not_nats() -> None:
    done = finished("serve", "tests.served:build", "--nats", "http://127.0.0.1:4222")
    assert done.returncode == 2
    assert "is not a NATS URL" in done.stderr


def test_serve_says_when_no_server_answers() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = finished(
        "serve",
        "tests.served:build",
        "--nats",
        f"nats://127.0.0.1:{port}",
        "--connect-attempts",
        "1",
    )
    assert done.returncode == 3
    assert "cannot reach NATS" in done.stderr


def test_serve_help_explains_every_option() -> None:
    done = finished("serve", "--help")
    assert done.returncode == 0
    for option in ("TARGET", "--nats", "--prefix", "--drain-timeout", "--connect-attempts"):
        assert option in done.stdout
    assert "CORPS_NATS_PASSWORD" in done.stdout
