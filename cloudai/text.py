"""Text from peers (workers, containers, Docker) made safe to store and show.

A worker's result message or refusal is shown by `cloudai task`, `explain` and the
console; it must not drive the operator's terminal (escape sequences, bidi overrides)
nor grow without bound. It is cleaned, not refused: refusing a worker's result would
make it retry for ever, and a result must not be lost for the bytes of a message.
"""

from __future__ import annotations

import re

# C0 controls but tab and newline, DEL and C1 controls, bidi embeddings and overrides.
_UNPRINTABLE_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def printable(text: str, limit: int | None = None) -> str:
    """`text` cut to `limit` characters (with "…" when cut), each control character
    but tab and newline replaced by U+FFFD."""
    if limit is not None and len(text) > limit:
        text = text[: max(limit - 1, 0)] + "…"
    return _UNPRINTABLE_RE.sub("\ufffd", text)
