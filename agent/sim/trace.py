"""Workload traces as columns, and their loaders: SWF, openb (pods and nodes), synthetic.

A `Trace` is one job per row, sorted by submit time. Fields a format lacks are filled
the way schedulers of that format assume: SWF has no memory or GPUs (0); openb has
no requested time, so it is the run time. A malformed line raises TraceError naming
the file and the line number: a trace is data, and a silent skip would bias results.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from cloudai.errors import ConfigError

MIB = 1024**2
# Beyond this a float no longer holds every whole number: no real count or time
# comes near it, and a larger value would wrap or overflow where it becomes an integer.
MAX_VALUE = 2.0**53


class TraceError(ConfigError):
    """A trace file that cannot be read, or a malformed line in it."""


@dataclass
class Trace:
    """Jobs as columns. Times in seconds; `procs` is processors (SWF) or cpus."""

    name: str
    job_id: np.ndarray
    submit: np.ndarray
    run: np.ndarray
    procs: np.ndarray
    req_time: np.ndarray
    memory: np.ndarray
    gpu: np.ndarray
    user: np.ndarray
    # The machine size the log declares (SWF header MaxProcs), 0 when unknown.
    max_procs: int = 0
    # Lines the loader skipped on purpose (e.g. SWF jobs with no run time).
    skipped: int = 0

    def __len__(self) -> int:
        return len(self.job_id)

    def take(self, idx: np.ndarray | slice, name: str | None = None) -> Trace:
        cols = {f.name: getattr(self, f.name)[idx] for f in fields(self) if _is_column(f.name)}
        return Trace(name=name or self.name, max_procs=self.max_procs, skipped=self.skipped, **cols)

    def then(self, later: Trace, name: str | None = None) -> Trace:
        """This trace's jobs followed by `later`'s (which arrive after them)."""
        cols = {
            f.name: np.concatenate([getattr(self, f.name), getattr(later, f.name)])
            for f in fields(self)
            if _is_column(f.name)
        }
        return Trace(name=name or self.name, max_procs=self.max_procs, skipped=self.skipped, **cols)

    def window(self, start: int, length: int) -> Trace:
        return self.take(slice(start, start + length), f"{self.name}[{start}:{start + length}]")

    def span(self, lo: float, hi: float) -> slice:
        """The positions from fraction `lo` to `hi` of the trace."""
        n = len(self)
        return slice(int(round(lo * n)), int(round(hi * n)))

    def fraction(self, lo: float, hi: float) -> Trace:
        """The jobs from fraction `lo` to `hi` of the trace, e.g. (0.7, 1.0): the last 30%."""
        return self.take(self.span(lo, hi), f"{self.name}[{lo:g}:{hi:g}]")


def _is_column(name: str) -> bool:
    return name not in ("name", "max_procs", "skipped")


def _trace(name: str, rows: dict[str, list], max_procs: int = 0, skipped: int = 0) -> Trace:
    cols = {k: np.asarray(v, np.float64) for k, v in rows.items()}
    cols["job_id"] = cols["job_id"].astype(np.int64)
    cols["user"] = cols["user"].astype(np.int64)
    order = np.argsort(cols["submit"], kind="stable")
    return Trace(
        name=name, max_procs=max_procs, skipped=skipped, **{k: v[order] for k, v in cols.items()}
    )


GZIP_MAGIC = b"\x1f\x8b"


def is_gzip(path: Path) -> bool:
    """By the file's first two bytes, whatever its name (a .GZ, or a gzipped .swf)."""
    with path.open("rb") as f:
        return f.read(2) == GZIP_MAGIC


# utf-8-sig: a byte-order mark (as spreadsheet programs write) is not part of the
# first column's name or the first line's text.
ENCODING = "utf-8-sig"
_DAMAGE = (OSError, EOFError, zlib.error)  # gzip.BadGzipFile is an OSError


def _open_text(path: Path, what: str = "trace") -> io.TextIOBase:
    try:
        if path.is_dir():
            raise TraceError(f"{str(path)!r} is a directory, not a file")
        if is_gzip(path):
            return io.TextIOWrapper(gzip.open(path, "rb"), encoding=ENCODING, errors="replace")
        return path.open(encoding=ENCODING, errors="replace")
    except OSError as err:
        raise TraceError(f"cannot read {what} {str(path)!r}: {err.strerror or err}") from err


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    with _open_text(path) as f, _decompressing(path):
        yield from enumerate(f, start=1)


@contextmanager
def _decompressing(path: Path) -> Iterator[None]:
    """Damaged data (bad gzip header, corrupt deflate stream, truncated file): one line."""
    try:
        yield
    except _DAMAGE as err:
        raise TraceError(_damage_message(path, err)) from err


def _damage_message(path: Path, err: BaseException) -> str:
    what = "decompress" if path.suffix.lower() == ".gz" else "read"
    return f"{path}: cannot {what}: {err}"


