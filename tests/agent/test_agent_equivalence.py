"""The fast pipeline decides exactly like a straightforward reference implementation.

The reference below is the pipeline as the docs describe it, with no shortcut: every
filter on every worker for every task, every scorer's own `score` and `normalise`, a
full sort for the pick. The fast path (shortlists for replicas, folded linear scorers,
cached filter prefixes) must choose the same workers, in the same candidate order, with
the same rejection counts and hints, and totals and scores equal up to rounding.
"""

from __future__ import annotations

import numpy as np
import pytest

from cloudai.agent.policy import (
    REGISTRY,
    Candidate,
    ClusterState,
    Kind,
    Pipeline,
    Placement,
    Profile,
    TaskRequest,
    make_state,
    make_task,
    make_worker,
    normalise,
    place_batch,
    resolve_profile,
)
from cloudai.agent.policy.hints import placement_hint
from cloudai.agent.policy.holds import HELD_REASON, MAX_HOLD_TRIES
from cloudai.agent.policy.scorers import _Linear, terms
from cloudai.agent.policy.synthetic import random_cluster, random_tasks

NOW = 1e6


def reference_place(
    tasks: list[TaskRequest], state: ClusterState, profile, registry=REGISTRY, top_k: int = 3
) -> list[Placement]:
    pipe = Pipeline.build(resolve_profile(profile, registry), registry)
    hold_after = pipe.profile.hold_after_s
    state = state.copy()
    out, unplaced = [], []
    held = None  # (worker index, the placement held for)
    nowhere = set()  # the kinds of task no worker could ever take (a look each)
    for i in pipe.orderer.order(tasks, NOW):
        task = tasks[i]
        alive, rejections = _chain(pipe, task, state, None if held is None else held[0])
        p = Placement(task.task_id, task.attempt, feasible=int(alive.sum()), workers=len(state))
        p.rejections = rejections
        out.append(p)
        if task.pinned_worker:
            _pin(pipe, task, state, alive, p, unplaced, held)
        elif not alive.any():  # nothing to score (and scorers may count their calls)
            unplaced.append((p, task, None))
        else:
            _score(pipe, task, state, alive, p, top_k, unplaced)
        waited = NOW - (task.queued_at or task.created_at)
        unknown = task.pinned_worker and task.pinned_worker not in state.index
        if not p.placed and held is None and hold_after is not None and waited >= hold_after:
            if unknown:  # nothing to hold, and it costs no look
                continue
            kind = (task.demand, task.image, sorted(task.selector.items()), task.avoid_workers)
            kind = repr((*kind, task.pinned_worker))
            if kind not in nowhere and len(nowhere) < MAX_HOLD_TRIES:
                j = _reference_hold(pipe, task, state)
                held = None if j is None else (j, p)
                nowhere.add(kind)
    for p, task, only in unplaced:
        p.hint = placement_hint(task, state, only)
    if held is not None:
        note = f"worker {state.ids[held[0]]} is held for it (no newer task goes there)"
        held[1].hint = f"{held[1].hint}; {note}" if held[1].hint else note
    return out


def _score(pipe, task, state, alive, p, top_k, unplaced) -> None:
    rows = {
        s.name: (w, normalise(s.score(task, state, alive), s.bounds, alive))
        for s, w in pipe.scorers
    }
    total = sum(w * row for w, row in rows.values())
    order = sorted(np.flatnonzero(alive).tolist(), key=lambda j: (-total[j], j))[:top_k]
    if not order:
        unplaced.append((p, task, None))
        return
    p.worker_id = state.ids[order[0]]
    p.candidates = [
        Candidate(state.ids[j], float(total[j]), {n: float(r[j]) for n, (_, r) in rows.items()})
        for j in order
    ]
    state.reserve(order[0], task.cpu, task.memory_bytes, task.gpu)


def _reference_hold(pipe: Pipeline, task: TaskRequest, state: ClusterState) -> int | None:
    """holds.py as its doc says it: of the workers that pass every non-resource filter
    and have the capacity, the one whose free room falls shortest of the demand."""
    best, best_short = None, float("inf")
    for j in range(len(state)):
        if task.pinned_worker and state.ids[j] != task.pinned_worker:
            continue
        others = [f for f in pipe.filters if f.name not in ("cpu", "memory", "gpu")]
        masks = [f.filter(task, state) for f in others]
        if any(m is not None and not m[j] for m in masks):
            continue
        cap, free = state.capacity[j], state.capacity[j] - state.allocated[j]
        if any(cap[r] < task.demand[r] - 1e-9 for r in range(3)):
            continue
        short = max(
            max(task.demand[r] - free[r], 0.0) / cap[r] if cap[r] else 0.0 for r in range(3)
        )
        if short < best_short:
            best, best_short = j, short
    return best


