"""Terminal rendering shared by the CLI and the master console: boxed tables, sizes, ages."""

from __future__ import annotations

import re
import time
import unicodedata
from collections.abc import Sequence

# Widest cell of a table, and widest value of a panel: longer ones end in "…"
# (a 100 KB command must not make a 100 KB-wide row; --json shows everything).
MAX_CELL = 60
MAX_VALUE = 120
# C0 and C1 controls (terminal escapes) and the bidirectional overrides (which reorder
# the rest of the line on screen).
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def clip(value: object, width: int = MAX_CELL) -> str:
    """One printable line at most `width` columns wide: control characters (newlines,
    terminal escapes) are shown escaped, and a longer text is cut with an ellipsis."""
    text = _CONTROL_RE.sub(lambda m: m.group().encode("unicode_escape").decode(), str(value))
    if text.isascii():
        return text if len(text) <= width else text[: width - 1] + "…"
    if cols(text) <= width:
        return text
    out, used = [], 0
    for ch in text:
        w = _char_cols(ch)
        if used + w > width - 1:
            break
        out.append(ch)
        used += w
    return "".join(out) + "…"


def cols(text: str) -> int:
    """How many terminal columns `text` takes: wide (East Asian) characters take two,
    combining marks none."""
    if text.isascii():
        return len(text)
    return sum(_char_cols(ch) for ch in text)


def _char_cols(ch: str) -> int:
    if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def _pad(text: str, width: int) -> str:
    return text + " " * max(0, width - cols(text))


def box(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A boxed table, like the original console's output; long cells are clipped."""
    cells = [[clip(c) for c in row] for row in rows]
    widths = [cols(h) for h in headers]
    for row in cells:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], cols(c))
    inner = sum(widths) + 3 * (len(widths) - 1)
    inner = max(inner, cols(title))
    # Stretch the last column so the title fits.
    widths[-1] += inner - (sum(widths) + 3 * (len(widths) - 1))
    line = "─" * (inner + 2)

    def fmt(row: Sequence[str]) -> str:
        return "│ " + " │ ".join(_pad(c, w) for c, w in zip(row, widths, strict=True)) + " │"

    out = [f"╭{line}╮", f"│ {_pad(title, inner)} │", f"├{line}┤", fmt(headers)]
    sep = "├" + "┼".join("─" * (w + 2) for w in widths) + "┤"
    out.append(sep)
    out += [fmt(r) for r in cells] or [f"│ {'(none)'.ljust(inner)} │"]
    out.append(f"╰{line}╯")
    return "\n".join(out)


def panel(title: str, pairs: Sequence[tuple[str, object]]) -> str:
    """A boxed key/value panel; long values are clipped."""
    key_w = max((len(k) for k, _ in pairs), default=0)
    lines = [f"{k.ljust(key_w)}  {clip(v, MAX_VALUE)}" for k, v in pairs]
    inner = max([cols(title), *map(cols, lines)])
    bar = "─" * (inner + 2)
    body = [f"│ {_pad(ln, inner)} │" for ln in lines]
    return "\n".join([f"╭{bar}╮", f"│ {_pad(title, inner)} │", f"├{bar}┤", *body, f"╰{bar}╯"])


def size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return f"{n:.1f}TiB"


def ago(ts: float, now: float | None = None) -> str:
    if not ts:
        return "-"
    d = (now or time.time()) - ts
    if d < 0:
        return f"in {-d:.0f}s"
    if d < 60:
        return f"{d:.0f}s ago"
    if d < 3600:
        return f"{d / 60:.0f}m ago"
    return f"{d / 3600:.1f}h ago"


def duration(start: float, end: float) -> str:
    if not start:
        return "-"
    return f"{(end or time.time()) - start:.1f}s"
