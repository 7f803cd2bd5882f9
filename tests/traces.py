"""Where the real cluster traces are (../shared/traces next to the checkout); a test
that needs one skips, with the path, when it is absent."""

from __future__ import annotations

from pathlib import Path

import pytest

TRACES = Path(__file__).resolve().parents[1].parent / "shared" / "traces"


def trace_path(name: str) -> Path:
    p = TRACES / name
    if not p.exists():
        pytest.skip(f"trace {name} not available at {TRACES}")
    return p
