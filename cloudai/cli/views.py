"""Views over protobuf messages, shared by the `cloudai` CLI and the `master>` console."""

from __future__ import annotations

import json
import shlex
import time
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from cloudai.proto import client_pb2 as cpb
from cloudai.proto import common_pb2 as pb
from cloudai.reasons import shadow_kinds

from .render import ago, box, duration, panel, size

_INT64 = {
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_FIXED64,
    FieldDescriptor.TYPE_SFIXED64,
}


def _numbers(desc: Descriptor, d: dict[str, Any]) -> dict[str, Any]:
    """`d` (MessageToDict of a `desc` message) with its 64-bit integers as JSON
    numbers: the proto3 JSON mapping writes them as strings, which `jq` and scripts
    would then have to convert."""
    for f in desc.fields:
        if f.name not in d or f.message_type and f.message_type.GetOptions().map_entry:
            continue  # our maps hold strings and 32-bit numbers
        if f.type in _INT64:
            d[f.name] = [int(v) for v in d[f.name]] if f.is_repeated else int(d[f.name])
        elif f.message_type is not None and f.message_type.file.package.startswith("cloudai"):
            subs = d[f.name] if f.is_repeated else [d[f.name]]
            for sub in subs:
                _numbers(f.message_type, sub)
    return d


def to_json(obj: Message | list[Message] | dict[str, Any]) -> str:
    def conv(m: Any) -> Any:
        if isinstance(m, Message):
            d = MessageToDict(
                m, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
            )
            return _numbers(m.DESCRIPTOR, d)
        if isinstance(m, list):
            return [conv(x) for x in m]
        if isinstance(m, dict):
            return {k: conv(v) for k, v in m.items()}
        return m

    return json.dumps(conv(obj), indent=2, sort_keys=True)


def state_name(value: int) -> str:
    return pb.TaskState.Name(value).removeprefix("TASK_STATE_")


def health_name(value: int) -> str:
    return pb.WorkerHealth.Name(value).removeprefix("WORKER_HEALTH_")


def _res(r: pb.Resources) -> str:
    gpu = f" gpu={r.gpu:g}" if r.gpu else ""
    return f"cpu={r.cpu:g} mem={size(r.memory_bytes)}{gpu}"


def _health(w: pb.WorkerInfo) -> str:
    """The health, and for how long the worker has been gone or unreachable, or that
    its Docker engine does not answer (`--json` and `explain` say why), if so."""
    if w.left_at:
        return f"{health_name(w.health)} (left {max(0.0, time.time() - w.left_at):.0f}s ago)"
    if w.engine_trouble and not w.unreachable_since:
        return f"{health_name(w.health)} (no Docker engine)"
    if not w.unreachable_since:
        return health_name(w.health)
    since = max(0.0, time.time() - w.unreachable_since)
    return f"{health_name(w.health)} (unreachable {since:.0f}s)"


def _last_beat(w: pb.WorkerInfo) -> str:
    """When the worker was last heard from; for one known from the store that a
    restarted master has not heard from, that time only if the store has it right,
    else that it has not been heard from since the master started."""
    if w.last_heartbeat or w.heard_since_master_start:
        return ago(w.last_heartbeat)
    return "none since master start"


def _load(w: pb.WorkerInfo) -> tuple[str, str]:
    """CPU and memory use from the last heartbeat; '-' for an inactive worker, whose
    last figures describe a process that is gone (--json keeps them)."""
    if w.health == pb.WORKER_HEALTH_INACTIVE:
        return "-", "-"
    return f"{w.telemetry.cpu_percent:.0f}%", f"{w.telemetry.memory_percent:.0f}%"


def workers_table(workers: list[pb.WorkerInfo]) -> str:
    rows = []
    for w in workers:
        labels = ",".join(f"{k}={v}" for k, v in sorted(w.labels.items())) or "-"
        rows.append(
            [
                w.id,
                _health(w),
                w.address,
                _res(w.capacity),
                _res(w.allocated),
                *_load(w),
                len(w.running),
                labels,
                _last_beat(w),
            ]
        )
    headers = [
        "ID",
        "STATE",
        "ADDRESS",
        "CAPACITY",
        "ALLOCATED",
        "CPU",
        "MEM",
        "TASKS",
        "LABELS",
        "LAST BEAT",
    ]
    return box(f"Workers ({len(workers)})", headers, rows)


