"""`submit --dry-run` and `explain` when every worker is draining, over real gRPC."""

from __future__ import annotations

import time

from cloudai.cli.client_cmds import _dry_run_text
from cloudai.convert import spec_to_pb
from cloudai.model import Resources, TaskSpec
from cloudai.proto import client_pb2 as cpb

from .harness import GiB
from .test_agent_reconnect_fallback import _harness

UNDO = "worker w1 is draining: `cloudai drain w1 --undo` lets it take tasks again"


def test_dry_run_and_explain_name_the_drain_to_undo(tmp_path):
    h = _harness(tmp_path, agent_timeout=0.2)  # fallback records a decision
    try:
        h.cluster.DrainWorker(cpb.DrainRequest(worker_id="w1"), timeout=5)
        spec = spec_to_pb(TaskSpec(image="cloudai/sample-task:latest", resources=Resources(1, GiB)))
        dry = h.cluster.SubmitTask(cpb.SubmitTaskRequest(spec=spec, dry_run=True), timeout=5)
        assert dry.decision.hint == UNDO
        assert _dry_run_text(dry.decision).endswith(f"\nsmallest change: {UNDO}")
        tid = h.cluster.SubmitTask(cpb.SubmitTaskRequest(spec=spec), timeout=5).task_id
        deadline, text = time.monotonic() + 5, ""
        while UNDO not in text and time.monotonic() < deadline:
            time.sleep(0.1)
            text = h.cluster.Explain(cpb.ExplainRequest(task_id=tid), timeout=5).text
        assert f"smallest change that would make it placeable: {UNDO}" in text
    finally:
        h.close()
