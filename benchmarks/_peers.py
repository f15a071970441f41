"""A peer actor library on the same workload: Pykka (threads), the mediator scenario as a
tell-based state machine, msgpack on every hop, 100 workflows kept in flight (the `peers`
extra). It runs in a thread of its own, outside the event loop."""

from __future__ import annotations

import threading
import time
from typing import Any

import msgspec

__all__ = ("PEERS_HINT", "pykka_available", "pykka_mediator")

PEERS_HINT = "the peer comparison needs Pykka: pip install 'corps[peers]'"


class _Hop(msgspec.Struct, array_like=True):
    workflow: int
    step: int


def pykka_available() -> bool:
    try:
        import pykka  # noqa: F401
    except ImportError:
        return False
    return True


def pykka_mediator(steps: int, duration: float, in_flight: int = 100) -> float:
    """Workflows per second of a Pykka mediator driving `steps` request steps per workflow,
    each to a service actor that answers with a tell, `in_flight` workflows at a time."""
    import pykka

    encode = msgspec.msgpack.encode
    decode = msgspec.msgpack.Decoder(_Hop).decode

    class Service(pykka.ThreadingActor):
        def __init__(self, mediator: Any) -> None:
            super().__init__()
            self.mediator = mediator

        def on_receive(self, message: Any) -> None:
            hop = decode(message)
            self.mediator.tell(encode(_Hop(hop.workflow, hop.step + 1)))

    class Run:
        """What the benchmark thread and the mediator share: read after `finished`."""

        def __init__(self) -> None:
            self.services: list[Any] = []
            self.done = 0
            self.finished = threading.Event()

    class Mediator(pykka.ThreadingActor):
        def __init__(self, run: Run) -> None:
            super().__init__()
            self.run = run
            self.services = run.services
            self.next_workflow = 0
            self.deadline = 0.0

        def on_receive(self, message: Any) -> None:
            if message == b"go":
                self.deadline = time.perf_counter() + duration
                for _ in range(in_flight):
                    self._begin()
                return
            hop = decode(message)
            if hop.step < steps:
                self.services[hop.step].tell(encode(hop))
                return
            self.run.done += 1
            if time.perf_counter() < self.deadline:
                self._begin()
            elif self.run.done == self.next_workflow:
                self.run.finished.set()

        def _begin(self) -> None:
            workflow = self.next_workflow
            self.next_workflow += 1
            self.services[0].tell(encode(_Hop(workflow, 0)))

    run = Run()
    mediator = Mediator.start(run)
    try:
        run.services.extend(Service.start(mediator) for _ in range(steps))
        started = time.perf_counter()
        mediator.tell(b"go")
        run.finished.wait(duration + 30)
        return run.done / (time.perf_counter() - started)
    finally:
        pykka.ActorRegistry.stop_all()