def _chain(pipe: Pipeline, task: TaskRequest, state: ClusterState, held: int | None):
    alive, rejections = np.ones(len(state), bool), {}
    healthy = [f for f in pipe.filters if getattr(f, "per_round", False)]
    masks = [f.filter(task, state) for f in healthy]
    if held is not None and all(m is None or m[held] for m in masks):
        alive[held] = False
        rejections[HELD_REASON] = 1
    for f in pipe.filters:
        mask = f.filter(task, state)
        if mask is None:
            continue
        new = alive & mask
        lost = int(alive.sum() - new.sum())
        if lost:
            for reason, n in f.reasons(task, state, alive.copy(), lost).items():
                rejections[reason] = rejections.get(reason, 0) + n
        alive = new
    return alive, rejections


def _pin(pipe, task, state, alive, p, unplaced, held) -> None:
    p.pinned = True
    j = state.index.get(task.pinned_worker)
    if j is None:
        p.rejections = {"unknown worker": 1}
        p.hint = f"worker {task.pinned_worker} is not registered: pin another worker"
    elif held is not None and held[0] == j:
        p.rejections = {HELD_REASON: 1}
        unplaced.append((p, task, j))
    elif alive[j]:
        p.worker_id, p.rejections = task.pinned_worker, {}
        p.candidates = [Candidate(task.pinned_worker, 0.0)]
        state.reserve(j, task.cpu, task.memory_bytes, task.gpu)
    else:
        one = np.zeros(len(state), bool)
        one[j] = True
        for f in pipe.filters:
            mask = f.filter(task, state)
            if mask is not None and not mask[j]:
                p.rejections = f.reasons(task, state, one, 1)
                break
        unplaced.append((p, task, j))


def assert_same(fast: list[Placement], ref: list[Placement]) -> None:
    assert len(fast) == len(ref)
    for a, b in zip(fast, ref, strict=True):
        assert (a.task_id, a.worker_id, a.pinned, a.feasible, a.workers) == (
            b.task_id,
            b.worker_id,
            b.pinned,
            b.feasible,
            b.workers,
        )
        assert (a.rejections, a.hint) == (b.rejections, b.hint), a.task_id
        assert [c.worker_id for c in a.candidates] == [c.worker_id for c in b.candidates]
        for ca, cb in zip(a.candidates, b.candidates, strict=True):
            assert ca.total == pytest.approx(cb.total, abs=1e-9)
            assert ca.scores == pytest.approx(cb.scores, abs=1e-9)


class Favourite:
    """A scorer that is neither linear nor cached, with min-max normalisation."""

    name = "favourite"
    bounds = None

    def score(self, task, state, mask):
        return np.array([(sum(map(ord, w)) + int(task.cpu * 4)) % 7 for w in state.ids], float)


class Rotating:
    """A stateful scorer: each call favours the next worker (like round-robin), so the
    pipeline must call it once per scored task, exactly as the reference does."""

    name = "rotating"
    bounds = (0.0, 1.0)

    def __init__(self) -> None:
        self.calls = 0

    def score(self, task, state, mask):
        self.calls += 1
        n = max(len(state), 1)
        return 1.0 - ((np.arange(n) - self.calls) % n) / n


class FirstByIndex:
    """A cached scorer whose rows do not depend on the task at all (key None)."""

    name = "first_by_index"
    bounds = (0.0, 1.0)

    def cache_key(self, task):
        return None

    def score(self, task, state, mask):
        return 1.0 - np.arange(len(state)) / max(len(state), 1)


class OpaqueFit(_Linear):
    """A linear scorer whose `terms` compare the view (numpy), so they cannot be
    fused: the plan must fall back to calling them."""

    name = "opaque_fit"

    def terms(self, v, gpu):
        k = 2.0 + (np.asarray(v.b_gpu) > 0)
        return terms((v.a_cpu + v.a_mem + v.a_gpu) / k, v.b_cpu / k, v.b_mem / k, v.b_gpu / k)


