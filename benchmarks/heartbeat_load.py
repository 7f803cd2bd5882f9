#!/usr/bin/env python3
"""Heartbeat load: many simulated workers against a real `cloudai master` process.

    python benchmarks/heartbeat_load.py [--workers 1000] [--seconds 60] [--interval 0.9]
                                        [--heartbeat-timeout 5] [--json]

The simulated workers run no containers. They speak the real MasterWorker protocol
over loopback gRPC (RegisterWorker, then SendHeartbeat every `--interval` seconds,
with telemetry and a few cached image tags, as a real worker does), from one asyncio
process, each at its own phase so the load is spread evenly. The combined rate is
workers / interval per second: 1,000 workers every 0.9 s give about 1,100 a second
(a real worker beats every 5 s by default, so that is the load of some 5,500 workers).

Reported: heartbeats sent and their rate, client-side latency p50/p99/max, errors,
the longest silence any one worker had between two answered heartbeats, how many
workers the master ever marked inactive (polled every second, plus its log), and
the master's CPU (psutil on its pid: percent of one core, mean and max over 1 s
samples) and RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import grpc
import psutil

from cloudai.cli.demo import LocalCluster
from cloudai.proto import client_pb2 as cpb
from cloudai.proto import client_pb2_grpc
from cloudai.proto import common_pb2 as pb
from cloudai.proto import master_worker_pb2 as mw
from cloudai.proto import master_worker_pb2_grpc as mw_grpc

GiB = 1024**3
IMAGES = [f"cloudai/image-{i}:latest" for i in range(5)]


def telemetry(i: int) -> pb.Telemetry:
    return pb.Telemetry(
        cpu_percent=10.0 + i % 50,
        memory_used_bytes=2 * GiB,
        memory_total_bytes=16 * GiB,
        memory_percent=12.5,
        disk_percent=40.0,
        disk_free_bytes=100 * GiB,
        load1=0.5,
    )


class Load:
    def __init__(self, address: str, workers: int, interval: float) -> None:
        self.address = address
        self.n = workers
        self.interval = interval
        self.latencies: list[float] = []
        self.errors = 0
        self.max_gap = 0.0
        self.unknown = 0

    async def register(self, stub: mw_grpc.MasterWorkerStub) -> None:
        sem = asyncio.Semaphore(32)

        async def one(i: int) -> None:
            async with sem:
                await stub.RegisterWorker(
                    mw.RegisterWorkerRequest(
                        worker_id=f"sim-{i:05d}",
                        address=f"127.0.0.1:{20000 + i}",
                        capacity=pb.Resources(cpu=8, memory_bytes=16 * GiB),
                        labels={"zone": "abc"[i % 3]},
                        hostname=f"sim-{i}",
                        cached_images=IMAGES,
                        telemetry=telemetry(i),
                    ),
                    timeout=30,
                )

        await asyncio.gather(*(one(i) for i in range(self.n)))

    async def beat(self, stub: mw_grpc.MasterWorkerStub, i: int, until: float) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time() + self.interval * i / self.n
        last_ok = time.time()
        request = mw.HeartbeatRequest(
            worker_id=f"sim-{i:05d}", telemetry=telemetry(i), cached_images=IMAGES
        )
        while True:
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            if time.time() >= until:
                return
            began = time.perf_counter()
            try:
                resp = await stub.SendHeartbeat(request, timeout=10)
            except grpc.RpcError:
                self.errors += 1
            else:
                now = time.time()
                self.latencies.append(time.perf_counter() - began)
                self.max_gap = max(self.max_gap, now - last_ok)
                last_ok = now
                self.unknown += not resp.known
            next_at += self.interval

    async def run(self, seconds: float, on_tick) -> None:
        async with grpc.aio.insecure_channel(self.address) as ch:
            stub = mw_grpc.MasterWorkerStub(ch)
            await self.register(stub)
            until = time.time() + seconds
            beats = [asyncio.create_task(self.beat(stub, i, until)) for i in range(self.n)]
            while time.time() < until:
                await asyncio.sleep(1.0)
                await asyncio.get_running_loop().run_in_executor(None, on_tick)
            await asyncio.gather(*beats)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def run(
    workers: int = 1000, seconds: float = 60.0, interval: float = 0.9, timeout: float = 5.0
) -> dict:
    """Run the load against a fresh master process; return the figures."""
    root = Path(tempfile.mkdtemp(prefix="cloudai-hbload-"))
    local = LocalCluster(root, heartbeat_timeout=timeout)
    proc, address = local.start_master(), local.address
    try:
        channel = grpc.insecure_channel(address)
        cluster = client_pb2_grpc.ClusterStub(channel)
        grpc.channel_ready_future(channel).result(timeout=30)
        master = psutil.Process(proc.pid)
        cpu: list[float] = []
        inactive: list[int] = []
        rss: list[int] = []
        master.cpu_percent(None)

        def tick() -> None:
            cpu.append(master.cpu_percent(None))
            rss.append(master.memory_info().rss)
            status = cluster.GetStatus(cpb.StatusRequest(), timeout=5)
            inactive.append(status.workers_inactive)

        load = Load(address, workers, interval)
        began = time.time()
        asyncio.run(load.run(seconds, tick))
        wall = time.time() - began
        final = cluster.ListWorkers(cpb.ListWorkersRequest(), timeout=30).workers
        active = sum(1 for w in final if w.health == pb.WORKER_HEALTH_ACTIVE)
        channel.close()
        log = (root / "master.log").read_text(errors="replace")
        steady = cpu[1:] or cpu  # the first sample includes the registrations
        return {
            "workers": workers,
            "seconds": seconds,
            "interval_s": interval,
            "heartbeat_timeout_s": timeout,
            "heartbeats": len(load.latencies),
            "rate_per_s": round(len(load.latencies) / seconds, 1),
            "latency_p50_ms": round(percentile(load.latencies, 0.50) * 1000, 2),
            "latency_p99_ms": round(percentile(load.latencies, 0.99) * 1000, 2),
            "latency_max_ms": round(max(load.latencies, default=0.0) * 1000, 2),
            "errors": load.errors,
            "answered_unknown": load.unknown,
            "max_gap_between_answers_s": round(load.max_gap, 3),
            "max_inactive_seen": max(inactive, default=0),
            "lost_in_master_log": log.count(" lost (no heartbeat"),
            "active_at_end": active,
            "master_cpu_mean_pct": round(sum(steady) / max(1, len(steady)), 1),
            "master_cpu_max_pct": round(max(steady, default=0.0), 1),
            "master_rss_mb": round(max(rss, default=0) / 1024**2, 1),
            "wall_s": round(wall, 1),
            "machine_load_1m": round(os.getloadavg()[0], 2),
        }
    finally:
        local.stop()
        shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", type=int, default=1000)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--interval", type=float, default=0.9)
    p.add_argument("--heartbeat-timeout", type=float, default=5.0)
    p.add_argument("--json", action="store_true", help="print only the JSON figures")
    a = p.parse_args()
    figures = run(a.workers, a.seconds, a.interval, a.heartbeat_timeout)
    if not a.json:
        for k, v in figures.items():
            print(f"{k:>28}: {v}")
    print(json.dumps(figures))
    healthy = figures["max_inactive_seen"] == 0 and figures["active_at_end"] == a.workers
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
