"""Packaging (QA pass 9): what the sdist and wheel hold, the declared dependencies, and
that an installed CloudAI finds its data in the package, not in a checkout.

The distributions are built once, as a user would, with `python -m build` (sdist, then
the wheel from the sdist) without build isolation, into a temporary folder.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The repository folders installed under the `cloudai` namespace (pyproject package-dir).
PACKAGE_DIRS = {
    "cloudai": "cloudai",
    "master": "cloudai/master",
    "worker": "cloudai/worker",
    "agent": "cloudai/agent",
    "proto": "cloudai/proto",
    "sample_task": "cloudai/sample_task",
}
# Import names whose distribution is named otherwise; the rest are their own name.
DIST_OF = {
    "grpc": "grpcio",
    "grpc_health": "grpcio-health-checking",
    "grpc_reflection": "grpcio-reflection",
    "google": "protobuf",
    "sklearn": "scikit-learn",
    "bson": "pymongo",
    "pydantic_core": "pydantic",
    "pydantic_settings": "pydantic-settings",
}
# Imported, but not needed by an installed CloudAI: each is imported lazily or guarded.
NOT_RUNTIME = {
    "matplotlib": "agent/sim/plots.py, the notebooks' plots (dev extra), imported lazily",
    "click": "cloudai/cli/client.py, fallback for a typer without typer._click",
}
JUNK = re.compile(
    r"(^|/)(tests?|notebooks|benchmarks|docs|scripts|database|\.venv|\.git|__pycache__)/"
    r"|\.(pyc|pyo|ipynb|db|swf|gz|csv|log)$"
)


@pytest.fixture(scope="module")
def dists(tmp_path_factory) -> dict[str, Path]:
    pytest.importorskip("build")
    out = tmp_path_factory.mktemp("dist")
    had_build_dir = (ROOT / "build").exists()
    run = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    # The wheel is built from the sdist in a scratch folder: no build/ left in the checkout.
    assert had_build_dir or not (ROOT / "build").exists()
    return {"wheel": next(out.glob("cloudai-*.whl")), "sdist": next(out.glob("cloudai-*.tar.gz"))}


def wheel_names(dists) -> list[str]:
    with zipfile.ZipFile(dists["wheel"]) as zf:
        return zf.namelist()


def metadata(dists) -> str:
    with zipfile.ZipFile(dists["wheel"]) as zf:
        info = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        return zf.read(info).decode()


def test_wheel_holds_every_module_and_the_runtime_data(dists):
    names = set(wheel_names(dists))
    expected = set()
    for folder, installed in PACKAGE_DIRS.items():
        for path in (ROOT / folder).rglob("*"):
            if "__pycache__" in path.parts or not path.is_file():
                continue
            rel = path.relative_to(ROOT / folder).as_posix()
            if path.suffix in (".py", ".pyi", ".proto", ".joblib") or path.name == "py.typed":
                expected.add(f"{installed}/{rel}")
    expected |= {f"cloudai/sample_task/{n}" for n in ("Dockerfile", ".dockerignore", "task.py")}
    assert {"cloudai/agent/models/default.joblib", "cloudai/proto/client_pb2.py"} <= expected
    missing = sorted(expected - names)
    assert not missing, f"not in the wheel (a package missing from pyproject?): {missing}"


def test_wheel_and_sdist_hold_no_tests_notebooks_or_junk(dists):
    wheel = wheel_names(dists)
    assert not [n for n in wheel if JUNK.search(n)]
    assert {n.split("/")[0] for n in wheel if ".dist-info/" not in n} == {"cloudai"}
    with tarfile.open(dists["sdist"]) as tf:
        sdist = [m.name.split("/", 1)[1] for m in tf.getmembers() if "/" in m.name]
    assert not [n for n in sdist if JUNK.search(n)], "the sdist ships tests or junk"
    assert "sample_task/Dockerfile" in sdist and "agent/models/default.joblib" in sdist


def test_metadata_version_is_the_package_version(dists):
    source = (ROOT / "cloudai" / "__init__.py").read_text()
    version = re.search(r'^__version__ = "([^"]+)"', source, re.M).group(1)
    assert re.search(rf"^Version: {re.escape(version)}$", metadata(dists), re.M)


def test_every_third_party_import_is_a_declared_dependency(dists):
    meta = metadata(dists)
    required = {
        re.split(r"[<>=!~;\[ ]", line.split(": ", 1)[1])[0].lower().replace("_", "-")
        for line in meta.splitlines()
        if line.startswith("Requires-Dist: ") and "extra ==" not in line
    }
    assert "grpcio-tools" not in required, "grpcio-tools is only for scripts/gen_proto.py"
    imported: dict[str, str] = {}
    for folder in PACKAGE_DIRS:
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    tops = [a.name.split(".")[0] for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    tops = [node.module.split(".")[0]]
                else:
                    continue
                for top in tops:
                    imported.setdefault(top, str(path.relative_to(ROOT)))
    third_party = {
        name: where
        for name, where in imported.items()
        if name not in sys.stdlib_module_names and name not in ("cloudai", "__future__")
    }
    assert {"grpc", "numpy", "typer", "joblib"} <= set(third_party)
    undeclared = {
        name: where
        for name, where in third_party.items()
        if name not in NOT_RUNTIME and DIST_OF.get(name, name).replace("_", "-") not in required
    }
    assert not undeclared, f"imported but not in pyproject dependencies: {undeclared}"


def test_installed_wheel_finds_its_model_and_sample_task_outside_the_checkout(dists, tmp_path):
    site = tmp_path / "site"
    with zipfile.ZipFile(dists["wheel"]) as zf:
        zf.extractall(site)
    probe = (
        "from cloudai.agent.learn.model import DEFAULT_MODEL, load_default_model\n"
        "from cloudai.cli.demo import image_hint, sample_task_dir\n"
        "print(DEFAULT_MODEL); print(load_default_model().version)\n"
        "print(sample_task_dir()); print(image_hint('cloudai/sample-task:latest'))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    model, version, folder, hint = run.stdout.splitlines()
    assert model == str(site / "cloudai/agent/models/default.joblib")
    assert version
    assert folder == str(site / "cloudai/sample_task")
    assert (Path(folder) / "Dockerfile").is_file()
    # The hint is a command an installed user can run, not `make demo` in a checkout.
    assert f"docker build -t cloudai/sample-task:latest {folder}" in hint