def tasks_table(tasks: list[pb.Task]) -> str:
    rows = []
    for t in tasks:
        code = str(t.exit_code) if t.has_exit_code else "-"
        rows.append(
            [
                t.id,
                t.spec.name or "-",
                t.spec.image,
                state_name(t.state),
                t.worker_id or "-",
                t.attempt,
                code,
                t.reason or "-",
                ago(t.created_at),
            ]
        )
    headers = ["ID", "NAME", "IMAGE", "STATE", "WORKER", "ATTEMPT", "EXIT", "REASON", "CREATED"]
    return box(f"Tasks ({len(tasks)})", headers, rows)


def task_panel(t: pb.Task) -> str:
    pairs: list[tuple[str, object]] = [
        ("id", t.id),
        ("name", t.spec.name or "-"),
        ("image", t.spec.image),
        ("command", shlex.join(t.spec.command) or "(image default)"),
        ("state", state_name(t.state)),
        ("worker", t.worker_id or "-"),
        ("attempt", t.attempt),
        ("exit code", t.exit_code if t.has_exit_code else "-"),
        ("reason", t.reason or "-"),
        ("message", t.message or "-"),
        ("requested", _res(t.spec.resources)),
        ("priority", t.spec.priority),
        ("retries", f"{t.retries_used}/{t.spec.max_retries}"),
        ("created", ago(t.created_at)),
        ("ran for", duration(t.started_at, t.finished_at)),
    ]
    if t.peak_memory_bytes:
        pairs.append(("peak memory", size(t.peak_memory_bytes)))
    for a in t.attempts:
        pairs.append(
            (
                f"attempt {a.number}",
                f"{state_name(a.state)} on {a.worker_id} exit={_attempt_exit(a)} "
                f"{a.reason or ''}".rstrip(),
            )
        )
    return panel(f"Task {t.id}", pairs)


# Attempts that ended with a container's own exit status. The others (docker_error,
# pull_failed, worker_lost, ...) never produced one: their 0 is only the field's default.
_EXITED = frozenset({"completed", "nonzero_exit", "oom_killed"})


def _attempt_exit(a: pb.Attempt) -> str:
    return str(a.exit_code) if a.exit_code or a.reason in _EXITED else "-"


def _agents(s: cpb.StatusResponse) -> str:
    """How many agent streams are open; more than one is a misconfiguration."""
    ids = ", ".join(s.connected_agent_ids)
    if s.agents_connected <= 1:
        return f"{s.agents_connected} connected" + (f" ({ids})" if ids else "")
    return f"{s.agents_connected} connected ({ids}): run only one agent per master"


def _agent_policy(s: cpb.StatusResponse) -> str:
    """What the agent said it runs when it connected: policy, profile, model."""
    model = f", model {s.agent_model_version}" if s.agent_model_version else ""
    return f"{s.agent_policy or '-'} (profile {s.agent_profile or '-'}{model})"


def _shadow(r) -> str:
    """The agent's shadow policy and how often it would have decided otherwise."""
    if not r.decisions:
        return f"{r.policy}: no decision compared yet"
    rate = r.disagreements / r.decisions
    kinds = shadow_kinds(r.disagreements, r.other_worker)
    return f"{r.policy}: disagrees on {rate:.1%} of {r.decisions} decision(s){kinds}"


def status_panel(s: cpb.StatusResponse) -> str:
    tasks = ", ".join(f"{k.lower()}={v}" for k, v in sorted(s.tasks_by_state.items())) or "none"
    agent = (
        f"{s.agent_id} (answering)"
        if s.agent_connected
        else (
            f"{s.agent_id} (not answering: master falls back)"
            if s.agent_id
            else "none connected (master places tasks by fallback)"
        )
    )
    pairs = [
        ("version", s.version),
        ("uptime", f"{s.uptime_s:.0f}s"),
        ("store", s.store),
        (
            "workers",
            f"{s.workers_active} active, {s.workers_inactive} inactive, "
            f"{s.workers_draining} draining"
            + (f", {s.workers_unreachable} unreachable" if s.workers_unreachable else "")
            + (f", {s.workers_no_engine} without Docker engine" if s.workers_no_engine else ""),
        ),
        ("capacity", _res(s.capacity)),
        ("allocated", _res(s.allocated)),
        ("tasks", tasks),
        ("agent", agent),
    ]
    if s.agent_id and (s.agent_policy or s.agent_profile):
        pairs.append(("policy", _agent_policy(s)))
    if s.HasField("agent_shadow"):
        pairs.append(("shadow", _shadow(s.agent_shadow)))
    pairs.append(("agents", _agents(s)))
    return panel("CloudAI master", pairs)
