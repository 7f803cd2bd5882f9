"""`cloudai worker`: run a worker node until SIGTERM or SIGINT."""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType

from cloudai import rpc
from cloudai.config import WorkerSettings
from cloudai.errors import CloudAIError
from cloudai.worker.node import WorkerNode

EXIT_FAILED = 1


def run_worker(settings: WorkerSettings) -> int:
    """Start a node, serve until a signal, shut down cleanly. Returns the exit status:
    0 after a clean shutdown, 1 with one line on stderr when the node could not start
    (a bad setting, its port in use, no Docker engine answering, no such --network on
    it) or the master refused it for good (its id is held by another live worker, or
    its token or request is refused at the first registration)."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()  # the main thread does the shutdown, not the handler

    try:
        rpc.check_port(settings.port)
        node = WorkerNode(settings)
    except CloudAIError as err:
        return _failed(str(err))
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        try:
            node.start()
        except CloudAIError as err:
            return _failed(str(err))
        # Wake up now and then: Event.wait() with no timeout can miss a signal that
        # lands between its checks on some platforms.
        while not stop.wait(0.5) and not node.wait(0) and not node.failed():
            pass
        if node.failed():
            return _failed(node.error)
        node.say("shutting down")
        return 0
    finally:
        node.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _failed(message: str) -> int:
    print(f"cloudai worker: {message}", file=sys.stderr, flush=True)
    return EXIT_FAILED
