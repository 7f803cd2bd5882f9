"""The notebooks execute headless on small slices (CLOUDAI_NB_JOBS, default 300)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
SLICE = os.environ.get("CLOUDAI_NB_JOBS", "300")


@pytest.mark.parametrize("name", sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")))
def test_notebook_runs(name, tmp_path, monkeypatch):
    from tests.traces import TRACES

    if not TRACES.exists():
        pytest.skip("shared traces not available")
    monkeypatch.setenv("CLOUDAI_NB_JOBS", SLICE)
    monkeypatch.setenv("CLOUDAI_TRACES", str(TRACES))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    book = nbformat.read(NOTEBOOKS / name, as_version=4)
    # Run in a scratch folder: notebook 02 writes the profile it exports there.
    client = nbclient.NotebookClient(
        book, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    errors = [
        o for c in book.cells if c.cell_type == "code" for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]  # fmt: skip
    assert not errors
    if name.startswith("02"):
        assert (tmp_path / "tuned_profile.json").exists()
