#!/usr/bin/env python3
"""The owner index on SQLite's task table: what it costs task writes, what it saves
an owner's ListTasks.

    python benchmarks/store_owner_index.py [--prefill 20000] [--write-tasks 2000]
        [--batch 100] [--sizes 20000,100000] [--owners 50] [--limits 1000,100]
        [--queries 30] [--reps 5] [--json]

Two variants of the same store, without and with `idx_tasks_owner` (an expression
index on `json_extract(doc, '$.spec.owner')`, created or dropped on the open store),
interleaved in one process: each repetition runs both, in alternating order.

1. Writes, through the store's own API as the master issues them: on a copy of a
   store holding `--prefill` finished tasks, `--write-tasks` tasks are submitted
   (create_task, one transaction each), placed in batches of `--batch` (update_task
   plus add_decision, one transaction per batch), started (update_task) and finished
   (put_result, update_task). The Task objects are built before the clock starts, so
   the figure is the store's share of the hot path only, where the index weighs most.
2. Listing: a store of each of `--sizes` tasks spread over `--owners` owners (the
   newest 1,000 live, the rest finished); per repetition, `--queries` owners' listings
   through `list_tasks(owner=..., limit=L)` for each of `--limits` (1,000 is ListTasks'
   default, 100 the CLI's), the SQL alone (rows fetched, not decoded), an owner's
   live tasks (states PENDING, PLACED, RUNNING: `live_list_ms`) and an owner with no
   tasks. Also the time to build the index on that store, which is what an
   existing database pays once, on its first open with the index in the schema.
3. The EXPLAIN QUERY PLAN of the exact query `list_tasks` issues, in both variants.

Figures are medians over `--reps` repetitions (a repetition's listing figure is itself
the median over its queries). Prints a table, or with --json one JSON object.

With the defaults and --reps 7 on a shared 2-core machine: writes 265 -> 327 µs per
task (x1.24; every phase pays, as the index adds one to two WAL pages to each write
transaction of about six); an owner's list_tasks 45 -> 7.8 ms at 20k tasks and
112 -> 20 ms at 100k (limit 1,000), an owner's live tasks 1.9 -> 3.4 ms at 100k (the
planner then prefers the owner index to idx_tasks_state). The index was not added.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from cloudai.master.store import SQLiteStore
from cloudai.master.store import sqlite as sqlite_store
from cloudai.model import (
    Attempt,
    DecisionRecord,
    Resources,
    Result,
    Task,
    TaskSpec,
    TaskState,
)

GiB = 1024**3
LIVE = (TaskState.PENDING, TaskState.PLACED, TaskState.RUNNING)
WORKERS = [f"w-{i:03d}" for i in range(50)]
LOG = "step 1/3: loading\nstep 2/3: working\nstep 3/3: done\n"
OWNER_INDEX = "idx_tasks_owner"
OWNER_INDEX_DDL = (
    f"CREATE INDEX IF NOT EXISTS {OWNER_INDEX}"
    " ON tasks(json_extract(doc, '$.spec.owner'), created_at)"
)
VARIANTS = ("without", "with")


def set_owner_index(store: SQLiteStore, on: bool) -> float:
    """Create or drop the owner index on an open store; seconds it took."""
    started = time.perf_counter()
    # The store has no API for its indexes: this reaches into its connection.
    store._conn.execute(OWNER_INDEX_DDL if on else f"DROP INDEX IF EXISTS {OWNER_INDEX}")
    return time.perf_counter() - started


def owner_of(i: int, owners: int) -> str:
    return f"user-{i % owners:02d}"


def make_task(i: int, owners: int, created_at: float, state: TaskState = TaskState.PENDING) -> Task:
    spec = TaskSpec(
        image="registry.local/team/train:2.1",
        command=["python", "-m", "train", f"--shard={i}"],
        env={"MODE": "fast", "RUN": f"run-{i}"},
        resources=Resources(0.5, 256 * 1024**2),
        name=f"job-{i}",
        owner=owner_of(i, owners),
    )
    t = Task(id=f"t-{i:012d}", spec=spec, state=state, created_at=created_at)
    t.updated_at = t.queued_at = created_at
    if state != TaskState.PENDING:
        w = WORKERS[i % len(WORKERS)]
        t.attempt, t.worker_id = 1, "" if state.terminal else w
        a = Attempt(1, w, state, placed_at=created_at + 0.1)
        if state.terminal:
            t.exit_code = a.exit_code = 0
            a.started_at, a.finished_at = created_at + 0.5, created_at + 3.0
        t.attempts = [a]
    return t


def decision(task_id: str, worker_id: str, at: float) -> DecisionRecord:
    w = worker_id
    return DecisionRecord(
        task_id=task_id,
        attempt=1,
        worker_id=w,
        policy="default",
        profile="default",
        candidates=[{"worker_id": w, "total": 300.0, "scores": {}}],
        summary=f"placed on {w}",
        committed=True,
        decided_at=at,
    )


def fill(path: Path, n: int, owners: int, live: int) -> None:
    """`n` tasks over `owners` owners, the newest `live` of them live, the rest finished."""
    store = SQLiteStore(path)
    set_owner_index(store, False)  # built later, per variant
    now = time.time() - 86_400
    for start in range(0, n, 5_000):
        with store.batch():
            for i in range(start, min(n, start + 5_000)):
                state = LIVE[i % 3] if i >= n - live else TaskState.SUCCEEDED
                store.create_task(make_task(i, owners, now + i * 0.5, state))
    store.close()


# -- 1. writes ----------------------------------------------------------------------
def lifecycle(n: int, first: int, owners: int) -> list[tuple[Task, Task, Task, Task]]:
    """Per task: submitted, placed, running and succeeded versions, built in advance."""
    now = time.time()
    out = []
    for i in range(first, first + n):
        sub = make_task(i, owners, now + i * 1e-3)
        placed = sub.evolve()
        w = WORKERS[i % len(WORKERS)]
        placed.state, placed.attempt, placed.worker_id = TaskState.PLACED, 1, w
        placed.attempts.append(Attempt(number=1, worker_id=w, placed_at=now))
        running = placed.evolve()
        running.state = running.attempts[-1].state = TaskState.RUNNING
        running.attempts[-1].started_at = now + 1
        done = running.evolve()
        done.state, done.exit_code, done.worker_id = TaskState.SUCCEEDED, 0, ""
        a = done.attempts[-1]
        a.state, a.exit_code, a.finished_at = TaskState.SUCCEEDED, 0, now + 2
        out.append((sub, placed, running, done))
    return out


def time_writes(store: SQLiteStore, tasks: list, batch: int) -> dict[str, float]:
    """Seconds per phase for the whole lifecycle of `tasks`, as the master writes it."""
    t: dict[str, float] = {}
    started = time.perf_counter()
    for sub, _, _, _ in tasks:
        store.create_task(sub)
    t["submit"] = time.perf_counter() - started

    started = time.perf_counter()
    for k in range(0, len(tasks), batch):
        with store.batch():
            for sub, placed, _, _ in tasks[k : k + batch]:
                assert store.update_task(placed, sub.state, sub.attempt)
                store.add_decision(decision(sub.id, placed.worker_id, placed.updated_at))
    t["place"] = time.perf_counter() - started

    started = time.perf_counter()
    for _, placed, running, _ in tasks:
        assert store.update_task(running, placed.state, placed.attempt)
    t["start"] = time.perf_counter() - started

    started = time.perf_counter()
    for _, _, running, done in tasks:
        store.put_result(Result(done.id, 1, done.state, 0, "completed", "", LOG))
        assert store.update_task(done, running.state, running.attempt)
    t["finish"] = time.perf_counter() - started
    t["total"] = sum(t.values())
    return t


def bench_writes(a: argparse.Namespace, tmp: Path) -> dict:
    base = tmp / "prefilled.db"
    fill(base, a.prefill, a.owners, live=0)
    per: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
    for rep in range(a.reps):
        order = VARIANTS if rep % 2 == 0 else VARIANTS[::-1]
        for variant in order:
            run = tmp / f"writes-{variant}.db"
            shutil.copyfile(base, run)
            store = SQLiteStore(run)
            set_owner_index(store, variant == "with")
            # Start from an empty WAL, so no variant pays for checkpointing its set-up.
            store._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            tasks = lifecycle(a.write_tasks, a.prefill, a.owners)
            gc.collect()
            per[variant].append(time_writes(store, tasks, a.batch))
            store.close()
            for p in run.parent.glob(run.name + "*"):
                p.unlink()
    out: dict = {"prefill": a.prefill, "tasks": a.write_tasks, "batch": a.batch, "reps": a.reps}
    for variant in VARIANTS:
        phases = per[variant][0].keys()
        med = {k: statistics.median(r[k] for r in per[variant]) for k in phases}
        out[variant] = {
            "tasks_per_s": round(a.write_tasks / med["total"], 1),
            "us_per_task": {k: round(med[k] / a.write_tasks * 1e6, 1) for k in phases},
        }
    out["total_ratio"] = round(
        out["with"]["us_per_task"]["total"] / out["without"]["us_per_task"]["total"], 3
    )
    # Same repetition's pair, so drift on the machine cancels: median of per-rep ratios.
    out["paired_ratio"] = round(
        statistics.median(
            w["total"] / wo["total"] for w, wo in zip(per["with"], per["without"], strict=True)
        ),
        3,
    )
    return out


# -- 2. listing ---------------------------------------------------------------------
def plan(store: SQLiteStore, sql: str, params: list) -> str:
    return "; ".join(row[3] for row in store._conn.execute("EXPLAIN QUERY PLAN " + sql, params))


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1e3


def _time_listings(store: SQLiteStore, owners: list[str], limits: list[int], per: dict) -> None:
    """One repetition's listing figures (medians over `owners`), appended to `per`."""
    for lim in limits:
        ms, sql_ms = [], []
        for owner in owners:
            sql, params = sqlite_store.list_tasks_query(None, None, lim, owner)
            ms.append(_timed(lambda o=owner, k=lim: store.list_tasks(owner=o, limit=k)))
            sql_ms.append(_timed(lambda s=sql, p=params: store._conn.execute(s, p).fetchall()))
        per[f"list_ms_limit{lim}"].append(statistics.median(ms))
        per[f"sql_ms_limit{lim}"].append(statistics.median(sql_ms))
    live = (
        _timed(lambda o=o: store.list_tasks(states=LIVE, owner=o, limit=limits[0])) for o in owners
    )
    per["live_list_ms"].append(statistics.median(live))
    per["no_such_owner_ms"].append(
        _timed(lambda: store.list_tasks(owner="nobody", limit=limits[0]))
    )


