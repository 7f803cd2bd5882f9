"""Whether the Docker engine still answers, asked in the background.

An engine that is down refuses connections, and every call fails at once. An engine
that hangs (a wedged dockerd, one stopped with SIGSTOP, a daemon stuck on its storage)
accepts connections and never answers: `container.wait()` then blocks for ever, and
every other call for the client's 60 s timeout. So the worker pings the engine every
few seconds, on a new connection with a short timeout, and keeps how long the engine
has gone without answering (`silent_for`). Supervision gives an attempt up when that
passes the worker's engine grace (supervise.py), and while it is longer than SILENT_S
the worker refuses new tasks (node.py), so that the master places them again later or
elsewhere, instead of each waiting out the timeout.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

# How often the engine is pinged, and how long one ping may take.
PROBE_EVERY_S = 5.0
PROBE_TIMEOUT_S = 5.0
# Silent this long: the engine is not answering. New tasks are refused (attempts
# accepted just before fail at once), and the worker says so in its log (once, and
# again when the engine answers).
SILENT_S = 2 * PROBE_EVERY_S + PROBE_TIMEOUT_S

# A ping: returns "" when the engine answered, else why not in a few words.
Probe = Callable[[], str]


class EngineWatch:
    """Pings the engine in a thread of its own from `start()` until `stop()`. Before
    `start()`, and in processes that never start it, the engine counts as answering."""

    def __init__(
        self,
        probe: Probe,
        say: Callable[[str], None],
        *,
        every: float = PROBE_EVERY_S,
        silent_s: float = SILENT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._probe = probe
        self._say = say
        self._every = every
        self._silent_s = silent_s
        self._clock = clock
        self._lock = threading.Lock()
        self._unanswered_since: float | None = None  # start of the first failed ping
        self._cause = ""
        self._reported = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name="engine-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def silent_for(self) -> float:
        """Seconds since the engine last failed to answer a ping, counted from the first
        such ping after its last answer; 0 while it answers."""
        with self._lock:
            since = self._unanswered_since
        return 0.0 if since is None else max(0.0, self._clock() - since)

    def answering(self) -> bool:
        """False once the engine has not answered for SILENT_S."""
        return self.silent_for() < self._silent_s

    def cause(self) -> str:
        """Why the last ping failed ("timed out", "connection refused"); "" if it answered."""
        with self._lock:
            return self._cause

    def probe_once(self) -> None:
        began = self._clock()
        cause = self._probe()
        if cause:
            with self._lock:
                if self._unanswered_since is None:
                    self._unanswered_since = began
                self._cause = cause
            self._report_silence()
            return
        with self._lock:
            since, self._unanswered_since, self._cause = self._unanswered_since, None, ""
            reported, self._reported = self._reported, False
        if reported and since is not None:
            self._say(f"the Docker engine answers again, after {self._clock() - since:.0f}s")

    def _report_silence(self) -> None:
        silent = self.silent_for()
        with self._lock:
            if self._reported or silent < self._silent_s:
                return
            self._reported = True
            cause = self._cause
        self._say(
            f"the Docker engine has not answered for {silent:.0f}s ({cause}); new tasks "
            "are refused until it does, and running ones given up after the engine grace"
        )

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.probe_once()
            except Exception as err:  # a bug in a ping must not end the watch
                self._say(f"engine watch: {err!r}")
            self._stop.wait(self._every)
