"""Task failure semantics through the CLI (issue 5, item 6): retries with visible
backoff, OOM kills, timeouts, cancel, transient pull errors within their own bound,
hopeless images failing at once; and OOM retries moving to a bigger worker, with a
drained worker finishing its task but taking no new one."""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from dataclasses import dataclass

import pytest

from cloudai.worker.containers import container_name

from .faultkit import BASE_IMAGE, MiB, health, record, state, wait_until

pytestmark = [pytest.mark.docker, pytest.mark.slow]
REGISTRY = "127.0.0.1:5000"
HOG = "x = bytearray(90 * 1024 * 1024); print(len(x))"


def _submit(c, *args: str) -> str:
    out = c.cli("submit", "--json", "--cpu", "0.1", *args)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["id"]


def _registry_up() -> bool:
    try:
        urllib.request.urlopen(f"http://{REGISTRY}/v2/", timeout=3).read()
        return True
    except OSError:
        return False


def test_retries_oom_timeout_cancel_and_pull_errors(make_cluster, docker_client):
    c = make_cluster()
    c.start(2)
    cases = _submit_failure_cases(c)
    cancel_s = _cancel_while_running(c, docker_client, cases.victim)
    done = c.wait_terminal(cases.to_finish(), 90)

    f = done[cases.failing]
    gaps = _check_retried_with_backoff(c, cases.failing, f)
    overrun = _check_timed_out(done[cases.timed])
    o = done[cases.oom]
    assert (state(o), o.reason, o.exit_code) == ("FAILED", "oom_killed", 137)
    u = done[cases.unreachable]
    pull_gaps = _check_pull_failed_within_its_bound(u)
    missing_attempts = _check_image_not_found(done, cases.missing)
    record(
        "task_failure_semantics",
        retry_attempts=len(f.attempts),
        retry_backoff_gaps_s=[round(g, 2) for g in gaps],
        timeout_s=2,
        timed_out_after_s=overrun,
        cancel_to_container_gone_s=cancel_s,
        oom_reason=o.reason,
        pull_failed_attempts=len(u.attempts),
        pull_backoff_gaps_s=[round(g, 2) for g in pull_gaps],
        image_not_found_attempts=missing_attempts,
    )


@dataclass(frozen=True)
class _FailureCases:
    """Ids of the tasks that test_retries_oom_timeout_cancel_and_pull_errors submits."""

    failing: str  # exits 1, two retries
    timed: str  # sleeps past its 2 s timeout
    victim: str  # cancelled while it runs
    oom: str  # allocates past its memory limit
    unreachable: str  # image on a registry nothing listens on
    missing: str  # image absent from the local registry ("" without a registry)

    def to_finish(self) -> list[str]:
        """Every task but the cancelled one, whose end the test waits for itself."""
        ids = [self.failing, self.timed, self.oom, self.unreachable]
        return ids + ([self.missing] if self.missing else [])


def _submit_failure_cases(c) -> _FailureCases:
    failing = _submit(
        c, "--memory", "32m", "--retries", "2", BASE_IMAGE, "--", "sh", "-c", "echo out-$$; exit 1"
    )
    timed = _submit(c, "--memory", "32m", "--timeout", "2s", BASE_IMAGE, "--", "sleep", "30")
    victim = _submit(c, "--memory", "32m", BASE_IMAGE, "--", "sleep", "30")
    oom = c.submit(["python3", "-c", HOG], memory=32 * MiB)
    unreachable = c.submit([], image=f"127.0.0.1:{_closed_port()}/cloudai/nothing:1")
    absent = f"{REGISTRY}/cloudai/missing-{uuid.uuid4().hex[:6]}:never"
    missing = c.submit([], image=absent, max_retries=2) if _registry_up() else ""
    return _FailureCases(failing, timed, victim, oom, unreachable, missing)


def _cancel_while_running(c, docker_client, victim: str) -> float:
    """Cancel the task once it runs, through the CLI; returns the seconds until its
    container is gone."""
    wait_until(lambda: state(c.task(victim)) == "RUNNING", 60, "the task to cancel to run")
    out = c.cli("cancel", victim)
    assert out.returncode == 0, out.stderr
    cancelled_at = time.time()
    wait_until(lambda: state(c.task(victim)) == "CANCELLED", 10, "CANCELLED")
    wait_until(
        lambda: (
            not docker_client.api.containers(all=True, filters={"name": container_name(victim, 1)})
        ),
        10,
        "the cancelled task's container to go",
    )
    return time.time() - cancelled_at


