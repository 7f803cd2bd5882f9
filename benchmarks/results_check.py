"""Check that `cloudai sim compare` reproduces the figures in docs/placement-results.md.

Each checked table of the document is preceded by a hidden marker that holds the
exact command producing it (run from the repository root, as the document's commands
are):

    <!-- check: cloudai sim compare --trace ../shared/traces/... --policies a,b -->

For every marker this runs the command and compares each cell of the table under it
whose column names a metric (`bsld`, `mean_wait (s)`, `unplaced pods`, ...) with the
command's JSON, at the precision the document prints: "237.8" must be the measured
value rounded to one decimal. Each row names its policy first ("f1", "learned
(`lublin.joblib`)"); a row labelled "learned (default model ...)" is the `learned`
policy of the same command without `--model`. A table that names a metric or a policy
the command does not produce is an error, so nothing goes unchecked silently.

    python benchmarks/results_check.py            # every marked table
    python benchmarks/results_check.py --only lublin --json

The commands run `--jobs` at a time (default: one per CPU); each is its own process
and deterministic, so the figures do not depend on it.

Exit status: 0 when every figure matches, 1 when one differs or the document's
markers are malformed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "placement-results.md"
MARKER = re.compile(r"^<!-- check: (.+?) -->$")
# Table column -> key of a policy's metrics in `cloudai sim compare --json`.
COLUMNS = {
    "bsld": "bsld",
    "mean_wait (s)": "mean_wait",
    "mean_jct (s)": "mean_jct",
    "p95_jct (s)": "p95_jct",
    "makespan (s)": "makespan",
    "utilization": "utilization",
    "unallocated_gpu_frac": "unallocated_gpu_frac",
    "unplaced pods": "unplaced",
    "unplaced": "unplaced",
    "GPU allocated": "utilization",  # openb runs: the allocated share of GPUs
}
DEFAULT_MODEL_ROW = "learned (default model"


class DocError(Exception):
    """The document's markers or tables cannot be checked (one line)."""


@dataclass
class Table:
    line: int  # 1-based line of the marker
    command: str
    header: list[str]
    rows: list[tuple[int, list[str]]] = field(default_factory=list)  # (line, cells)


@dataclass
class Cell:
    line: int
    row: str
    column: str
    command: str
    policy: str
    metric: str
    text: str


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def parse_tables(text: str) -> list[Table]:
    """Every marker and the table right under it (blank lines may come between)."""
    lines, tables = text.splitlines(), []
    for i, line in enumerate(lines):
        m = MARKER.match(line.strip())
        if not m:
            continue
        j = i + 1
        while j < len(lines) and not lines[j].strip():
            j += 1
        if j + 1 >= len(lines) or not lines[j].lstrip().startswith("|"):
            raise DocError(f"line {i + 1}: the check marker is not followed by a table")
        table = Table(i + 1, m.group(1), _cells(lines[j]))
        j += 2  # the header and the |---| line
        while j < len(lines) and lines[j].lstrip().startswith("|"):
            table.rows.append((j + 1, _cells(lines[j])))
            j += 1
        if not table.rows:
            raise DocError(f"line {i + 1}: the table under the check marker has no rows")
        tables.append(table)
    return tables


def _policies(command: str) -> list[str]:
    args = shlex.split(command)
    if args[:3] != ["cloudai", "sim", "compare"]:
        raise DocError(f"not a `cloudai sim compare` command: {command}")
    if "--policies" not in args:
        raise DocError(f"no --policies in: {command}")
    return args[args.index("--policies") + 1].split(",")


def without_model(command: str) -> str:
    """The same command for the learned policy alone, on the shipped default model."""
    args = shlex.split(command)
    if "--model" in args:
        k = args.index("--model")
        del args[k : k + 2]
    args[args.index("--policies") + 1] = "learned"
    return shlex.join(args)


