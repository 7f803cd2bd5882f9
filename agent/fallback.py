"""The master's own placement, used when no agent answers: the same policy library.

The master calls `decide_default(batch)` with the SchedulingBatch it would have sent to
an agent. It marks the resulting decisions as fallback (or dry-run) itself.
"""

from __future__ import annotations

from cloudai.proto import master_agent_pb2

from .policy.core import place_batch
from .policy.profiles import Profile, resolve_profile
from .wire import batch_from_pb, decision_to_pb


def decide_default(
    batch: master_agent_pb2.SchedulingBatch, profile: Profile | str = "default"
) -> list[master_agent_pb2.Decision]:
    """One Decision per task of `batch`, placed with `profile` (default: "default")."""
    chosen = resolve_profile(profile)
    tasks, state = batch_from_pb(batch)
    placements = place_batch(tasks, state, chosen, now=batch.timestamp or None)
    return [
        decision_to_pb(p, policy=chosen.name, profile=chosen.name, source="master")
        for p in placements
    ]