def _backoff_gaps(t) -> list[float]:
    """Seconds between each attempt's end and the next one's placement."""
    return [
        t.attempts[i + 1].placed_at - t.attempts[i].finished_at for i in range(len(t.attempts) - 1)
    ]


def _check_retried_with_backoff(c, task_id: str, f) -> list[float]:
    assert (state(f), f.exit_code, f.reason, len(f.attempts)) == ("FAILED", 1, "nonzero_exit", 3)
    gaps = _backoff_gaps(f)
    assert gaps[0] >= 0.5 and gaps[1] >= 1.0  # 1 s then 2 s, each with jitter in 50..100%
    logs = c.cli("logs", task_id).stdout  # kept in the store after the container is gone
    assert "out-" in logs
    return gaps


def _check_timed_out(t) -> float:
    assert (state(t), t.reason) == ("TIMED_OUT", "timeout")
    overrun = t.attempts[-1].finished_at - t.attempts[-1].started_at
    assert overrun <= 2 + 2
    return overrun


def _check_pull_failed_within_its_bound(u) -> list[float]:
    assert (state(u), u.reason, u.retries_used) == ("FAILED", "pull_failed", 0)
    assert [a.reason for a in u.attempts] == ["pull_failed"] * 4  # 1 + its own bound of 3
    pull_gaps = _backoff_gaps(u)
    assert min(pull_gaps) >= 0.5
    return pull_gaps


def _check_image_not_found(done, missing: str) -> int | str:
    """The attempts of the task whose image the registry lacks (it fails at once), or
    "no registry" when there was none to ask."""
    if not missing:
        return "no registry"
    m = done[missing]
    assert (state(m), m.reason, len(m.attempts)) == ("FAILED", "image_not_found", 1)
    return len(m.attempts)


def test_oom_retry_moves_to_bigger_worker_and_drained_worker_finishes(make_cluster):
    c = make_cluster()
    c.start_master()
    small, big = c.wid(1), c.wid(2)
    c.start_worker(small, "--memory", "96m")
    c.start_worker(big)
    wait_until(lambda: c.active_count() == 2, 60, "2 workers")

    running = c.submit(["sh", "-c", "sleep 8; echo finished"], pinned_worker=big)
    wait_until(lambda: state(c.task(running)) == "RUNNING", 60, "the pinned task to run")
    out = c.cli("drain", big)
    assert out.returncode == 0 and "draining" in out.stdout, out.stderr
    refused = c.cli("submit", "--worker", big, BASE_IMAGE, "--", "true")
    assert refused.returncode == 1 and "draining" in refused.stderr

    hog = c.submit(["python3", "-c", HOG], memory=64 * MiB, max_retries=1)

    def retried() -> bool:
        t = c.task(hog)
        return len(t.attempts) == 1 and state(t) == "PENDING"

    wait_until(retried, 60, "the OOM-killed attempt to be requeued")
    first = c.task(hog)
    assert first.attempts[0].worker_id == small and first.attempts[0].reason == "oom_killed"
    assert first.spec.resources.memory_bytes == 128 * MiB  # twice the request
    time.sleep(1.5)  # the small worker cannot fit it, the big one is drained
    assert state(c.task(hog)) == "PENDING"
    drained_done = c.wait_terminal([running], 30)[running]
    assert state(drained_done) == "SUCCEEDED"  # the drained worker finished its task
    assert health(c.workers()[big]) == "DRAINING"

    undo = c.cli("drain", big, "--undo")
    assert undo.returncode == 0, undo.stderr
    final = c.wait_terminal([hog], 60)[hog]
    assert state(final) == "SUCCEEDED"
    assert [a.worker_id for a in final.attempts] == [small, big]
    assert final.retries_used == 1
    record(
        "oom_retry_and_drain",
        first_attempt=f"{small} (96m) oom_killed at 64m",
        retry=f"{big} at {final.spec.resources.memory_bytes // MiB}m: SUCCEEDED",
        drained_worker_finished_running_task=True,
        drained_worker_took_new_task=False,
    )


def _closed_port() -> int:
    """A loopback port nothing listens on: pulls from it fail with connection refused."""
    from tests.ports import free_port

    return free_port()
