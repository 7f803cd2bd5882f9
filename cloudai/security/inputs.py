"""Checks of hostile input: every field of every RPC request, before any logic runs.

Each `check_*` raises InvalidArgument with a message that names the field, so a
malformed, oversized or out-of-range request ends INVALID_ARGUMENT and never
reaches the store, the registry or the agent's snapshots. The bounds are generous
for real clients and small enough that no request can bloat the master's memory or
its database (a request is also capped at rpc.MAX_REQUEST_BYTES by gRPC itself).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from cloudai.errors import InvalidArgument
from cloudai.validation import ID_RE, MAX_IMAGE_LEN, validate_labels, validate_text

MAX_REFS = 4096  # running attempts a worker may list
MAX_IMAGES = 1000  # cached images a worker may list
MAX_HOSTNAME = 255
MAX_VERSION = 64
MAX_REASON = 64
MAX_MESSAGE = 64 * 1024  # a report's message (the master keeps 4 KiB of it)
MAX_LOG_TAIL = 1024 * 1024  # a report's log tail (the store keeps the last 64 KiB)
MAX_CONTAINER_ID = 128
MAX_TAIL_LINES = 1_000_000
MAX_STATES = 16
MAX_DECISIONS = 20_000
MAX_CANDIDATES = 256
MAX_SCORES = 64
MAX_REJECTIONS = 256
MAX_SHORT_TEXT = 128
MAX_LONG_TEXT = 4096
MAX_TIME = 1e11  # seconds since the epoch: year 5138
MAX_GPUS = 64

_ADDRESS_RE = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.-]{0,252}):([0-9]{1,5})$")
_REASON_RE = re.compile(r"^[A-Za-z0-9_.-]*$")
_CONTAINER_RE = re.compile(r"^[0-9a-fA-F]*$")


def check_id(field: str, value: str, *, optional: bool = False) -> str:
    if optional and not value:
        return value
    if not ID_RE.match(value or ""):
        shown = value[:64] + ("..." if len(value) > 64 else "")
        raise InvalidArgument(
            f"{field}: invalid id {shown!r}: use 1-63 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return value


def check_number(field: str, value: float, lo: float, hi: float) -> float:
    if not (isinstance(value, int | float) and math.isfinite(value) and lo <= value <= hi):
        raise InvalidArgument(f"{field} must be a number between {lo:g} and {hi:g}, got {value}")
    return value


def check_text(field: str, value: str, limit: int, *, multiline: bool = False) -> str:
    return validate_text(field, value, limit, multiline=multiline)


def check_count(field: str, items: Iterable[Any] | Mapping[Any, Any], limit: int) -> None:
    n = len(items)  # type: ignore[arg-type]
    if n > limit:
        raise InvalidArgument(f"{field}: too many entries ({n} > {limit})")


def check_refs(field: str, refs: Any) -> None:
    check_count(field, refs, MAX_REFS)
    for i, ref in enumerate(refs):
        check_id(f"{field}[{i}].task_id", ref.task_id)
        check_number(f"{field}[{i}].attempt", ref.attempt, 1, 2**31 - 1)


def check_images(field: str, images: Any) -> None:
    check_count(field, images, MAX_IMAGES)
    for i, image in enumerate(images):
        if not image or len(image) > MAX_IMAGE_LEN + 80 or not image.isprintable():
            raise InvalidArgument(f"{field}[{i}] is not an image name")


def check_telemetry(field: str, t: Any) -> None:
    """A worker's load figures feed every placement: no NaN, infinity or negatives."""
    for name in ("cpu_percent", "memory_percent", "disk_percent"):
        check_number(f"{field}.{name}", getattr(t, name), 0, 100)
    for name in ("memory_used_bytes", "memory_total_bytes", "disk_free_bytes"):
        check_number(f"{field}.{name}", getattr(t, name), 0, 2**63 - 1)
    check_number(f"{field}.load1", t.load1, 0, 1e6)
    check_number(f"{field}.timestamp", t.timestamp, 0, MAX_TIME)
    check_count(f"{field}.gpu_util_percent", t.gpu_util_percent, MAX_GPUS)
    for i, util in enumerate(t.gpu_util_percent):
        check_number(f"{field}.gpu_util_percent[{i}]", util, 0, 100)


def check_address(field: str, address: str) -> str:
    m = _ADDRESS_RE.match(address or "")
    if not m or not 1 <= int(m.group(1)) <= 65535:
        raise InvalidArgument(f"{field} must be host:port, got {address[:80]!r}")
    return address


# -- MasterWorker ---------------------------------------------------------------------


def check_register(request: Any) -> None:
    check_id("worker_id", request.worker_id)
    check_address("address", request.address)
    validate_labels(dict(request.labels))
    check_text("hostname", request.hostname, MAX_HOSTNAME)
    check_text("version", request.version, MAX_VERSION)
    check_refs("running", request.running)
    check_images("cached_images", request.cached_images)
    if request.HasField("telemetry"):
        check_telemetry("telemetry", request.telemetry)


def check_heartbeat(request: Any) -> None:
    check_id("worker_id", request.worker_id)
    check_refs("running", request.running)
    check_images("cached_images", request.cached_images)
    check_telemetry("telemetry", request.telemetry)