def cells_of(table: Table) -> list[Cell]:
    """The figures a table asserts, each tied to the command, policy and metric."""
    names, out = _policies(table.command), []
    for col in table.header[1:]:
        if col not in COLUMNS:
            raise DocError(f"line {table.line}: column {col!r} names no metric")
    for line, cells in table.rows:
        if len(cells) != len(table.header):
            raise DocError(f"line {line}: {len(cells)} cells, the header has {len(table.header)}")
        label = cells[0]
        policy, command = label.split()[0].strip("`"), table.command
        if label.startswith(DEFAULT_MODEL_ROW):
            command = without_model(command)
        elif policy not in names:
            raise DocError(f"line {line}: row {label!r} is not a policy of the command")
        for col, text in zip(table.header[1:], cells[1:], strict=True):
            out.append(Cell(line, label, col, command, policy, COLUMNS[col], text))
    return out


def run_compare(command: str) -> dict:
    """`cloudai sim compare ... --json`'s policies, run from the repository root."""
    args = shlex.split(command)[1:]
    if "--json" not in args:
        args.append("--json")
    proc = subprocess.run(
        [sys.executable, "-m", "cloudai", *args], cwd=ROOT, capture_output=True, text=True
    )
    if proc.returncode != 0:
        err = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise DocError(f"`{command}` failed (exit {proc.returncode}): {err}")
    return json.loads(proc.stdout)["policies"]


def matches(text: str, value: float) -> bool:
    """True if `value` rounded to the decimals `text` shows reads exactly as `text`."""
    try:
        float(text)
    except ValueError as err:
        raise DocError(f"the figure {text!r} is not a number") from err
    decimals = len(text.split(".")[1]) if "." in text else 0
    return f"{value:.{decimals}f}" == text


def run_all(commands: list[str], jobs: int, progress=None) -> dict[str, dict]:
    """Each command's policies, `jobs` commands at a time; progress as each ends."""
    started, results = time.perf_counter(), {}
    with ThreadPoolExecutor(max(1, jobs)) as pool:
        futures = {pool.submit(run_compare, c): c for c in commands}
        try:
            for k, fut in enumerate(as_completed(futures), 1):
                command = futures[fut]
                results[command] = fut.result()
                if progress:
                    took = time.perf_counter() - started
                    progress(f"[{k}/{len(commands)}] {took:.1f} s in  {command}")
        except BaseException:  # the first failure is the answer: start nothing more
            pool.shutdown(cancel_futures=True)
            raise
    return results


def check(doc: Path, only: str = "", progress=None, jobs: int = 1) -> dict:
    tables = [t for t in parse_tables(doc.read_text()) if only in t.command]
    cells = [c for t in tables for c in cells_of(t)]
    commands = list(dict.fromkeys(c.command for c in cells))
    results = run_all(commands, jobs, progress)
    mismatches = []
    for c in cells:
        value = results[c.command][c.policy][c.metric]
        if not matches(c.text, value):
            mismatches.append(
                {
                    "line": c.line,
                    "row": c.row,
                    "column": c.column,
                    "doc": c.text,
                    "measured": value,
                    "command": c.command,
                }  # fmt: skip
            )
    return {
        "tables": len(tables),
        "commands": len(commands),
        "checked": len(cells),
        "mismatches": mismatches,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--doc", type=Path, default=DOC, help="the document (default: %(default)s)")
    ap.add_argument("--only", default="", help="check only markers whose command has this text")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    ap.add_argument(
        "--jobs", type=int, default=os.cpu_count() or 1,
        help="commands run at once (default: one per CPU, %(default)s here)",
    )  # fmt: skip
    a = ap.parse_args()
    if a.jobs < 1:
        ap.error(f"--jobs {a.jobs}: must be 1 or more")
    try:
        out = check(a.doc, a.only, lambda s: print(s, file=sys.stderr, flush=True), a.jobs)
    except (DocError, OSError) as err:
        print(f"results_check: {err}", file=sys.stderr)
        return 1
    if a.json:
        print(json.dumps(out, indent=2))
    else:
        for m in out["mismatches"]:
            print(
                f"line {m['line']}: {m['row']} / {m['column']}: the document says "
                f"{m['doc']}, the command gives {m['measured']:.6g}"
            )
        bad = len(out["mismatches"])
        verdict = "all match" if not bad else f"{bad} differ"
        print(
            f"{out['checked']} figures in {out['tables']} tables "
            f"({out['commands']} commands): {verdict}"
        )
    if not out["tables"]:
        print("results_check: no check markers found", file=sys.stderr)
        return 1
    return 1 if out["mismatches"] else 0


if __name__ == "__main__":
    sys.exit(main())
