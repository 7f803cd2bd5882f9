#!/usr/bin/env python3
"""Execute the notebooks in notebooks/ and save them with their outputs (tables, plots).

    python scripts/run_notebooks.py                 # all of them, at the notebooks' own size
    python scripts/run_notebooks.py 03_train        # only those whose name contains 03_train
    CLOUDAI_NB_JOBS=300 python scripts/run_notebooks.py   # a small, quick slice

The committed notebooks carry the outputs of a run at the default size, so they can be
read without running them. The test suite executes them too (tests/sim/test_notebooks.py),
on a small slice and without saving. Traces are read from ../shared/traces unless
CLOUDAI_TRACES names another folder. The profile notebook 02 exports is written to a
scratch folder, not into the repository.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"


def run(path: Path, timeout: int) -> float:
    """Execute one notebook in a scratch folder and write it back with its outputs."""
    import nbclient
    import nbformat

    book = nbformat.read(path, as_version=4)
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as scratch:
        client = nbclient.NotebookClient(
            book, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": scratch}}
        )
        client.execute()
    book.metadata.pop("widgets", None)
    nbformat.write(book, path)
    return time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "names", nargs="*", help="run only notebooks whose file name contains one of these"
    )
    ap.add_argument(
        "--timeout", type=int, default=900, help="seconds allowed per cell (default 900)"
    )
    args = ap.parse_args(argv)
    paths = sorted(NOTEBOOKS.glob("*.ipynb"))
    if args.names:
        paths = [p for p in paths if any(n in p.name for n in args.names)]
    if not paths:
        print(f"run_notebooks: no notebook in {NOTEBOOKS} matches {args.names}", file=sys.stderr)
        return 1
    for path in paths:
        print(f"running {path.name} ...", flush=True)
        try:
            seconds = run(path, args.timeout)
        except Exception as err:  # a failing cell: say which notebook, keep the file as it was
            first = str(err).strip().splitlines()[-1:] or [type(err).__name__]
            print(f"run_notebooks: {path.name} failed: {first[0]}", file=sys.stderr)
            return 1
        print(f"  saved with outputs in {seconds:.1f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
