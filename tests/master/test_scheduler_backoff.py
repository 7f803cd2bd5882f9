"""The scheduler offers a task again when its retry backoff runs out, even when the
backoff ran out while the scheduler was busy placing (a CI run once left a pull_failed
task PENDING for 90 s on an idle cluster: its wake-up was dropped unseen)."""

from __future__ import annotations

import threading
import time

from cloudai.master.dispatcher import Dispatcher
from cloudai.master.scheduler import Scheduler
from cloudai.master.tasks import TaskManager

from .conftest import add_worker
from .test_tasks import place, spec


def test_a_backoff_that_runs_out_while_placing_is_offered_at_once(store, registry):
    offers: list[list[str]] = []
    seen = threading.Event()
    hub: dict[str, Scheduler] = {}

    def decide(batch):
        """The fallback policy, slow on purpose: it places nothing and takes 1 s, so
        the backoff below runs out while it works."""
        ids = [t.task_id for t in batch.tasks]
        offers.append(ids)
        if backed_off.id in ids:
            seen.set()
        time.sleep(1.0)
        return []

    tasks = TaskManager(store, registry, max_worker_losses=3, on_change=lambda: hub["s"].notify())
    dispatcher = Dispatcher(registry, tasks, channel=lambda address: None)
    sched = Scheduler(tasks, registry, dispatcher, agent_timeout=0.05, decide=decide)
    hub["s"] = sched
    add_worker(registry)
    backed_off = tasks.submit(spec())
    placed = place(tasks, backed_off.id)
    sched.start()
    try:
        time.sleep(0.1)  # no agent for longer than its timeout: the fallback places
        tasks.dispatch_failed(placed.id, placed.attempt, "refused")  # back in 0.25-0.5 s
        time.sleep(0.05)  # the scheduler sees that change on its own (nothing to offer)
        tasks.submit(spec())  # offered now, alone: the first is still backing off
        assert seen.wait(5.0), f"the backed-off task was never offered again: {offers}"
    finally:
        sched.stop()
        dispatcher.close()
