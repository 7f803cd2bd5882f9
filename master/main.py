"""`cloudai master`: run the master with the console, or headless.

Exit status: 0 after a clean shutdown, 1 when the master cannot start (a bad setting,
a port in use, a store that cannot be opened), with one line on stderr. Exit status 2
is the clients' "master cannot be reached".

The console reads stdin. `exit`, or Ctrl-D on a terminal, shuts the master down. When
stdin is not a terminal (`< /dev/null`, nohup, a service manager, a pipe that closed)
its end is no request to stop: the master logs one line and serves on headless until
SIGTERM or SIGINT.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from typing import TextIO

from cloudai import rpc
from cloudai.config import MasterSettings
from cloudai.errors import CloudAIError

from .console import Console, is_tty
from .server import Master

log = logging.getLogger("cloudai.master")
EXIT_STARTUP = 1
_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


class _Terminate(Exception):
    """Raised in the main thread by SIGTERM so a blocking console read ends cleanly."""


def run_master(settings: MasterSettings) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr
    )
    # The master's threads (its own and gRPC's, which inherit the mask) block SIGTERM
    # and SIGINT, so the kernel delivers them to the main thread: one delivered to
    # another thread would not interrupt the console's blocking read.
    signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        rpc.check_port(settings.port)
        master = Master(settings, warn=lambda msg: print(f"⚠ {msg}", file=sys.stderr, flush=True))
    except CloudAIError as err:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
        print(f"cloudai master: {err}", file=sys.stderr, flush=True)
        return EXIT_STARTUP
    stop = threading.Event()
    reading = threading.Event()  # the console is blocked in a read

    def on_signal(signum: int, frame: object) -> None:
        stop.set()
        if reading.is_set():
            raise _Terminate()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # A master started in the background of an interactive shell (`cloudai master &`)
    # would be stopped by SIGTTIN on its first read; ignored, the read fails instead.
    signal.signal(signal.SIGTTIN, signal.SIG_IGN)
    try:
        master.start()
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
    print(
        f"✓ CloudAI master listening on {settings.host}:{master.port} (store: {master.store.url})",
        flush=True,
    )
    try:
        if not settings.console or not _console(master, sys.stdin, reading):
            # Short waits: a signal is handled only when the main thread runs.
            while not stop.wait(0.5):
                pass
    except (_Terminate, KeyboardInterrupt):
        pass
    finally:
        reading.clear()
        print("shutting down...", flush=True)
        master.stop()
        print("✓ master stopped", flush=True)
    return 0


def _console(master: Master, inp: TextIO | None, reading: threading.Event) -> bool:
    """Run the console. True: shut down (`exit`, or Ctrl-D on a terminal). False: the
    input ended or cannot be read, and the master serves on headless."""
    if inp is None:  # started with stdin closed
        ended = "no stdin"
    else:
        print("Type 'help' for commands.", flush=True)
        reading.set()
        try:
            ended = Console(master).run(inp, prompt=True)
        finally:
            reading.clear()
    if ended == Console.EXIT or (ended == Console.EOF and inp is not None and is_tty(inp)):
        return True
    why = "stdin is not a terminal and ended" if ended == Console.EOF else ended
    log.info("console off (%s): serving headless; stop with SIGTERM or Ctrl-C", why)
    return False