@contextmanager
def _damage_first(path: Path) -> Iterator[None]:
    """A bad line of a damaged gzip file is reported as the damage: a corrupt deflate
    stream can decode to garbage text well before zlib or the CRC check at the end
    notices, and "line 452 has 15 fields" would send the user looking at the data."""
    try:
        yield
    except TraceError as err:
        damage = _gzip_damage(path)
        if damage is not None:
            raise TraceError(_damage_message(path, damage)) from err
        raise


def _gzip_damage(path: Path) -> BaseException | None:
    """What reading a gzip file to its end fails with; None for an intact (or plain) file."""
    try:
        if not is_gzip(path):
            return None
    except OSError:  # missing or unreadable: the error being reported says so
        return None
    try:
        with gzip.open(path, "rb") as f:
            while f.read(1 << 20):
                pass
    except _DAMAGE as err:
        return err
    return None


# --- SWF ------------------------------------------------------------------------------
SWF_FIELDS = 18
SWF_NAMES = (
    "job id", "submit time", "wait time", "run time", "allocated processors",
    "average cpu time", "used memory", "requested processors", "requested time",
    "requested memory", "status", "user id", "group id", "executable", "queue",
    "partition", "preceding job", "think time",
)  # fmt: skip


def load_swf(path: str | Path, limit: int = 0) -> Trace:
    """A Parallel Workloads Archive log (.swf or .swf.gz). Every field is a number >= 0,
    or -1 for "unknown" (the archive's definition); anything else (below -1, NaN,
    infinite, or beyond MAX_VALUE) is an error naming the line. Jobs with an unknown
    run time or no processors (cancelled before they ran) are skipped and counted in
    `skipped`. Unknown requested time is the run time; processors are
    max(allocated, requested)."""
    p = Path(path)
    with _damage_first(p):
        return _load_swf(p, limit)


def _load_swf(p: Path, limit: int) -> Trace:
    rows: dict[str, list] = {k: [] for k in _COLUMNS}
    header: dict[str, tuple[str, int]] = {}  # key: (value, line number)
    skipped = 0
    for no, line in _lines(p):
        text = line.strip()
        if not text:
            continue
        if text.startswith(";"):
            key, _, value = text[1:].partition(":")
            header.setdefault(key.strip().lower(), (value.strip(), no))
            continue
        v = _swf_values(p, no, text)
        run, procs = v[3], max(v[4], v[7])
        if run < 0 or procs <= 0:
            skipped += 1
            continue
        _append(rows, int(v[0]), v[1], run, procs, v[8] if v[8] > 0 else run, 0.0, 0.0, v[11])
        if limit and len(rows["job_id"]) >= limit:
            break
    if not rows["job_id"]:
        raise TraceError(f"{p}: no jobs found (is it an SWF file?)")
    return _trace(p.name, rows, _max_procs(p, header), skipped)


def _swf_values(path: Path, no: int, text: str) -> list[float]:
    parts = text.split()
    if len(parts) != SWF_FIELDS:
        raise TraceError(
            f"{path}:{no}: expected {SWF_FIELDS} whitespace-separated SWF fields, got {len(parts)}"
        )
    try:
        v = [float(x) for x in parts]
    except ValueError:
        v = []
    if len(v) != SWF_FIELDS or not all(-1 <= x <= MAX_VALUE for x in v):  # NaN fails too
        v = [_swf_number(path, no, k, x) for k, x in enumerate(parts)]
    if v[1] < 0:
        raise TraceError(f"{path}:{no}: negative submit time {parts[1]}")
    return v


def _swf_number(path: Path, no: int, k: int, text: str) -> float:
    """Field k (0-based) of line `no`, checked: a finite number, -1 or from 0 to MAX_VALUE."""
    where = f"{path}:{no}: SWF field {k + 1} ({SWF_NAMES[k]})"
    try:
        value = float(text)
    except ValueError:
        raise TraceError(f"{where} is not a number: {text!r}") from None
    if not math.isfinite(value):
        raise TraceError(f"{where} is not a finite number: {text!r}")
    if value < -1:
        raise TraceError(f"{where} is {text}: the only negative value SWF allows is -1 (unknown)")
    if value > MAX_VALUE:
        raise TraceError(f"{where} is too large: {text}")
    return value


def _max_procs(path: Path, header: dict[str, tuple[str, int]]) -> int:
    for key in ("maxprocs", "maxnodes"):
        if key in header:
            value, no = header[key]
            try:
                return int(value.split()[0])
            except (ValueError, IndexError):
                msg = f"{path}:{no}: header {key} is not a number: {value!r}"
                raise TraceError(msg) from None
    return 0


_COLUMNS = ("job_id", "submit", "run", "procs", "req_time", "memory", "gpu", "user")


def _append(rows: dict[str, list], *values: float) -> None:
    for k, v in zip(_COLUMNS, values, strict=True):
        rows[k].append(v)


