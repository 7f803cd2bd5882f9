"""`cloudai master`: run the master with the console, or headless."""

from __future__ import annotations

import logging
import signal
import sys
import threading

from cloudai.config import MasterSettings
from cloudai.errors import CloudAIError

from .console import Console
from .server import Master


class _Terminate(Exception):
    """Raised in the main thread by SIGTERM so a blocking console read ends cleanly."""


def run_master(settings: MasterSettings) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr
    )
    try:
        master = Master(settings, warn=lambda msg: print(f"⚠ {msg}", file=sys.stderr, flush=True))
    except CloudAIError as err:
        print(f"cloudai master: {err}", file=sys.stderr)
        return 2
    master.start()
    print(
        f"✓ CloudAI master listening on {settings.host}:{master.port} (store: {master.store.url})",
        flush=True,
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()
        if settings.console:
            raise _Terminate()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        if settings.console:
            print("Type 'help' for commands.", flush=True)
            Console(master).run(sys.stdin, prompt=True)
        else:
            while not stop.wait(3600):
                pass
    except (_Terminate, KeyboardInterrupt):
        pass
    finally:
        print("shutting down...", flush=True)
        master.stop()
        print("✓ master stopped", flush=True)
    return 0
