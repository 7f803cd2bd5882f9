"""When a failed attempt is tried again, and after how long.

Three budgets, kept apart so that one kind of trouble never eats another's:

- the task's own `--retries`, spent on failures of the task itself (non-zero exit,
  OOM kill, timeout), after a missing image or an invalid spec never;
- engine trouble (pull_failed, docker_error), retried `max_transient_retries` times
  before it spends a `--retries`;
- trouble with the worker: a lost worker spends nothing, but a task that K workers
  were lost under is quarantined as poison; a refused or unreachable dispatch spends
  nothing either, backs off, and a task pinned to that worker fails after
  MAX_DISPATCH_FAILURES of them in a row.
"""

from __future__ import annotations

import random

from cloudai.model import Reason, Task

# Failures that no retry can fix: fail at once.
HOPELESS = frozenset({Reason.IMAGE_NOT_FOUND, Reason.INVALID_SPEC})
# The engine's trouble, not the task's: retried within their own bound first.
TRANSIENT = frozenset({Reason.PULL_FAILED, Reason.DOCKER_ERROR})
RETRY_BASE_S = 1.0
RETRY_CAP_S = 60.0
# Failed dispatches: the backoff doubles from 0.5 s to at most 30 s, and a task pinned
# to the worker fails after this many in a row (about 4 to 8 s of trying).
DISPATCH_BACKOFF_BASE_S = 0.5
DISPATCH_BACKOFF_CAP_S = 30.0
MAX_DISPATCH_FAILURES = 5
# A worker that a dispatch could not reach is left out of placement for a cool-down
# that doubles from UNREACHABLE_BASE_S to at most UNREACHABLE_CAP_S with each failed
# check in a row (the dispatcher probes it when the cool-down ends).
UNREACHABLE_BASE_S = 5.0
UNREACHABLE_CAP_S = 60.0


def backoff(retries_used: int) -> float:
    """Exponential backoff with full jitter in its upper half."""
    return _jittered(RETRY_BASE_S, RETRY_CAP_S, retries_used)


def dispatch_backoff(failures: int) -> float:
    """The wait before a task is placed again after `failures` failed dispatches in a row."""
    return _jittered(DISPATCH_BACKOFF_BASE_S, DISPATCH_BACKOFF_CAP_S, failures)


def unreachable_cooldown(failures: int) -> float:
    """How long a worker is left out of placement after `failures` failed checks in a row."""
    return min(UNREACHABLE_BASE_S * 2 ** (failures - 1), UNREACHABLE_CAP_S)


def dispatch_failures(task: Task) -> int:
    """How many of the task's last attempts, in a row, ended in a failed dispatch."""
    n = 0
    for a in reversed(task.attempts):
        if a.reason != Reason.WORKER_REJECTED:
            break
        n += 1
    return n


def _jittered(base_s: float, cap_s: float, n: int) -> float:
    return min(base_s * 2 ** (n - 1), cap_s) * (0.5 + random.random() / 2)
