"""Human-readable explanations of placement decisions (`cloudai explain`)."""

from __future__ import annotations

from cloudai.model import DecisionRecord, Task, TaskState
from cloudai.reasons import counted_reasons

from .registry import Unreachable, engine_trouble_text

MAX_NAMED = 3  # more workers left out for one cause are counted, not named


def left_out_rejections(
    unreachable: list[tuple[str, Unreachable]], troubled: list[tuple[str, str]]
) -> dict[str, int]:
    """The workers left out of placement, unreachable or unable to run containers, as
    rejections of a decision (reason -> count), so that `explain` of an unplaced task
    names them (or counts them, past MAX_NAMED)."""
    out: dict[str, int] = {}
    if len(unreachable) > MAX_NAMED:
        out["unreachable (last dispatch failed)"] = len(unreachable)
    else:
        out.update({mark.describe(worker_id): 1 for worker_id, mark in unreachable})
    if len(troubled) > MAX_NAMED:
        out["cannot run containers now (Docker engine)"] = len(troubled)
    else:
        out.update({engine_trouble_text(worker_id, why): 1 for worker_id, why in troubled})
    return out


def explain_text(task: Task, decisions: list[DecisionRecord]) -> str:
    """Why a task runs where it runs, or why it is still waiting. Latest decision first."""
    lines = [f"task {task.id} ({task.spec.image}) is {task.state.value}"]
    committed = next((d for d in decisions if d.committed), None)
    latest = decisions[0] if decisions else None
    if task.state == TaskState.PENDING:
        lines += _pending(task, latest)
    elif committed is not None:
        lines += _placed(committed)
        if task.state.terminal and task.state != TaskState.SUCCEEDED:
            lines.append(f"ended ({task.reason or '-'}): {task.message or '-'}")
    elif task.state.terminal:
        lines.append(f"ended without being placed ({task.reason or '-'}): {task.message or '-'}")
    elif latest is not None:
        lines += _pending(task, latest)
    else:
        lines.append("no placement decision recorded")
    return "\n".join(lines)


def _placed(d: DecisionRecord) -> list[str]:
    how = "fallback (no agent answering)" if d.fallback else d.source or "agent"
    lines = [
        f"placed on {d.worker_id} at attempt {d.attempt} by {how}: "
        f"policy={d.policy or '-'} profile={d.profile or '-'} model={d.model_version or '-'}"
    ]
    if d.summary:
        lines.append(f"why: {d.summary}")
    lines += _candidates(d)
    lines += _rejections(d)
    return lines


def _pending(task: Task, d: DecisionRecord | None) -> list[str]:
    if task.spec.pinned_worker and (d is None or not d.rejections):
        reason = d.reject_reason if d else ""
        return [
            f"waiting for pinned worker {task.spec.pinned_worker}"
            + (f": {reason}" if reason else "")
        ]
    if d is None:
        return [
            "waiting: no placement attempt yet (is an agent running? the master falls back soon)"
        ]
    lines = ["waiting: " + (d.summary or d.reject_reason or "not placed")]
    lines += _rejections(d)
    if d.hint:
        lines.append(f"smallest change that would make it placeable: {d.hint}")
    if d.worker_id and d.reject_reason:
        lines.append(f"last placement on {d.worker_id} was rejected: {d.reject_reason}")
    return lines


def _candidates(d: DecisionRecord) -> list[str]:
    out = []
    for i, c in enumerate(d.candidates, 1):
        scores = ", ".join(f"{k} {v:.1f}" for k, v in sorted(c.get("scores", {}).items()))
        out.append(f"  #{i} {c['worker_id']}: total {float(c.get('total', 0)):.1f} ({scores})")
    return (["candidates:"] + out) if out else []


def _rejections(d: DecisionRecord) -> list[str]:
    if not d.rejections:
        return []
    return ["workers rejected: " + "; ".join(counted_reasons(d.rejections))]
