"""An agent whose token the master refuses (UNAUTHENTICATED, PERMISSION_DENIED) on first
contact exits 1 with one line instead of reconnecting forever. Once it has been served,
a refusal may be a token rotation in progress: it keeps retrying, slowly.

A real master with tokens (plaintext, loopback: docs/security.md) and the real agent."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cloudai.agent.sidecar import REFUSED_BACKOFF_S, Agent
from cloudai.config import AgentSettings, MasterSettings
from cloudai.master.server import Master
from cloudai.master.store import SQLiteStore
from cloudai.security.tokens import Role, TokenStore
from tests.ports import free_port

PORT = free_port()
WAIT_S = 10.0
# The healthy-stream time after which a watch counts as accepted, plus a margin.
SERVED_S = 2.4


def start_master(tmp: Path, tokens: Path) -> Master:
    settings = MasterSettings(
        _env_file=None,  # type: ignore[call-arg]
        host="127.0.0.1",
        port=PORT,
        console=False,
        agent_timeout=3600.0,
        tokens=str(tokens),
    )
    master = Master(settings, store=SQLiteStore(tmp / "master.db"), warn=lambda m: None)
    master.start()
    return master


@pytest.fixture
def cluster(tmp_path):
    """A master with tokens; the token files of an agent and of a submitter."""
    store = TokenStore(tmp_path / "tokens.json")
    files = {}
    for name, role in (("agent", Role.AGENT), ("alice", Role.SUBMITTER)):
        token, _ = store.create(role, name)
        files[name] = tmp_path / f"{name}.token"
        files[name].write_text(token + "\n")
    master = start_master(tmp_path, tmp_path / "tokens.json")
    yield tmp_path, store, files, master
    master.stop(grace=0.2)


def run_agent_process(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDAI_")}
    return subprocess.run(
        [sys.executable, "-m", "cloudai", "agent", "--master", f"127.0.0.1:{PORT}", *args],
        capture_output=True,
        text=True,
        timeout=WAIT_S,
        env=env,
    )


@pytest.mark.parametrize(
    "token,problem",
    [
        ("alice", "permission_denied: role submitter may not call WatchSchedulingWork"),
        ("", "unauthenticated: missing token"),
    ],
)
def test_a_refused_token_on_first_contact_exits_1_with_one_line(cluster, token, problem):
    _, _, files, _ = cluster
    started = time.monotonic()
    got = run_agent_process(*(["--token-file", str(files[token])] if token else []))
    assert got.returncode == 1, got.stderr
    assert time.monotonic() - started < 5.0
    lines = got.stderr.splitlines()
    assert len(lines) == 1, got.stderr
    assert lines[0].startswith(f"cloudai agent: the master refused this agent's token: {problem}")
    assert "reconnecting" not in got.stderr and "agent stopped" not in got.stdout


def test_once_served_a_refusal_is_retried_slowly(cluster, caplog):
    tmp, store, files, master = cluster
    caplog.set_level(logging.WARNING, logger="cloudai.agent")
    settings = AgentSettings(
        master=f"127.0.0.1:{PORT}", agent_id="rotating", token_file=str(files["agent"])
    )
    agent = Agent(settings)
    thread = threading.Thread(target=agent.run, daemon=True)
    thread.start()
    try:
        time.sleep(SERVED_S)  # the master accepted the watch and keeps it open
        assert not agent.served and thread.is_alive()
        # The agent's token is revoked and the master restarts: the stream breaks,
        # and the agent's next watch is refused.
        store.revoke(token=files["agent"].read_text().strip())
        master.stop(grace=0.2)
        master = start_master(tmp, tmp / "tokens.json")
        deadline = time.monotonic() + WAIT_S
        while "token refused" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.05)
        assert agent.served and agent.refused == ""
        refusals = [r.getMessage() for r in caplog.records if "token refused" in r.getMessage()]
        assert refusals and "unauthenticated" in refusals[0]
        delay = float(refusals[0].rsplit("reconnecting in ", 1)[1].rstrip("s"))
        assert delay >= REFUSED_BACKOFF_S[0]
        time.sleep(0.3)
        assert thread.is_alive()  # still trying, not exited
    finally:
        agent.stop()
        thread.join(timeout=WAIT_S)
        master.stop(grace=0.2)
    assert not thread.is_alive()
