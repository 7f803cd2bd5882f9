"""The notebooks execute headless on small slices (CLOUDAI_NB_JOBS, default 300), and
render their matplotlib figures into the notebook. QA pass 9: with MPLBACKEND=Agg in
the environment (as CI sets it) the kernel drew each figure and showed none of them:
every plotting cell ran without error and without a picture."""

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
    plotting = [c for c in book.cells if c.cell_type == "code" and "plots.plot_" in c.source]
    assert plotting, f"{name} draws no figure"
    for cell in plotting:
        # One picture per figure the cell draws (one per plot_ call, or per loop turn).
        assert _pictures(cell) >= cell.source.count("plots.plot_"), (name, cell.source)


def _pictures(cell) -> int:
    return sum(
        1 for o in cell.get("outputs", [])
        if o.get("output_type") in ("display_data", "execute_result")
        and "image/png" in o.get("data", {})
    )  # fmt: skip
