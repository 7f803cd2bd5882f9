"""How one attempt ended, and the pure rules that map Docker's answers to it.

Kept free of I/O so the mapping (which reason, which message) is testable without
an engine: the executor gathers facts, these functions name the outcome.
"""

from __future__ import annotations

import re
import signal
from dataclasses import dataclass

import requests

from cloudai.model import Reason, TaskState
from cloudai.validation import format_size
from cloudai.worker.containers import EngineUnreachable, parse_docker_time

MAX_MESSAGE_CHARS = 300

# Registry answers that mean "this image does not exist (for you)", as opposed to
# "the registry could not be asked" (network, TLS, daemon trouble).
_NOT_FOUND_MARKERS = (
    "not found",
    "manifest unknown",
    "pull access denied",
    "repository does not exist",
    "name unknown",
    "no such image",
)
_NETWORK_MARKERS = ("dial tcp", "lookup ", "i/o timeout", "tls:", "connection refused")


@dataclass(slots=True)
class Outcome:
    """The result of one attempt. `exit_code` is None when no process ever ran."""

    state: TaskState
    exit_code: int | None
    reason: str
    message: str = ""
    log_tail: str = ""
    started_at: float = 0.0
    finished_at: float = 0.0
    peak_memory_bytes: int = 0
    container_id: str = ""
    # False when no worker sampled the container's memory (one re-adopted after it
    # ended): peak_memory_bytes 0 then means unknown, as the master reads it too.
    peak_known: bool = True


