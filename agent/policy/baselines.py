"""Registers the scheduling baselines with the one registry, and their profiles.

Imported by the package (`cloudai.agent.policy`), so the names below exist wherever
the policy library is used: the live agent, the master's fallback, the simulator.

    orderers  fcfs, sjf, wfp3, unicep, f1          (job_ordering)
    scorers   firstfit, bestfit, random, roundrobin (pickers), fgd (fgd)
    filters   gpu_devices                           (gpu_devices)
    profiles  firstfit, bestfit, random, roundrobin, fgd   (BASELINE_PROFILES)

The baseline profiles are kept apart from the built-in ones the agent offers by
name (default, binpack, spread, tetris): they are the simulator's reference points.
A profile file naming these scorers works in the live agent like any other.
"""

from __future__ import annotations

from .fgd import FragmentationGradient
from .filters import DEFAULT_FILTERS
from .gpu_devices import GpuDeviceFilter
from .job_ordering import JOB_ORDERERS
from .pickers import PICKERS
from .profiles import Profile
from .registry import REGISTRY, Kind

# Fractional GPUs must fit on one device; the filter passes everything on a plain
# pool snapshot, so live profiles may carry it at no cost.
DEVICE_FILTERS: tuple[str, ...] = (*DEFAULT_FILTERS, GpuDeviceFilter.name)

_PROFILES: tuple[Profile, ...] = (
    Profile("firstfit", {"firstfit": 1.0}, DEVICE_FILTERS, "fifo",
            description="the first worker that fits, in snapshot order"),
    Profile("bestfit", {"bestfit": 1.0}, DEVICE_FILTERS, "fifo",
            description="the worker left with the least free capacity"),
    Profile("random", {"random": 1.0}, DEVICE_FILTERS, "fifo",
            description="a random worker that fits"),
    Profile("roundrobin", {"roundrobin": 1.0}, DEVICE_FILTERS, "fifo",
            description="rotate over the workers that fit"),
    Profile("fgd", {"fgd": 1.0}, DEVICE_FILTERS, "fifo",
            description="least growth of GPU fragmentation (Weng et al., ATC'23)"),
)  # fmt: skip


def _register() -> None:
    for cls in JOB_ORDERERS:
        REGISTRY.register(Kind.ORDERER, cls.name, cls)
    for cls in (*PICKERS, FragmentationGradient):
        REGISTRY.register(Kind.SCORER, cls.name, cls)
    REGISTRY.register(Kind.FILTER, GpuDeviceFilter.name, GpuDeviceFilter)


_register()
BASELINE_PROFILES: dict[str, Profile] = {p.name: p for p in _PROFILES}


def baseline_profile(name: str) -> Profile:
    """A baseline profile by name, else a built-in one or a profile file."""
    from .profiles import resolve_profile

    return BASELINE_PROFILES[name] if name in BASELINE_PROFILES else resolve_profile(name)
