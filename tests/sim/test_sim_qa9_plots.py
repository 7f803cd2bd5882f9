"""QA pass 9: notebook 01's "GPU demand of openb pods" chart came from a comprehension
in the cell that kept the 12 smallest amounts asked for. On openb those are all shares
of one GPU, so the chart left out the whole-GPU pods, half of all pods (1,502 of the
first 3,000), while the text above it says most pods ask for one whole GPU."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from cloudai.agent.sim import plots


def test_gpu_demand_keeps_the_most_common_amounts_smallest_first():
    # 13 amounts: whole GPUs are the most common, 0.05 the rarest.
    shares = [0.05, 0.1, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
    gpu = [0.05] + [s for s in shares[1:] for _ in range(2)] + [0.0] * 5 + [1.0] * 9 + [8.0] * 3
    got = plots.gpu_demand(SimpleNamespace(gpu=np.array(gpu)), top=12)
    assert got["1"] == 9 and got["8"] == 3 and got["0"] == 5
    assert "0.05" not in got and len(got) == 12
    assert [float(k) for k in got] == sorted(float(k) for k in got)
    assert sum(got.values()) == len(gpu) - 1


def test_gpu_demand_of_fewer_amounts_than_top_is_all_of_them():
    got = plots.gpu_demand(SimpleNamespace(gpu=np.array([1.0, 0.5, 1.0, 0.0])), top=12)
    assert got == {"0": 1, "0.5": 1, "1": 2}