def _registry():
    reg = REGISTRY.copy()
    for cls in (Favourite, Rotating, FirstByIndex, OpaqueFit):
        reg.register(Kind.SCORER, cls.name, cls)
    return reg


PROFILES = [
    "default",
    "binpack",
    "spread",
    "tetris",
    Profile("mixed", {"least_allocated": 2.0, "balanced_allocation": 0.5, "image_locality": 3}),
    Profile("live", {"live_load": 1.0, "most_allocated": 1.0}),
    Profile("other", {"favourite": 1.0, "balanced_allocation": 1.0}),
    Profile("reordered", {"most_allocated": 1.0}, filters=("gpu", "selector", "cpu", "memory")),
    Profile("stateful", {"rotating": 1.0, "least_allocated": 0.5}),
    Profile("plugins", {"opaque_fit": 1.0, "first_by_index": 0.2, "live_load": 1.0}),
]


def _with_pins(tasks: list[TaskRequest], state: ClusterState, seed: int) -> list[TaskRequest]:
    """Pin a few tasks: to live, dead and unknown workers."""
    rng = np.random.default_rng(seed + 7)
    for t in tasks:
        roll = rng.random()
        if roll < 0.02:
            t.pinned_worker = state.ids[int(rng.integers(len(state)))]
        elif roll < 0.025:
            t.pinned_worker = "nobody"
    return tasks


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p if isinstance(p, str) else p.name)
@pytest.mark.parametrize("workers,n_tasks,seed", [(7, 60, 1), (45, 400, 2), (160, 1200, 3)])
def test_random_clusters_decide_like_the_reference(profile, workers, n_tasks, seed):
    state = random_cluster(workers, seed)
    tasks = _with_pins(random_tasks(n_tasks, seed, workers=workers), state, seed)
    reg = _registry()
    fast = place_batch(tasks, state, profile, now=NOW, registry=reg)
    assert_same(fast, reference_place(tasks, state, profile, reg))
    assert any(p.placed for p in fast) and any(not p.placed for p in fast)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("top_k", [1, 3, 6])
def test_single_task_jobs_and_top_k(seed, top_k):
    state = random_cluster(80, seed)
    tasks = random_tasks(500, seed, workers=80, max_job=1)
    fast = place_batch(tasks, state, now=NOW, top_k=top_k)
    assert_same(fast, reference_place(tasks, state, "default", top_k=top_k))


def _dyadic_cluster(seed: int) -> ClusterState:
    """Identical workers with power-of-two sizes: every sum is exact, so equal workers
    tie exactly and the tie must go to the lowest index, in both implementations."""
    rng = np.random.default_rng(seed)
    workers = []
    for i in range(24):
        cpu, mem, gpu = [(4, "4g", 0), (8, "16g", 0), (8, "8g", 2)][i % 3]
        w = make_worker(f"w{i:02d}").cpu(cpu).mem(mem).gpu(gpu)
        if rng.random() < 0.1:
            w = w.unhealthy()
        workers.append(w.label("zone", "ab"[i % 2]).image(f"img{i % 2}"))
    return make_state(*workers)


def _dyadic_tasks(seed: int) -> list[TaskRequest]:
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < 150:
        cpu = float(rng.choice([0.25, 0.5, 1.0, 2.0]))
        mem = int(rng.choice([256, 512, 1024, 2048])) * 1024**2
        gpu = float(rng.choice([0.0, 0.0, 0.0, 0.5, 1.0]))
        image = f"img{int(rng.integers(3))}"
        zone = "ab"[int(rng.integers(2))] if rng.random() < 0.2 else ""
        for _ in range(int(rng.choice([1, 2, 5]))):
            t = make_task(f"t{len(out):03d}").cpu(cpu).mem(mem).gpu(gpu).image(image)
            t = t.queued(float(len(out)))
            out.append((t.selector(zone=zone) if zone else t).build())
    return out


@pytest.mark.parametrize("profile", ["default", "binpack", "spread", "tetris"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_ties_go_to_the_lowest_index(profile, seed):
    state, tasks = _dyadic_cluster(seed), _dyadic_tasks(seed)
    fast = place_batch(tasks, state, profile, now=NOW)
    assert_same(fast, reference_place(tasks, state, profile))
