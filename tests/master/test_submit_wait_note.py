"""`submit --wait` / `--follow` of a task that cannot be placed used to wait without a
word (QA pass 7): after a while it now says once, on stderr, why and what would place
it, from the task's latest decision. In-process master, real gRPC, the CLI's client."""

from __future__ import annotations

import time

from cloudai.cli.client import Client
from cloudai.cli.client_cmds import _note_if_still_pending
from cloudai.model import Resources, TaskSpec

from .harness import make_harness


def test_a_task_still_pending_gets_one_line_saying_why(tmp_path, capsys):
    h = make_harness(tmp_path, agent_timeout=0.05)  # the master's fallback decides
    try:
        h.add_worker("w1", cpu=4)
        big = h.master.submit(TaskSpec(image="cloudai/sample-task:latest",
                                       resources=Resources(cpu=64)))  # fmt: skip
        small = h.master.submit(TaskSpec(image="cloudai/sample-task:latest"))
        deadline = time.monotonic() + 10
        while not h.master.store.list_decisions(big.id) and time.monotonic() < deadline:
            time.sleep(0.05)
        client = Client(f"127.0.0.1:{h.master.port}", 5.0)
        _note_if_still_pending(client, big.id, 0.1)
        _note_if_still_pending(client, small.id, 0.1)  # placed: nothing to say
        time.sleep(1.0)
        err = capsys.readouterr().err
        [line] = err.splitlines()
        assert line.startswith("cloudai: still waiting for a place after 0s: ")
        assert "insufficient cpu" in line and "smallest change: " in line
    finally:
        h.close()
