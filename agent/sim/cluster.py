"""The heterogeneous-cluster simulator: openb-style nodes with cpu, memory and GPUs.

Its cluster model is a `DeviceClusterState` (per-device GPU accounting, so shares of a
GPU must fit on one device), and every decision is made by `place_batch`, the very
function the live agent calls, with the policy's profile.

The run follows the FGD paper's protocol (Weng et al., ATC'23): pods arrive in trace
order and never leave; a pod that fits nowhere is refused (unplaced) and dropped.
Arrivals stop once the GPUs they asked for add up to the cluster's GPU capacity; if
the trace runs out first it is extended with pods drawn from it at random (seeded),
the paper's workload inflation. The unallocated-GPU fraction is then what the
refusals left idle, which a policy that fragments less keeps low.

Because pods never leave and refused ones are dropped, placing the whole arrival
stream as one FIFO batch decides exactly what placing the pods one by one would:
each decision sees every earlier reservation. That is how the run is done.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from cloudai.agent.policy.core import place_batch
from cloudai.agent.policy.fgd import Workload
from cloudai.agent.policy.gpu_devices import DeviceClusterState
from cloudai.agent.policy.pickers import Cursor
from cloudai.agent.policy.placement import Placement
from cloudai.agent.policy.profiles import Profile
from cloudai.agent.policy.snapshot import CPU, GPU, ClusterState, TaskRequest, WorkerSpec
from cloudai.errors import ConfigError
from cloudai.model import Resources

from .machine import Outcome
from .policies import Policy
from .trace import Nodes, Trace


def node_state(nodes: Nodes) -> DeviceClusterState:
    """Empty nodes, each GPU a device with its whole capacity free."""
    base = ClusterState.from_workers(
        WorkerSpec(id=i, capacity=Resources(float(c), int(m), float(g)))
        for i, c, m, g in zip(nodes.ids, nodes.cpu, nodes.memory, nodes.gpus, strict=True)
    )
    width = max(int(nodes.gpus.max(initial=0)), 1)
    dev = (np.arange(width)[None, :] < nodes.gpus[:, None]).astype(np.float64)
    return DeviceClusterState.with_devices(base, dev)


def arrival_stream(trace: Trace, gpu_capacity: float, seed: int) -> np.ndarray:
    """Pod indices in arrival order until their GPU demand reaches `gpu_capacity`."""
    rng = np.random.default_rng(seed)
    demand = np.cumsum(trace.gpu)
    if demand.size and demand[-1] >= gpu_capacity:
        return np.arange(int(np.searchsorted(demand, gpu_capacity)) + 1)
    if trace.gpu.sum() <= 0:
        return np.arange(len(trace))  # nothing to saturate: replay the trace once
    need = gpu_capacity - (demand[-1] if demand.size else 0.0)
    extra = rng.choice(len(trace), size=int(need / trace.gpu.mean() * 1.5) + 16)
    more = np.cumsum(trace.gpu[extra])
    extra = extra[: int(np.searchsorted(more, need)) + 1]
    return np.concatenate([np.arange(len(trace)), extra])


def stream_tasks(trace: Trace, stream: np.ndarray) -> list[TaskRequest]:
    # queued_at is the position in the stream, so FIFO keeps arrival order even for
    # the resampled pods, whose trace times repeat.
    return [
        TaskRequest(
            task_id=f"p{k}-{int(trace.job_id[i])}",
            cpu=float(trace.procs[i]),
            memory_bytes=int(trace.memory[i]),
            gpu=float(trace.gpu[i]),
            created_at=float(k),
            queued_at=float(k),
        )
        for k, i in enumerate(stream.tolist())
    ]


def saturate(trace: Trace, nodes: Nodes, policy: Policy, seed: int = 0) -> Outcome:
    """One saturation run; see the module doc."""
    state = node_state(nodes)
    capacity = float(state.cap[GPU].sum())
    if not capacity:
        raise ConfigError(
            f"none of the {len(nodes)} nodes has a GPU: a saturation run fills the GPUs "
            "(FGD's protocol), so it needs GPU nodes"
        )
    stream = arrival_stream(trace, capacity, seed)
    tasks = stream_tasks(trace, stream)
    profile = _seeded(policy, trace, seed)
    placements = place_batch(tasks, state, profile, orderer="fifo", now=0.0, mutate=True)
    placed = {p.task_id for p in placements if p.placed}
    sub = trace.take(stream, f"{trace.name}[saturated]")
    start = np.array([0.0 if t.task_id in placed else np.nan for t in tasks])
    sub.submit = np.zeros(len(tasks))  # all arrive before the cluster saturates
    allocated = float(capacity - state.free[GPU].sum())
    return Outcome(
        sub,
        start,
        start + sub.run,
        float(state.cap[0].sum()),
        unallocated_gpu_frac=1.0 - allocated / capacity if capacity else None,
        utilization=allocated / capacity if capacity else 0.0,
    )


def decide(
    tasks: Sequence[TaskRequest],
    state: ClusterState,
    policy: Policy,
    now: float,
    runtime: Mapping[str, float] | None = None,
    mutate: bool = False,
) -> list[Placement]:
    """One scheduling round of the simulator for a snapshot: the policy's orderer
    (fed the runtime estimates and, like the live agent, the free and largest cpu)
    and its profile, through `place_batch`."""
    params = dict(policy.orderer_params)
    if policy.orderer != "fifo":
        params["runtime"] = dict(runtime or {})
    if policy.orderer == "learned":
        params.update(
            backfill=True,
            free=float(state.free[CPU].max(initial=0.0)),
            capacity=float(state.cap[CPU].max(initial=0.0)),
        )
    profile = dataclasses.replace(policy.profile, orderer=policy.orderer)
    profile = _param(profile, policy.orderer, **params)
    return place_batch(tasks, state, profile, now=now, mutate=mutate)


def _seeded(policy: Policy, trace: Trace, seed: int):
    """The profile with its stateful plugins wired for one run: one random stream
    for the whole run, one round-robin cursor, the trace's workload for FGD."""
    profile = policy.profile
    if "random" in profile.scorers:
        profile = _param(profile, "random", rng=np.random.default_rng(seed))
    if "roundrobin" in profile.scorers:
        profile = _param(profile, "roundrobin", cursor=Cursor())
    if "fgd" in profile.scorers:
        workload = Workload.from_demands(trace.procs, trace.memory, trace.gpu)
        profile = _param(profile, "fgd", workload=workload)
    return profile


def _param(profile: Profile, plugin: str, **params: Any) -> Profile:
    merged = {k: dict(v) for k, v in profile.params.items()}
    merged.setdefault(plugin, {}).update(params)
    return dataclasses.replace(profile, params=merged)
