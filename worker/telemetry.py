"""What this machine has (capacity) and how busy it is now (telemetry), via psutil.

GPUs are counted and sampled through `nvidia-smi` where it is installed; machines
without it report zero GPUs and an empty utilisation list.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import threading
import time
from typing import Protocol

import psutil

from cloudai.model import Resources
from cloudai.proto import common_pb2

# nvidia-smi can hang when a driver is wedged; a heartbeat must not.
NVIDIA_SMI_TIMEOUT_S = 2.0
DISK_PATH = "/"


class CapacityCaps(Protocol):
    """The part of WorkerSettings that caps detected capacity (0 = no cap)."""

    cpu: float
    memory: int
    gpu: float


@functools.cache
def nvidia_smi_path() -> str | None:
    """Looked up once: the binary does not appear or vanish while the worker runs."""
    return shutil.which("nvidia-smi")


def _nvidia_query(field: str) -> list[str]:
    """One line per GPU for `field`, or [] when there is no nvidia-smi or it fails."""
    binary = nvidia_smi_path()
    if binary is None:
        return []
    try:
        out = subprocess.run(
            [binary, f"--query-gpu={field}", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=NVIDIA_SMI_TIMEOUT_S,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def gpu_count() -> int:
    return len(_nvidia_query("index"))


def gpu_utilisation() -> list[float]:
    values: list[float] = []
    for line in _nvidia_query("utilization.gpu"):
        try:
            values.append(float(line))
        except ValueError:  # "[Not Supported]" on some boards
            values.append(0.0)
    return values


def machine_capacity(caps: CapacityCaps | None = None) -> Resources:
    """The resources this worker advertises: what the machine has, lowered to any
    positive cap in the settings (`cloudai worker --cpu 1` shares a machine)."""
    cpu = float(psutil.cpu_count(logical=True) or 1)
    memory = int(psutil.virtual_memory().total)
    gpu = float(gpu_count())
    if caps is not None:
        cpu = min(cpu, caps.cpu) if caps.cpu > 0 else cpu
        memory = min(memory, caps.memory) if caps.memory > 0 else memory
        gpu = min(gpu, caps.gpu) if caps.gpu > 0 else gpu
    return Resources(cpu=cpu, memory_bytes=memory, gpu=gpu)


_prime_lock = threading.Lock()
_primed = False


def _cpu_percent() -> float:
    """Non-blocking CPU use since the previous call. The very first call only primes
    psutil's counters (it would return a meaningless 0.0), so prime then wait briefly."""
    global _primed
    with _prime_lock:
        if not _primed:
            psutil.cpu_percent(interval=None)
            _primed = True
            time.sleep(0.05)
    return float(psutil.cpu_percent(interval=None))


def sample() -> common_pb2.Telemetry:
    """A snapshot of this machine's load, for heartbeats and registration."""
    mem = psutil.virtual_memory()
    try:
        disk = psutil.disk_usage(DISK_PATH)
        disk_percent, disk_free = float(disk.percent), int(disk.free)
    except OSError:
        disk_percent, disk_free = 0.0, 0
    try:
        load1 = os.getloadavg()[0]
    except OSError:  # not available on every platform
        load1 = 0.0
    return common_pb2.Telemetry(
        cpu_percent=_cpu_percent(),
        memory_used_bytes=int(mem.total - mem.available),
        memory_total_bytes=int(mem.total),
        memory_percent=float(mem.percent),
        disk_percent=disk_percent,
        disk_free_bytes=disk_free,
        gpu_util_percent=gpu_utilisation(),
        load1=float(load1),
        timestamp=time.time(),
    )
