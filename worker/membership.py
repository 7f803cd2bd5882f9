"""The worker's standing with the master: registration, then heartbeats.

Loop: register (retrying with backoff while the master is down), then heartbeat
every interval. A failed heartbeat or an answer of known=False sends the loop back
to registration, which is how a worker finds its way back to a restarted master,
whether that master kept its store or started on a fresh one.

On a graceful stop the worker says it leaves (`leave`), so the master stops placing
tasks on it at once instead of at the heartbeat timeout. Best effort, and bounded:
a master that is down must not hold up the shutdown.
"""

from __future__ import annotations

import random
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import grpc

from cloudai import __version__, rpc
from cloudai.config import WorkerSettings
from cloudai.convert import resources_to_pb
from cloudai.model import Resources
from cloudai.proto import common_pb2
from cloudai.proto import master_worker_pb2 as mw
from cloudai.proto import master_worker_pb2_grpc as mw_grpc
from cloudai.validation import format_size
from cloudai.worker import telemetry
from cloudai.worker.reporter import backoff_delays

REGISTER_BACKOFF_S = (0.5, 10.0)
RPC_TIMEOUT_S = 5.0
# How long a stopping worker waits for a heartbeat or registration in flight, or else
# for the master to take its leave: a master that does not answer costs this once.
STOP_WAIT_S = 1.0


# gRPC's own reconnect backoff grows to 120 s by default: after a long master outage
# the worker would sit out up to two minutes with the master long back. The channel
# options of cloudai.rpc cap it at 2 s.
def master_channel(target: str, transport: rpc.Transport = rpc.PLAINTEXT) -> grpc.Channel:
    """The channel to the master: mTLS and the worker's token when configured."""
    return transport.channel(target)


@dataclass(slots=True)
class MemberHooks:
    """What membership needs from the node, as plain callables."""

    running: Callable[[], list[tuple[str, int]]]
    cached_images: Callable[[], list[str]]
    # The master names attempts that are no longer current: stop them.
    stop_attempts: Callable[[Sequence[common_pb2.TaskRef]], None]
    say: Callable[[str], None]
    # The master refused this worker for good (its id is held by another live worker,
    # or its token or request is refused before it ever registered): the node stops
    # and the process exits non-zero with this one line.
    fail: Callable[[str], None] = lambda message: None
    # Why this worker cannot run containers now ("": it can), for heartbeats.
    engine_trouble: Callable[[], str] = lambda: ""


