"""Tying a helper process's life to its parent's."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """Called in a child process (a pool worker): receive SIGTERM when `parent` ends,
    even by SIGKILL or SIGTERM, which skip a pool's orderly shutdown. Linux's
    parent-death signal; elsewhere nothing changes (such a worker ends at its next
    task, when the pool's pipe is gone)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        armed = libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM)) == 0
    except (OSError, AttributeError):
        return
    if armed and os.getppid() != parent:  # it ended before the signal was armed
        os._exit(1)
