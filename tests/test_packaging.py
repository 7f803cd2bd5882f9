"""Packaging: generated protobuf code is current, and the wheel installs only `cloudai`."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_generated_protobuf_code_is_current():
    out = subprocess.run(
        [sys.executable, "scripts/gen_proto.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr


def test_wheel_installs_only_the_cloudai_namespace(tmp_path):
    # `python -m build` makes the wheel from the sdist, outside the checkout: an in-tree
    # `pip wheel .` leaves build/ behind, and the next one packages whatever stale
    # modules build/lib still holds.
    out = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    wheel = next(tmp_path.glob("cloudai-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        zf.extractall(tmp_path / "site")
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"cloudai"}
    for module in (
        "master/server.py",
        "worker/node.py",
        "agent/sidecar.py",
        "proto/client_pb2.py",
        "proto/client_pb2.pyi",
        "proto/common.proto",
    ):
        assert f"cloudai/{module}" in names, module
    probe = (
        "import cloudai, cloudai.master.server, cloudai.worker.node, cloudai.agent.sidecar, "
        "cloudai.proto.client_pb2_grpc as g; "
        "print(cloudai.__file__); print(cloudai.master.__file__)"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    run = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    for line in run.stdout.splitlines():
        assert line.startswith(str(tmp_path / "site")), line
