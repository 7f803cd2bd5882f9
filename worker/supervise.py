"""Watching one running container to its end: its exit, its timeout, a cancel, its
memory, and the engine going away (a restart) or hanging (see watch.py).

The loop makes no blocking call to the engine itself: the exit is waited for, the
memory sampled and the kill sent in threads of their own. An engine that hangs would
hold each such call for the client's timeout, and the loop must still notice the
hang, the deadline and the cancel.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from docker.errors import NotFound
from docker.models.containers import Container

from cloudai.model import Reason
from cloudai.worker import containers as ct
from cloudai.worker.containers import DOCKER_ERRORS
from cloudai.worker.engine import EngineConnection, engine_gone
from cloudai.worker.watch import PROBE_TIMEOUT_S

# How often a supervisor asks whether an engine that went away is back.
ENGINE_POLL_S = 0.5
# Past a deadline the loop still sleeps this long between checks, so that a container
# that has ended in time is not polled in a spin while its exit waiter catches up.
EXIT_SETTLE_S = 0.05


@dataclass
class Ended:
    """What the wait saw: why we killed the container (Reason.TIMEOUT/CANCELLED or
    None), its latest handle, whether the engine went away meanwhile, and the peak
    memory sampled."""

    killed_for: str | None
    container: Container
    engine_lost: bool
    peak: int


class MemoryPeak:
    """Samples a container's memory every `every` seconds in a thread of its own."""

    def __init__(self, container: Container, every: float, first: float) -> None:
        self.peak = 0
        self.container = container
        self._every = every
        self._first = first  # a container's stats read 0 in its first instants
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-peak", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        if self._stop.wait(self._first):
            return
        while True:
            self.peak = max(self.peak, ct.memory_usage(self.container))
            if self._stop.wait(self._every):
                return

    def stop(self, wait_s: float) -> int:
        """The peak, after the sample in flight (if any) has landed, waiting up to
        `wait_s`: a task shorter than one sample would otherwise report none."""
        self._stop.set()
        self._thread.join(wait_s)
        return self.peak


def _within(seconds: float, fn: Callable[[Container], bool], container: Container) -> bool:
    """fn(container), or False if it has not answered within `seconds`."""
    answer: list[bool] = []
    asking = threading.Thread(target=lambda: answer.append(fn(container)), daemon=True)
    asking.start()
    asking.join(seconds)
    return bool(answer and answer[0])


def kill_in_background(container: Container) -> None:
    """Not running (yet or any more) is fine, and so is an engine that does not
    answer: the supervising loop re-checks, and gives the attempt up if it hangs."""

    def kill() -> None:
        with contextlib.suppress(*DOCKER_ERRORS):
            container.kill()

    threading.Thread(target=kill, name="kill", daemon=True).start()


class Supervision:
    """One attempt's container, from its start to its exit."""

    def __init__(
        self,
        engine: EngineConnection,
        *,
        name: str,
        cancel: threading.Event,
        publish: Callable[[Container], None],
        say: Callable[[str], None],
        grace_s: float,
        poll_s: float,
        stats_s: float,
    ) -> None:
        self._engine = engine
        self.name = name
        self._cancel = cancel
        self._publish = publish  # a new handle after an outage: cancel() must kill it
        self._say = say
        self._grace = grace_s
        self._poll = poll_s
        self._stats = stats_s

    def wait(self, container: Container, started_at: float, timeout_s: float) -> Ended:
        """Wait for the container to exit; kill it on timeout or cancel. Raises
        EngineUnreachable when the engine is away, or hangs, for longer than the grace."""
        waiter = ct.ExitWaiter(container)
        memory = MemoryPeak(container, self._stats, first=self._poll)
        deadline = started_at + timeout_s if timeout_s > 0 else None
        killed_for: str | None = None
        engine_lost = False
        try:
            while True:
                if waiter.done.wait(self._pause(deadline, killed_for)):
                    if waiter.error is None or not engine_gone(waiter.error):
                        break
                    engine_lost = True
                    container = self.reattach(type(waiter.error).__name__, waiter.error)
                    waiter, memory.container = ct.ExitWaiter(container), container
                    continue
                self._check_hang()
                if killed_for is None:
                    killed_for = self._should_kill(container, deadline)
                    if killed_for is not None:
                        kill_in_background(container)
        finally:  # an engine that does not answer would hold the sample: no wait then
            peak = memory.stop(0.0 if self._engine.watch.silent_for() else PROBE_TIMEOUT_S)
        if waiter.error is not None:
            raise waiter.error
        if killed_for is None and self._cancel.is_set():
            killed_for = Reason.CANCELLED  # killed by cancel() before the loop noticed
        return Ended(killed_for, container, engine_lost, peak)

    def _pause(self, deadline: float | None, killed_for: str | None) -> float:
        if deadline is None or killed_for is not None:
            return self._poll
        return max(EXIT_SETTLE_S, min(self._poll, deadline - time.time()))

    def _should_kill(self, container: Container, deadline: float | None) -> str | None:
        if self._cancel.is_set():
            return Reason.CANCELLED
        if deadline is None or time.time() < deadline:
            return None
        # Not if it already ended in time (a re-adopted container that exited while
        # no worker watched): its own exit is the result. An engine that does not
        # answer soon cannot say, and the kill is what is due.
        if _within(PROBE_TIMEOUT_S, ct.has_exited, container):
            return None
        return Reason.TIMEOUT

    def _check_hang(self) -> None:
        watch = self._engine.watch
        if watch.silent_for() < self._grace:
            return
        watch.probe_once()  # it may be back since the last ping: ask now
        if watch.silent_for() >= self._grace:
            raise ct.EngineUnreachable(
                f"{self._engine.silence()} while supervising {self.name}; "
                "gave it up (its container may still run)"
            )

    def reattach(self, cause: str, error: BaseException | None = None) -> Container:
        """The engine went away while we waited on the container (a daemon restart,
        a socket blip). Poll until it answers again, then carry on supervising the
        container if it still exists. Raises NotFound if the container is gone, and
        EngineUnreachable if the engine stays away for longer than the grace.
        Each poll opens new connections: a daemon shutting down still answers on the
        ones already open, so only a new one tells that it is back."""
        self._say(
            f"Docker engine unreachable while supervising {self.name} ({cause}); "
            f"waiting up to {self._grace:g}s for it"
        )
        give_up = time.monotonic() + self._grace
        while time.monotonic() < give_up:
            time.sleep(min(ENGINE_POLL_S, max(0.0, give_up - time.monotonic())))
            client = self._engine.fresh()
            if client is None:
                continue
            try:
                container = client.containers.get(self.name)
            except NotFound:
                self._say(f"{self.name} is gone after the engine outage")
                raise
            except DOCKER_ERRORS:
                continue
            self._publish(container)
            self._say(f"engine is back: supervising {self.name} again")
            return container
        raise ct.EngineUnreachable(
            f"engine unreachable for {self._grace:g}s while supervising {self.name}; gave it up"
        ) from error