class Membership:
    def __init__(
        self,
        settings: WorkerSettings,
        channel: grpc.Channel,
        capacity: Resources,
        hooks: MemberHooks,
    ) -> None:
        self._settings = settings
        self._stub = mw_grpc.MasterWorkerStub(channel)
        self._capacity = capacity
        self._hooks = hooks
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="membership", daemon=True)
        self._rng = random.Random()
        self.address = ""
        self.interval = settings.heartbeat_interval
        self.registrations = 0
        self.master_drain = False

    def start(self, address: str) -> None:
        self.address = address
        self._thread.start()

    def stop(self, timeout: float = STOP_WAIT_S) -> None:
        """Stop registering and heartbeating. A call still in flight after `timeout`
        (a master that hangs) is left to fail on its own."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout)

    def leave(self, timeout: float = STOP_WAIT_S) -> bool:
        """Tell the master this worker shuts down (after stop()), so that it places
        nothing more on it; its containers are left to a restarted worker. Best effort
        within `timeout`. True if the master took it."""
        if not self.registrations or not self.address:
            return False  # never registered: the master has nothing to forget
        master = self._settings.master
        if self._thread.is_alive():  # its last call did not end within STOP_WAIT_S
            self._hooks.say(f"leaving without telling the master at {master}: not answering")
            return False
        request = mw.HeartbeatRequest(
            worker_id=self._settings.id, running=self._refs(), address=self.address, leaving=True
        )
        try:
            resp = self._stub.SendHeartbeat(request, timeout=timeout)
        except grpc.RpcError as err:
            self._hooks.say(f"leaving without telling the master at {master}: {_why(err)}")
            return False
        if resp.known:
            self._hooks.say("told the master this worker leaves: no new tasks")
        return resp.known

    def _loop(self) -> None:
        while not self._stop.is_set():
            if self._register():
                self._heartbeat_until_lost()

    def _refs(self) -> list[common_pb2.TaskRef]:
        return [common_pb2.TaskRef(task_id=t, attempt=a) for t, a in self._hooks.running()]

    def _register_request(self) -> mw.RegisterWorkerRequest:
        return mw.RegisterWorkerRequest(
            worker_id=self._settings.id,
            address=self.address,
            capacity=resources_to_pb(self._capacity),
            labels=dict(self._settings.labels),
            hostname=socket.gethostname(),
            version=__version__,
            running=self._refs(),
            cached_images=self._hooks.cached_images(),
            telemetry=telemetry.sample(),
        )

    def _register(self) -> bool:
        """Register, retrying with backoff until the master accepts; False if stopping."""
        # Never wait longer than a heartbeat interval between tries: a restarted master
        # gives each known worker one heartbeat timeout to come back.
        low, high = REGISTER_BACKOFF_S
        delays = backoff_delays(low, max(low, min(high, self.interval)), self._rng)
        master, tries, said = self._settings.master, 0, ""
        while not self._stop.is_set():
            try:
                resp = self._stub.RegisterWorker(self._register_request(), timeout=RPC_TIMEOUT_S)
            except grpc.RpcError as err:
                fatal = self._refused_for_good(err)
                if fatal:
                    self._stop.set()  # no retry: the process exits 1 with this line
                    self._hooks.fail(fatal)
                    return False
                why = f"master at {master} {_why(err)}"
            else:
                if resp.accepted:
                    self._registered(resp)
                    return True
                why = f"master at {master} refused registration ({resp.message})"
            tries += 1
            delay = next(delays)
            if _worth_saying(tries) or why != said:  # a new reason is said at once
                said = why
                count = f" (failed {tries} times in a row)" if tries > 1 else ""
                self._hooks.say(f"{why}, retrying in {delay:.1f}s{count}")
            self._stop.wait(delay)
        return False

    def _refused_for_good(self, err: grpc.RpcError) -> str:
        """Why retrying registration is pointless, or "". Another live worker holds our
        id; or, before we were ever registered, the master refuses our token (or
        certificate) or finds the request invalid (say an --ip it cannot take): a
        mistake in this worker's setup. A worker registered before keeps retrying: its
        token may be being rotated."""
        code = _code(err)
        if code == grpc.StatusCode.ALREADY_EXISTS:
            return err.details() or "worker id in use"
        if code in _DENIED and self.registrations == 0:
            return f"the master refused this worker's token: {err.details() or code.name}"
        if code == grpc.StatusCode.INVALID_ARGUMENT and self.registrations == 0:
            return f"the master refused this worker's registration: {err.details() or code.name}"
        if rpc.tls_failed(err) and self.registrations == 0:
            return rpc.describe_rpc_error(err, self._settings.master)
        return ""

    def _registered(self, resp: mw.RegisterWorkerResponse) -> None:
        # Never heartbeat slower than the master expects, nor slower than configured.
        self.interval = self._settings.heartbeat_interval
        if resp.heartbeat_interval_s > 0:
            self.interval = min(self.interval, resp.heartbeat_interval_s)
        self.registrations += 1
        cap = self._capacity
        self._hooks.say(
            f"registered with master at {self._settings.master} as {self.address} "
            f"(cpu={cap.cpu:g}, memory={format_size(cap.memory_bytes)}, gpu={cap.gpu:g})"
        )
        if resp.stop:
            self._hooks.stop_attempts(list(resp.stop))

    def _heartbeat_until_lost(self) -> None:
        """Heartbeat until the master forgets us or cannot be reached (then return so
        the loop registers again) or until stopped."""
        while not self._stop.wait(self.interval):
            request = mw.HeartbeatRequest(
                worker_id=self._settings.id,
                telemetry=telemetry.sample(),
                running=self._refs(),
                cached_images=self._hooks.cached_images(),
                address=self.address,  # who we are: the registration's address
                engine_trouble=self._hooks.engine_trouble(),
            )
            try:
                resp = self._stub.SendHeartbeat(request, timeout=RPC_TIMEOUT_S)
            except grpc.RpcError as err:
                self._hooks.say(f"heartbeat failed: master at {self._settings.master} {_why(err)}")
                return
            if not resp.known:
                self._hooks.say(
                    "master does not know this worker as "
                    f"{self.address} (restarted, or the id was registered elsewhere): "
                    "registering again"
                )
                return
            if resp.drain != self.master_drain:
                self._hooks.say("draining: no new tasks" if resp.drain else "drain lifted")
            self.master_drain = resp.drain
            if resp.stop:
                self._hooks.stop_attempts(list(resp.stop))


_DENIED = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)


def _code(err: grpc.RpcError) -> grpc.StatusCode | None:
    return err.code() if hasattr(err, "code") else None


def _worth_saying(tries: int) -> bool:
    """Say the 1st, 2nd, 4th, 8th... failure in a row: a worker retrying for hours (its
    master down, its token revoked) logs a dozen lines, not one every few seconds.
    (A failure for another reason than the last one said is said too.)"""
    return tries & (tries - 1) == 0


def _why(err: grpc.RpcError) -> str:
    code = _code(err)
    if rpc.store_failed(err):
        return f"cannot use its store: {err.details()}"
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, None):
        return "unreachable"
    detail = err.details() if hasattr(err, "details") else ""
    return f"answered {code.name}: {detail}"
