"""How counts read: rejections, in a decision's summary and in `cloudai explain`; a
shadow policy's disagreements, in the agent's log and in `cloudai status`.

Kept free of numpy and the policy library: the master imports it at start-up, before
it blocks SIGTERM in its threads (numpy's BLAS starts threads when it is imported)."""

from __future__ import annotations


def counted_reasons(rejections: dict[str, int]) -> list[str]:
    """["2 workers unhealthy", "1 insufficient cpu"]: most first, ties by name."""
    ranked = sorted(rejections.items(), key=lambda x: (-x[1], x[0]))
    return [f"{n} {_plural(r, n)}" for r, n in ranked]


def _plural(reason: str, n: int) -> str:
    if n == 1 or not reason.startswith("worker "):
        return reason
    return reason.replace("worker ", "workers ", 1)


def shadow_kinds(disagreements: int, other_worker: int) -> str:
    """' (another worker 1, another task chosen 3)': the disagreements on another
    worker, and those where the shadow chose another task; '' when there are none."""
    if not disagreements:
        return ""
    return f" (another worker {other_worker}, another task chosen {disagreements - other_worker})"