def check_report(request: Any) -> None:
    check_id("worker_id", request.worker_id)
    check_id("task_id", request.task_id)
    check_number("attempt", request.attempt, 1, 2**31 - 1)
    if len(request.reason) > MAX_REASON or not _REASON_RE.match(request.reason):
        raise InvalidArgument(f"reason must be up to {MAX_REASON} letters, digits, '_', '.', '-'")
    if len(request.message) > MAX_MESSAGE:
        raise InvalidArgument(f"message is longer than {MAX_MESSAGE} characters")
    if len(request.log_tail) > MAX_LOG_TAIL:
        raise InvalidArgument(f"log_tail is longer than {MAX_LOG_TAIL} characters")
    check_number("started_at", request.started_at, 0, MAX_TIME)
    check_number("finished_at", request.finished_at, 0, MAX_TIME)
    check_number("peak_memory_bytes", request.peak_memory_bytes, 0, 2**63 - 1)
    if len(request.container_id) > MAX_CONTAINER_ID or not _CONTAINER_RE.match(
        request.container_id
    ):
        raise InvalidArgument("container_id must be a hex Docker container id")


# -- Cluster ------------------------------------------------------------------------------


def check_task_id(request: Any) -> None:
    check_id("task_id", request.task_id)


def check_list_tasks(request: Any) -> None:
    check_count("states", request.states, MAX_STATES)
    check_number("limit", request.limit, 0, 2**31 - 1)
    check_id("worker_id", request.worker_id, optional=True)


def check_logs(request: Any) -> None:
    check_id("task_id", request.task_id)
    check_number("tail_lines", request.tail_lines, 0, MAX_TAIL_LINES)


def check_drain(request: Any) -> None:
    check_id("worker_id", request.worker_id)


# -- MasterAgent --------------------------------------------------------------------------


def check_watch(request: Any) -> None:
    check_id("agent_id", request.agent_id, optional=True)
    for name in ("policy", "profile", "model_version"):
        check_text(name, getattr(request, name), MAX_SHORT_TEXT)
    check_number("max_batch", request.max_batch, 0, MAX_DECISIONS)


def check_placements(request: Any) -> None:
    check_id("agent_id", request.agent_id, optional=True)
    check_number("sequence", request.sequence, 0, 2**63 - 1)
    check_count("decisions", request.decisions, MAX_DECISIONS)
    for i, d in enumerate(request.decisions):
        check_decision(f"decisions[{i}]", d)
    if request.HasField("shadow"):
        check_shadow_report("shadow", request.shadow)


def check_shadow_report(field: str, r: Any) -> None:
    """Counts that can be true: each at most the one it is a part of."""
    check_text(f"{field}.policy", r.policy, MAX_SHORT_TEXT)
    check_number(f"{field}.decisions", r.decisions, 0, 2**63 - 1)
    for part, whole in (("disagreements", "decisions"), ("other_worker", "disagreements")):
        value, most = getattr(r, part), getattr(r, whole)
        if not 0 <= value <= most:
            raise InvalidArgument(
                f"{field}.{part} must be between 0 and {field}.{whole} ({most}), got {value}"
            )


def check_decision(field: str, d: Any) -> None:
    check_id(f"{field}.task_id", d.task_id)
    check_number(f"{field}.attempt", d.attempt, 0, 2**31 - 1)
    check_id(f"{field}.worker_id", d.worker_id, optional=True)
    for name in ("policy", "profile", "model_version", "source"):
        check_text(f"{field}.{name}", getattr(d, name), MAX_SHORT_TEXT)
    for name in ("summary", "hint", "reject_reason"):
        check_text(f"{field}.{name}", getattr(d, name), MAX_LONG_TEXT, multiline=True)
    check_number(f"{field}.decided_at", d.decided_at, 0, MAX_TIME)
    check_count(f"{field}.candidates", d.candidates, MAX_CANDIDATES)
    for j, c in enumerate(d.candidates):
        check_id(f"{field}.candidates[{j}].worker_id", c.worker_id)
        check_number(f"{field}.candidates[{j}].total", c.total, -1e12, 1e12)
        check_count(f"{field}.candidates[{j}].scores", c.scores, MAX_SCORES)
        for name, score in c.scores.items():
            check_text(f"{field}.candidates[{j}].scores key", name, MAX_SHORT_TEXT)
            check_number(f"{field}.candidates[{j}].scores[{name[:32]}]", score, -1e12, 1e12)
    check_count(f"{field}.rejections", d.rejections, MAX_REJECTIONS)
    for reason, count in d.rejections.items():
        check_text(f"{field}.rejections key", reason, MAX_LONG_TEXT, multiline=True)
        check_number(f"{field}.rejections[{reason[:32]}]", count, 0, 2**31 - 1)


# -- Worker -------------------------------------------------------------------------------


def check_cancel_attempt(request: Any) -> None:
    check_id("task_id", request.task_id)
    check_number("attempt", request.attempt, 0, 2**31 - 1)
    check_text("reason", request.reason, MAX_LONG_TEXT, multiline=True)


def check_worker_logs(request: Any) -> None:
    check_id("task_id", request.task_id)
    check_number("attempt", request.attempt, 0, 2**31 - 1)
    check_number("tail_lines", request.tail_lines, 0, MAX_TAIL_LINES)