def one_line(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _network_cause(text: str) -> str:
    """'Get "https://r/v2/": dial tcp: lookup r on 1.1.1.1:53: no such host'
    -> 'registry unreachable (no such host)'."""
    last = text.rstrip().rsplit(": ", 1)[-1]
    return f"registry unreachable ({one_line(last, 80)})"


def pull_outcome(image: str, error_text: str, finished_at: float) -> Outcome:
    """Name a failed pull: missing image or unreachable registry. Both messages
    name the image, because that is what the user has to fix or check."""
    lowered = error_text.lower()
    if any(m in lowered for m in _NETWORK_MARKERS):
        cause, reason = _network_cause(error_text), Reason.PULL_FAILED
    elif any(m in lowered for m in _NOT_FOUND_MARKERS):
        cause, reason = one_line(error_text), Reason.IMAGE_NOT_FOUND
    else:
        cause, reason = one_line(error_text), Reason.PULL_FAILED
    if reason == Reason.IMAGE_NOT_FOUND:
        message = f"image {image} not found: {cause}"
    else:
        message = f"cannot pull image {image}: {cause}"
    return Outcome(TaskState.FAILED, None, reason, one_line(message, 500), finished_at=finished_at)


def docker_error_outcome(err: BaseException, finished_at: float, engine: str = "") -> Outcome:
    """FAILED/docker_error. An engine that could not be reached is said so in words
    ('cannot reach the Docker engine at unix:///x.sock: no such file or directory'),
    not with the transport's exception repr."""
    cause = unreachable_cause(err) if engine else None
    if cause is not None:
        message = f"cannot reach the Docker engine at {engine}: {cause}"
    elif isinstance(err, EngineUnreachable):  # our own words: they say it is Docker's
        message = one_line(str(err))
    else:
        detail = getattr(err, "explanation", None) or str(err) or type(err).__name__
        message = f"docker: {one_line(detail)}"
    return Outcome(TaskState.FAILED, None, Reason.DOCKER_ERROR, message, finished_at=finished_at)


_TRANSPORT_ERRORS = (requests.exceptions.ConnectionError, requests.exceptions.Timeout)


def _transport(e: BaseException) -> bool:
    """A failure to talk to the engine at all. Every requests error is an OSError, the
    engine's own answers (APIError) too: those count only as the kinds above."""
    if isinstance(e, requests.exceptions.RequestException):
        return isinstance(e, _TRANSPORT_ERRORS)
    return isinstance(e, OSError)


def unreachable_cause(err: BaseException) -> str | None:
    """Why the engine could not be reached, in a few words: 'no such file or
    directory', 'connection refused', 'timed out' (the first OS error in the chain).
    None when `err` is no transport failure (the engine answered) or is our own,
    already readable EngineUnreachable."""
    if isinstance(err, EngineUnreachable):
        return None
    chain = _chain(err)
    if not any(_transport(e) for e in chain):
        return None
    for e in chain:
        if _transport(e) and isinstance(e, OSError) and e.strerror:
            return e.strerror[:1].lower() + e.strerror[1:]
    if any(isinstance(e, TimeoutError | requests.exceptions.Timeout) for e in chain):
        return "timed out"
    return one_line(str(chain[-1]) or type(chain[-1]).__name__, 200)


def _chain(err: BaseException, limit: int = 20) -> list[BaseException]:
    """`err` and what caused it: __cause__, __context__ and exceptions among the args
    (urllib3 wraps the OS error in its args), breadth first, each once."""
    out: list[BaseException] = []
    todo = [err]
    while todo and len(out) < limit:
        e = todo.pop(0)
        if any(e is seen for seen in out):
            continue
        out.append(e)
        nested = (e.__cause__, e.__context__, *e.args)
        todo.extend(x for x in nested if isinstance(x, BaseException))
    return out


def start_failure_message(explanation: str) -> str:
    """runc's 'failed to create shim task: ... unable to start container process: exec:
    "x": executable file not found in $PATH: unknown' -> the part a user can act on."""
    text = explanation or "container failed to start"
    m = re.search(r"unable to start container process: (.*?)(?:: unknown)?$", text)
    return "cannot start: " + one_line(m.group(1) if m else text)


_UNKNOWN_USER = re.compile(r"unable to find (user|group) ([^:\s]+)")


def unknown_user_outcome(explanation: str, task_user: str, finished_at: float) -> Outcome | None:
    """The task's own --user names a user or group its image does not have: no retry
    fixes that (invalid_spec). None for any other start failure, and when the user
    is the worker's default (`cloudai worker --user`): another worker may run it."""
    m = _UNKNOWN_USER.search(explanation)
    if not task_user or m is None:
        return None
    kind, name = m.groups()
    where = "/etc/passwd" if kind == "user" else "/etc/group"
    message = (
        f"cannot start: the image has no {kind} {one_line(name, 64)} (--user {task_user}); "
        f"name one from its {where} or give a numeric id"
    )
    return Outcome(
        TaskState.FAILED, None, Reason.INVALID_SPEC, one_line(message), finished_at=finished_at
    )


def finished_outcome(
    docker_state: dict,
    *,
    killed_for: str | None,
    timeout_s: float,
    memory_limit: int,
) -> Outcome:
    """Map a container's final State (from inspect) to an outcome. Our own kill wins
    over what the exit code alone would say: a cancelled task is not a failure."""
    code = int(docker_state.get("ExitCode", -1))
    if killed_for == Reason.CANCELLED:
        return Outcome(TaskState.CANCELLED, code, Reason.CANCELLED, "cancelled")
    if killed_for == Reason.TIMEOUT:
        return Outcome(
            TaskState.TIMED_OUT, code, Reason.TIMEOUT, f"killed after the {timeout_s:g}s timeout"
        )
    if docker_state.get("OOMKilled"):
        return _oom_outcome(code, memory_limit)
    if code == 0:
        return Outcome(TaskState.SUCCEEDED, 0, Reason.COMPLETED, "")
    return Outcome(TaskState.FAILED, code, Reason.NONZERO_EXIT, exit_message(code))


def _oom_outcome(code: int, memory_limit: int) -> Outcome:
    """Docker sets OOMKilled when the kernel killed ANY process of the container at its
    memory limit, not only its main one. A task that survives that (a shell whose child
    was killed) and exits 0 has succeeded, as `docker run` says; one that exits with its
    own code failed because of it, and says so without claiming it was killed itself."""
    limit = format_size(memory_limit) if memory_limit else "its"
    if code == 0:
        note = f"a process was killed at the {limit} memory limit (out of memory); exit 0"
        return Outcome(TaskState.SUCCEEDED, 0, Reason.COMPLETED, note)
    if code == 128 + signal.SIGKILL:
        message = f"out of memory: killed at the {limit} memory limit (exit {code})"
    else:
        message = (
            f"out of memory: a process was killed at the {limit} memory limit, "
            f"then the task exited with code {code}"
        )
    return Outcome(TaskState.FAILED, code, Reason.OOM_KILLED, message)


def exit_message(code: int) -> str:
    """'exited with code 3'; a code above 128 is how a shell reports death by a signal,
    so it names the signal too: 'exited with code 137 (128 + SIGKILL)'."""
    try:
        name = signal.Signals(code - 128).name if 128 < code < 128 + 65 else ""
    except ValueError:  # not a signal this platform has
        name = ""
    return f"exited with code {code}" + (f" (128 + {name})" if name else "")


def readopted_outcome(outcome: Outcome, docker_state: dict) -> Outcome:
    """A re-adopted container ran, and may have ended, while no worker watched it: its
    runtime is Docker's own (State.StartedAt to State.FinishedAt), not until the new
    worker looked, and a peak memory nobody sampled is unknown."""
    started = parse_docker_time(docker_state.get("StartedAt"))
    finished = parse_docker_time(docker_state.get("FinishedAt"))
    if started > 0 and finished >= started:
        outcome.started_at, outcome.finished_at = started, finished
    outcome.peak_known = outcome.peak_memory_bytes > 0
    return outcome


def after_engine_outage(outcome: Outcome) -> Outcome:
    """The engine went away while the container ran. A container that then died of a
    signal (exit >= 128, not an OOM kill) was most likely stopped by the engine's own
    restart: that is the engine's failure (docker_error, retried within its own
    bound), not the task's. Anything else is the task's own outcome."""
    if not stopped_by_signal(outcome):
        return outcome
    return Outcome(
        TaskState.FAILED,
        outcome.exit_code,
        Reason.DOCKER_ERROR,
        f"container stopped during a Docker engine outage (exit {outcome.exit_code})",
    )


def stopped_by_signal(outcome: Outcome) -> bool:
    """The task's process died of a signal (exit >= 128) that was not an OOM kill and
    not ours (a timeout or a cancel has its own reason)."""
    code = outcome.exit_code
    return outcome.reason == Reason.NONZERO_EXIT and code is not None and code >= 128
