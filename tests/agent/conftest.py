"""Fixtures shared by the agent tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .agent_fakes import FakeMaster, serve


@pytest.fixture
def fake() -> Iterator[tuple[FakeMaster, int]]:
    """A fake master serving the MasterAgent API on a free loopback port: (master, port)."""
    master = FakeMaster()
    server, port = serve(master)
    yield master, port
    server.stop(0)
