"""A failing store fails every call that writes: its error is logged at most once per
interval, not once per heartbeat."""

from __future__ import annotations

import math
import time

STORE_LOG_INTERVAL_S = 10.0


class Throttle:
    """`ready()` is True at most once per `interval_s` (a rare double under a race is
    harmless: it only logs)."""

    def __init__(self, interval_s: float = STORE_LOG_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self._last = -math.inf

    def ready(self) -> bool:
        now = time.monotonic()
        if now - self._last < self.interval_s:
            return False
        self._last = now
        return True
