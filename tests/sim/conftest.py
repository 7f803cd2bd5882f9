"""Shared fixtures: paths of the real traces (tests read small slices of them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.traces import trace_path


@pytest.fixture
def lublin() -> Path:
    return trace_path("lublin_256.swf.gz")


@pytest.fixture
def kth() -> Path:
    return trace_path("KTH-SP2-1996-2.1-cln.swf.gz")


@pytest.fixture
def openb_pods() -> Path:
    return trace_path("openb_pod_list_default.csv")


@pytest.fixture
def openb_nodes() -> Path:
    return trace_path("openb_node_list_gpu_node.csv")