# --- openb ----------------------------------------------------------------------------
POD_FIELDS = ("name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli", "creation_time")
NODE_FIELDS = ("sn", "cpu_milli", "memory_mib", "gpu")


def _csv_rows(
    path: Path, required: tuple[str, ...], what: str = "trace"
) -> Iterator[tuple[int, dict[str, str]]]:
    with _open_text(path, what) as f, _decompressing(path):
        reader = csv.DictReader(f)
        if reader.fieldnames is None:
            raise TraceError(f"{path}: empty file (no header line)")
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise TraceError(f"{path}:1: missing column(s) {', '.join(missing)}")
        for row in reader:
            if None in row or any(v is None for v in row.values()):
                raise TraceError(f"{path}:{reader.line_num}: wrong number of fields")
            yield reader.line_num, row


def _num(path: Path, no: int, row: dict[str, str], key: str, default: float | None = None):
    text = (row.get(key) or "").strip()
    if not text and default is not None:
        return default
    try:
        value = float(text)
    except ValueError:
        raise TraceError(f"{path}:{no}: column {key} is not a number: {text!r}") from None
    if not math.isfinite(value):
        raise TraceError(f"{path}:{no}: column {key} is not a finite number: {text!r}")
    if value < 0:
        raise TraceError(f"{path}:{no}: column {key} is negative: {text!r}")
    if value > MAX_VALUE:
        raise TraceError(f"{path}:{no}: column {key} is too large: {text!r}")
    return value


def load_openb_pods(path: str | Path, limit: int = 0) -> Trace:
    """openb pods in creation order. GPU demand: num_gpu whole GPUs, or gpu_milli/1000
    of one GPU when a single GPU is shared. Run time: deletion - scheduled (or
    creation) time when both are known, else 0."""
    p = Path(path)
    with _damage_first(p):
        return _load_openb_pods(p, limit)


def _load_openb_pods(p: Path, limit: int) -> Trace:
    rows: dict[str, list] = {k: [] for k in _COLUMNS}
    for no, row in _csv_rows(p, POD_FIELDS):
        _append(rows, *_pod(p, no, row))
        if limit and len(rows["job_id"]) >= limit:
            break
    if not rows["job_id"]:
        raise TraceError(f"{p}: no pods found")
    return _trace(p.name, rows)


def _pod(p: Path, no: int, row: dict[str, str]) -> tuple[float, ...]:
    def g(key: str, default: float | None = None) -> float:
        return _num(p, no, row, key, default)

    num_gpu, milli = g("num_gpu"), g("gpu_milli")
    gpu = milli / 1000.0 if num_gpu == 1 and 0 < milli < 1000 else num_gpu
    created = g("creation_time")
    began = g("scheduled_time", created) or created
    ended = g("deletion_time", 0.0)
    run = max(ended - began, 0.0) if ended else 0.0
    cpu = g("cpu_milli") / 1000.0
    return (no - 1, created, run, cpu, run, g("memory_mib") * MIB, gpu, 0)


@dataclass
class Nodes:
    """Worker machines: cpu cores, memory bytes, GPU devices (whole), GPU model."""

    ids: list[str]
    cpu: np.ndarray
    memory: np.ndarray
    gpus: np.ndarray
    model: list[str]

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, idx: np.ndarray) -> Nodes:
        return Nodes(
            [self.ids[i] for i in idx],
            self.cpu[idx],
            self.memory[idx],
            self.gpus[idx],
            [self.model[i] for i in idx],
        )


# The cluster model keeps one column per GPU device of the largest node.
MAX_NODE_GPUS = 1024


def load_openb_nodes(path: str | Path) -> Nodes:
    p = Path(path)
    with _damage_first(p):
        return _load_openb_nodes(p)


def _load_openb_nodes(p: Path) -> Nodes:
    ids, cpu, mem, gpus, model = [], [], [], [], []
    for no, row in _csv_rows(p, NODE_FIELDS, "node file"):
        if not row["sn"].strip():
            # A placement on a worker with no name reads as "not placed": the pods it
            # took would count as unplaced while their GPUs stayed allocated.
            raise TraceError(f"{p}:{no}: column sn (the node's name) is empty")
        g = _num(p, no, row, "gpu")
        if g != int(g) or g > MAX_NODE_GPUS:
            raise TraceError(
                f"{p}:{no}: column gpu must be a whole number of devices, "
                f"0 to {MAX_NODE_GPUS}: {row['gpu'].strip()!r}"
            )
        ids.append(row["sn"])
        cpu.append(_num(p, no, row, "cpu_milli") / 1000.0)
        mem.append(_num(p, no, row, "memory_mib") * MIB)
        gpus.append(int(g))
        model.append(row.get("model") or "")
    if not ids:
        raise TraceError(f"{p}: no nodes found")
    return Nodes(ids, np.array(cpu), np.array(mem), np.array(gpus, np.int64), model)
