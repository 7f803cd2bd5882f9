"""Fixtures of the fault-injection suite: real processes, real Docker, bounded waits.

In CI (CI=true) a missing Docker engine or base image is a failure, not a skip.
"""

from __future__ import annotations

import pytest

from tests.dockerkit import require_docker

from .faultkit import BASE_IMAGE, FaultCluster, remove_containers


@pytest.fixture(scope="session")
def docker_client():
    return require_docker(BASE_IMAGE)


@pytest.fixture
def make_cluster(tmp_path, docker_client, request):
    """Build FaultClusters; on teardown stop every process, remove every container
    the test's workers left, and print the process logs if the test failed."""
    clusters: list[FaultCluster] = []

    def make(**kw) -> FaultCluster:
        kw.setdefault("heartbeat_timeout", 4.0)
        kw.setdefault("agent_timeout", 1.0)
        c = FaultCluster(tmp_path, **kw)
        clusters.append(c)
        return c

    yield make
    for c in clusters:
        c.stop()
        remove_containers(docker_client, c.prefix)
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        for log in sorted(tmp_path.glob("*.log")):
            print(f"----- {log.name} -----")
            print(log.read_text(errors="replace")[-6000:])


def pytest_collection_modifyitems(session, config, items):
    """Tests marked docker_restart stop and start the machine's real dockerd, which
    kills every container on it: run them after everything else in the session.
    (A conftest's collection hook sees every item of the session, not only these.)"""
    last = [item for item in items if item.get_closest_marker("docker_restart")]
    if last:
        items[:] = [item for item in items if item not in last] + last


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)
