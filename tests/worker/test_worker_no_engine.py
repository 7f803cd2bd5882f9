"""A worker with no Docker engine to talk to (QA: it registered as ACTIVE and failed
every task with `FileNotFoundError(2, ...)`). No engine is needed: DOCKER_HOST names
a socket that does not exist or a port nobody listens on, and the docker SDK's real
errors are what the worker has to put into words."""

from __future__ import annotations

import docker
import pytest
import requests

from cloudai.errors import Unavailable
from cloudai.model import Reason, TaskSpec, TaskState
from cloudai.worker.containers import EngineUnreachable
from cloudai.worker.engine import EngineConnection
from cloudai.worker.executor import DockerExecutor
from cloudai.worker.outcome import docker_error_outcome, unreachable_cause
from tests.worker.workerkit import make_settings

NO_SOCKET = "unix:///nonexistent-cloudai-test.sock"
NO_LISTENER = "tcp://127.0.0.1:1"  # port 1: nothing listens there


def _error_of(host: str) -> BaseException:
    """What the docker SDK really raises for an engine at `host` that is not there."""
    try:
        docker.DockerClient(base_url=host).ping()
    except docker.errors.DockerException as err:  # the version lookup fails first
        return err
    except requests.exceptions.RequestException as err:
        return err
    raise AssertionError(f"an engine answered at {host}")


@pytest.mark.parametrize(
    "host, cause",
    [(NO_SOCKET, "no such file or directory"), (NO_LISTENER, "connection refused")],
)
def test_an_unreachable_engine_is_put_into_words(host: str, cause: str) -> None:
    err = _error_of(host)
    assert "Errno" in str(err) or "FileNotFoundError" in str(err)  # the raw text
    assert unreachable_cause(err) == cause
    outcome = docker_error_outcome(err, 1.0, host)
    assert (outcome.state, outcome.reason) == (TaskState.FAILED, Reason.DOCKER_ERROR)
    assert outcome.message == f"cannot reach the Docker engine at {host}: {cause}"


def test_errors_the_engine_answered_keep_their_text() -> None:
    answered = docker.errors.APIError("500 Server Error", explanation="driver failed")
    assert unreachable_cause(answered) is None
    assert docker_error_outcome(answered, 1.0, NO_SOCKET).message == "docker: driver failed"
    gave_up = EngineUnreachable("engine unreachable for 5s while supervising c; gave it up")
    gave_up.__cause__ = _error_of(NO_SOCKET)
    assert unreachable_cause(gave_up) is None  # already readable: kept as it is
    assert docker_error_outcome(gave_up, 1.0, NO_SOCKET).message == str(gave_up)  # no "docker: "


def test_engine_check_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", NO_SOCKET)
    with pytest.raises(Unavailable) as caught:
        EngineConnection().check()
    assert str(caught.value) == (
        f"cannot reach the Docker engine at {NO_SOCKET}: no such file or directory; "
        "is dockerd running?"
    )


def test_a_task_on_a_worker_without_engine_fails_in_words(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", NO_LISTENER)
    executor = DockerExecutor(make_settings())
    try:
        outcome = executor.run("t-noengine", 1, TaskSpec(image="cloudai/base:bookworm"))
    finally:
        executor.close()
    assert (outcome.state, outcome.reason) == (TaskState.FAILED, Reason.DOCKER_ERROR)
    assert outcome.message == f"cannot reach the Docker engine at {NO_LISTENER}: connection refused"
