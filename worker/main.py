"""`cloudai worker`: run a worker node until SIGTERM or SIGINT."""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType

from cloudai.config import WorkerSettings
from cloudai.errors import CloudAIError
from cloudai.worker.node import WorkerNode


def run_worker(settings: WorkerSettings) -> int:
    """Start a node, serve until a signal, shut down cleanly. Returns the exit status:
    0 after a clean shutdown, 1 when the node could not start (e.g. port in use)."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()  # the main thread does the shutdown, not the handler

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    node = WorkerNode(settings)
    try:
        try:
            node.start()
        except CloudAIError as err:
            print(f"cloudai worker: {err}", file=sys.stderr, flush=True)
            return 1
        # Wake up now and then: Event.wait() with no timeout can miss a signal that
        # lands between its checks on some platforms.
        while not stop.wait(0.5) and not node.wait(0):
            pass
        node.say("shutting down")
        return 0
    finally:
        node.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