def _results_and_plans(store: SQLiteStore, owner: str, limits: list[int]) -> tuple[dict, dict]:
    """The task ids one owner's listings return, and the plans of its queries."""
    results = {lim: [t.id for t in store.list_tasks(owner=owner, limit=lim)] for lim in limits}
    plans = {}
    for name, states in (("owner", None), ("owner+live", LIVE)):
        q = sqlite_store.list_tasks_query(states, None, limits[0], owner)
        assert q is not None
        plans[name] = plan(store, *q)
    return results, plans


def bench_listing(a: argparse.Namespace, tmp: Path, n: int) -> dict:
    path = tmp / f"list-{n}.db"
    fill(path, n, a.owners, live=min(1_000, n // 10))
    store = SQLiteStore(path)
    rng = random.Random(n)
    limits = [int(x) for x in a.limits.split(",") if x]
    keys = [f"list_ms_limit{lim}" for lim in limits] + [f"sql_ms_limit{lim}" for lim in limits]
    keys += ["live_list_ms", "no_such_owner_ms"]
    per: dict[str, dict[str, list[float]]] = {v: {k: [] for k in keys} for v in VARIANTS}
    builds: list[float] = []
    results: dict[str, dict] = {}
    plans: dict[str, dict[str, str]] = {}
    for rep in range(a.reps):
        for variant in VARIANTS if rep % 2 == 0 else VARIANTS[::-1]:
            seconds = set_owner_index(store, variant == "with")
            if variant == "with":
                builds.append(seconds)
            owners = [owner_of(rng.randrange(a.owners), a.owners) for _ in range(a.queries)]
            gc.collect()
            _time_listings(store, owners, limits, per[variant])
            if rep == 0:
                results[variant], plans[variant] = _results_and_plans(
                    store, owner_of(0, a.owners), limits
                )
    store.close()
    out: dict = {"tasks": n, "owners": a.owners, "queries": a.queries, "reps": a.reps}
    for variant in VARIANTS:
        out[variant] = {k: round(statistics.median(v), 3) for k, v in per[variant].items()}
    out["speedup"] = {k: round(out["without"][k] / out["with"][k], 1) for k in keys}
    out["index_build_ms"] = round(statistics.median(builds) * 1e3, 1)
    out["same_results"] = results["without"] == results["with"]
    out["rows_per_owner_listing"] = {str(k): len(v) for k, v in results["with"].items()}
    out["plans"] = plans
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prefill", type=int, default=20_000, help="tasks already stored (writes)")
    ap.add_argument("--write-tasks", type=int, default=2_000, help="tasks taken through (writes)")
    ap.add_argument("--batch", type=int, default=100, help="placements per transaction")
    ap.add_argument("--sizes", default="20000,100000", help="store sizes for the listing")
    ap.add_argument("--owners", type=int, default=50)
    ap.add_argument("--limits", default="1000,100", help="list limits (ListTasks', CLI's)")
    ap.add_argument("--queries", type=int, default=30, help="owner listings per repetition")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="owner-index-") as d:
        tmp = Path(d)
        figures = {"writes": bench_writes(a, tmp)}
        figures["listing"] = [bench_listing(a, tmp, int(n)) for n in a.sizes.split(",") if n]
    if a.json:
        print(json.dumps(figures, indent=2))
        return 0
    w = figures["writes"]
    print(f"writes: {w['tasks']} tasks through their lifecycle on {w['prefill']} stored,")
    print(f"        placements in batches of {w['batch']}; medians of {w['reps']} reps")
    for variant in VARIANTS:
        us = "  ".join(f"{k} {v:7.1f}" for k, v in w[variant]["us_per_task"].items())
        print(f"  {variant:7s} index: {w[variant]['tasks_per_s']:8.1f} tasks/s   µs/task: {us}")
    print(f"  with/without: {w['total_ratio']:.3f} (paired per rep: {w['paired_ratio']:.3f})")
    for r in figures["listing"]:
        print(f"\nlisting: {r['tasks']} tasks, {r['owners']} owners, {r['queries']} owners/rep,")
        print(f"         {r['reps']} reps; rows per listing {r['rows_per_owner_listing']}")
        for k in r["without"]:
            print(
                f"  {k:20s} without {r['without'][k]:9.3f}  with {r['with'][k]:9.3f}"
                f"  x{r['speedup'][k]}"
            )
        print(f"  index build: {r['index_build_ms']} ms; same results: {r['same_results']}")
        for variant in VARIANTS:
            for name, p in r["plans"][variant].items():
                print(f"  plan {variant:7s} {name:10s}: {p}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
