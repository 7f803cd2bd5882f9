"""The ship guard: a searched orderer replaces a simple rule only on evidence.

On small held-out data a search can look a few percent better than the best simple
rule on its validation sequences by chance, and then lose to that rule on the real
windows (docs/placement-results.md, Rounds 3, 5 and 8). The guard asks for a paired
test instead of a bare comparison of means: per validation sequence, the difference
d = log(bsld of the best rule) - log(bsld of the searched weights), > 0 where the
search did better. The searched weights are kept only if the one-sided Student t of
mean(d) reaches the given confidence; otherwise the result is that rule's weights.

The t quantile is computed from the normal one (statistics.NormalDist) with the
Cornish-Fisher expansion, so this module needs nothing beyond numpy; for 5 or more
degrees of freedom and confidences up to 0.99 it is within 0.02 of the exact value
(0.001 from 10 degrees of freedom on).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from statistics import NormalDist

import numpy as np


def t_quantile(confidence: float, dof: int) -> float:
    """The `confidence` quantile of Student's t with `dof` degrees of freedom (approx.)."""
    z = NormalDist().inv_cdf(confidence)
    v = float(dof)
    return (
        z
        + (z**3 + z) / (4 * v)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * v**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * v**3)
    )


@dataclass(frozen=True)
class Verdict:
    """What the guard decided for one mode (stored in a model file's meta)."""

    against: str  # the best rule on the validation sequences
    gain: float  # mean over sequences of log(rule bsld / searched bsld); > 0: searched better
    t: float  # the paired t statistic of that gain (0 when every difference is 0)
    needed: float  # the t it had to reach
    kept: bool  # True: the searched weights ship; False: the rule's weights do

    def as_dict(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        what = "searched weights kept" if self.kept else f"falls back to {self.against}"
        return (
            f"guard: {100 * (math.exp(self.gain) - 1):+.1f}% vs {self.against} "
            f"(t {self.t:+.2f}, needed {self.needed:.2f}): {what}"
        )


def paired_t(mine: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """(mean gain, t) of log(ref) - log(mine) over paired per-sequence bsld values."""
    d = np.log(np.asarray(ref, np.float64)) - np.log(np.asarray(mine, np.float64))
    gain = float(d.mean())
    sd = float(d.std(ddof=1)) if len(d) > 1 else 0.0
    if sd == 0.0:
        return gain, 0.0 if gain == 0.0 else math.copysign(math.inf, gain)
    return gain, gain / (sd / math.sqrt(len(d)))


def judge(mine: np.ndarray, rules: Mapping[str, np.ndarray], confidence: float) -> Verdict:
    """The verdict for searched weights with per-sequence bsld `mine`, against the
    rule (of `rules`, name -> per-sequence bsld on the same sequences) with the lowest
    mean bsld."""
    if len(mine) < 3:
        raise ValueError("the guard needs at least 3 validation sequences")
    against = min(rules, key=lambda name: float(np.mean(rules[name])))
    gain, t = paired_t(mine, rules[against])
    needed = t_quantile(confidence, len(mine) - 1)
    return Verdict(against, gain, t, needed, bool(t >= needed))
