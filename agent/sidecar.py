"""`cloudai agent`: the placement sidecar.

It holds one server stream open to the master (WatchSchedulingWork). Every batch the
master pushes is placed with the policy library and answered with one
SubmitPlacements carrying a decision for every task. There is no polling: the stream
drives the work, so a submitted task is placed milliseconds after the master pushes it.

When the stream breaks or the master is down, the agent reconnects with exponential
backoff and jitter, one log line per failure. SIGTERM or SIGINT stops it cleanly.

A master that refuses the agent's token (UNAUTHENTICATED or PERMISSION_DENIED) before
it ever served the agent will not change its mind: the agent exits 1 with one line.
Once served, a refusal may be a token rotation in progress: it retries, slowly.
"""

from __future__ import annotations

import logging
import random
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType

import grpc

from cloudai import rpc
from cloudai.config import AgentSettings
from cloudai.errors import CloudAIError, ConfigError, InvalidArgument
from cloudai.proto import master_agent_pb2, master_agent_pb2_grpc
from cloudai.security.inputs import MAX_SHORT_TEXT, check_id
from cloudai.security.tls import transport_for
from cloudai.validation import validate_text

from .learn.live import (
    LearnedPolicy,
    disagreement_line,
    learned_or_none,
    shadow_or_none,
    summary_line,
)
from .policy.baselines import BASELINE_PROFILES
from .policy.core import place_batch
from .policy.filters import ENFORCED_FILTERS
from .policy.profiles import BUILTIN_PROFILES, Profile, resolve_profile
from .wire import batch_from_pb, placements_to_pb

log = logging.getLogger("cloudai.agent")
LEARNED = "learned"

BACKOFF_MIN_S = 0.2
BACKOFF_MAX_S = 5.0
SUBMIT_TIMEOUT_S = 30.0
# A stream that stayed open this long was a real connection: start backoff afresh.
_HEALTHY_STREAM_S = 2.0
# The master's answers to a token it will not take: permanent until someone acts.
_REFUSED = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
# Retries after such a refusal, once served: slow, as only an operator can fix it.
REFUSED_BACKOFF_S = (1.0, 30.0)
# Per batch: at most this many placements the master refused, one line each, and this
# many reasons in the line that sums up the tasks left pending (a queue of thousands of
# tasks that fit nowhere is pushed again with every batch: one line per task would
# flood the log).
MAX_REFUSED_LINES = 10
MAX_PENDING_REASONS = 3


def choose_profile(settings: AgentSettings) -> Profile:
    """A profile file (--profile PATH) wins; else --policy names a built-in profile."""
    if not settings.profile:
        check_policy_name(settings.policy, "policy")
    return resolve_profile(settings.profile or settings.policy)


def _warn_if_unfiltered(profile: Profile) -> None:
    """A placement that an enforced filter would have ruled out is refused by the
    master, every batch, and the task waits."""
    missing = [f for f in ENFORCED_FILTERS if f not in profile.filters]
    if missing:
        log.warning(
            "profile %r leaves out the filter(s) %s: the master refuses placements they "
            "would rule out, and such tasks wait; keep them in 'filters'",
            profile.name,
            ", ".join(missing),
        )


def policy_names(flag: str = "policy") -> tuple[str, ...]:
    """The names --policy accepts; --shadow also takes the simulator's baselines."""
    names = (*BUILTIN_PROFILES, LEARNED)
    return (*names, *BASELINE_PROFILES) if flag == "shadow" else names


def check_policy_name(name: str, flag: str) -> None:
    """ConfigError naming every accepted name unless `name` is one or a profile file."""
    path = Path(name)
    is_file = bool(name) and (path.suffix.lower() in (".json", ".toml") or path.exists())
    if name in policy_names(flag) or is_file:
        return
    names = ", ".join(policy_names(flag))
    what = "shadow policy" if flag == "shadow" else "policy"
    raise ConfigError(f"unknown {what} {name!r}: use one of {names}, or a profile file path")


class Backoff:
    """Decorrelated jitter (AWS architecture blog, "Exponential Backoff And Jitter"):
    each delay is random in [min, 3 * previous], capped, so agents that lost the same
    master do not reconnect in lockstep."""

    def __init__(
        self, lo: float = BACKOFF_MIN_S, hi: float = BACKOFF_MAX_S, rng: random.Random | None = None
    ) -> None:
        self.lo, self.hi = lo, hi
        self._rng = rng or random.Random()
        self._last = lo

    def next(self) -> float:
        self._last = min(self.hi, self._rng.uniform(self.lo, self._last * 3))
        return self._last

    def reset(self) -> None:
        self._last = self.lo


class Agent:
    def __init__(self, settings: AgentSettings, *, backoff: Backoff | None = None) -> None:
        """Raises ConfigError for an empty id, an unknown policy, a bad profile file, or
        TLS files or a token file that cannot be read."""
        if not settings.agent_id.strip():
            raise ConfigError("--id: the agent id must not be empty (default: agent-1)")
        self.settings = settings
        self.transport = transport_for(settings)
        self.policy_name = settings.policy
        self.learned: LearnedPolicy | None = None
        self.model_version = ""
        if settings.shadow:
            check_policy_name(settings.shadow, "shadow")
        if settings.profile and settings.policy not in ("", "default"):
            raise ConfigError(
                f"--policy {settings.policy} and --profile {settings.profile}: give one "
                "(a profile file is the policy; --policy learned takes its profile from "
                "the model)"
            )
        if settings.policy == LEARNED:
            self._use_learned(settings)
        else:
            self.profile = choose_profile(settings)
            if settings.model and settings.shadow != LEARNED:
                log.warning(
                    "--model %s ignored: it is used only by --policy learned or --shadow learned",
                    settings.model,
                )
        self.shadow = self._make_shadow(settings) if settings.shadow else None
        _warn_if_unfiltered(self.profile)
        self._check_watch()
        self.backoff = backoff or Backoff()
        self.refused_backoff = Backoff(*REFUSED_BACKOFF_S)
        self.batches = 0
        # Served: the master accepted this agent's watch at least once.
        self.served = False
        # Why the master refused this agent's token before ever serving it ("": it did not).
        self.refused = ""
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._call: grpc.Future | None = None

    def _use_learned(self, settings: AgentSettings) -> None:
        # A missing or corrupt model must not stop placement: warn, use default.
        self.learned = learned_or_none(
            settings.model,
            pack_memory=settings.pack_predicted_memory,
            memory_margin=settings.memory_margin,
        )
        self.policy_name = LEARNED if self.learned else "default"
        self.profile = self.learned.base if self.learned else resolve_profile("default")
        self.model_version = self.learned.version if self.learned else ""
        if settings.pack_predicted_memory and self.learned and self.learned.predictors is None:
            log.warning(
                "CLOUDAI_PACK_PREDICTED_MEMORY ignored: model %s has no predictors (train "
                "them with `cloudai agent train`); memory is packed by request",
                self.model_version,
            )

    @staticmethod
    def _make_shadow(settings: AgentSettings):
        """The shadow policy; a learned one packs memory as --policy learned would."""
        return shadow_or_none(
            settings.shadow,
            settings.model,
            pack_memory=settings.pack_predicted_memory,
            memory_margin=settings.memory_margin,
        )

    def _watch_request(self) -> master_agent_pb2.WatchRequest:
        return master_agent_pb2.WatchRequest(
            agent_id=self.settings.agent_id,
            policy=self.policy_name,
            profile=self.profile.name,
            model_version=self.model_version,
        )

    def _check_watch(self) -> None:
        """ConfigError for what the master would refuse on every watch (the agent
        would otherwise retry for ever): an id, or a profile name, it does not take."""
        where = f" in {self.settings.profile!r}" if self.settings.profile else ""
        try:
            check_id("--id", self.settings.agent_id, optional=True)
            validate_text(f"the profile's name{where}", self.profile.name, MAX_SHORT_TEXT)
        except InvalidArgument as err:
            refused = "" if str(err).startswith("--id") else " (the master refuses it)"
            raise ConfigError(f"{err}{refused}") from None

    def run(self) -> None:
        """Watch, place and submit until `stop()`; reconnect on failure. Returns early,
        with `refused` set, when the master refuses the token, or the TLS handshake
        fails, before serving us."""
        target = self.settings.master
        while not self._stop.is_set():
            opened = time.monotonic()
            try:
                with self.transport.channel(target) as channel:
                    self._serve(master_agent_pb2_grpc.MasterAgentStub(channel))
                failure, refused = "stream closed by the master", False
            except grpc.RpcError as err:
                if self._stop.is_set():
                    break
                failure, refused = _describe(err), _code(err) in _REFUSED
                if rpc.tls_failed(err) and not self.served:
                    self.refused = rpc.describe_rpc_error(err, target)
                    return
            if time.monotonic() - opened > _HEALTHY_STREAM_S:
                self.served = True  # a refusal comes at once: this watch was accepted
                self.backoff.reset()
            if refused and not self.served:
                self.refused = (
                    f"the master refused this agent's token: {failure} "
                    "(the agent needs a token with the agent role)"
                )
                return
            delay = self._retry_in(refused)
            if refused:
                failure = f"token refused ({failure}), a token rotation may be in progress"
            log.warning("master %s: %s; reconnecting in %.1fs", target, failure, delay)
            self._stop.wait(delay)

    def _retry_in(self, refused: bool) -> float:
        if refused:
            return self.refused_backoff.next()
        self.refused_backoff.reset()
        return self.backoff.next()

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            if self._call is not None:
                self._call.cancel()

    def _serve(self, stub: master_agent_pb2_grpc.MasterAgentStub) -> None:
        call = stub.WatchSchedulingWork(self._watch_request())
        with self._lock:
            self._call = call
        if self._stop.is_set():
            call.cancel()
        try:
            for batch in call:
                self.served = True
                self.backoff.reset()
                self.refused_backoff.reset()
                self._answer(stub, batch)
        finally:
            with self._lock:
                self._call = None

    def _shadow(self, batch, tasks, state, placements) -> None:
        """Log where the shadow policy would have decided otherwise; never raises."""
        shadow = self.shadow
        assert shadow is not None
        try:
            outcome = shadow.compare(batch, tasks, state, placements)
        except Exception:  # the candidate's bug must never disturb the active policy
            log.exception("batch %d: shadow policy %s failed", batch.sequence, shadow.name)
            return
        log.info("batch %d: %s", batch.sequence, disagreement_line(shadow, outcome))

    def _answer(
        self, stub: master_agent_pb2_grpc.MasterAgentStub, batch: master_agent_pb2.SchedulingBatch
    ) -> None:
        started = time.perf_counter()
        tasks, state = batch_from_pb(batch)
        try:
            if self.learned is not None:
                placements = self.learned.place(batch, tasks, state)
            else:
                placements = place_batch(tasks, state, self.profile, now=batch.timestamp or None)
        except Exception:  # a policy bug: say so, and let the master fall back
            log.exception("batch %d: placement failed", batch.sequence)
            return
        if self.shadow is not None:
            self._shadow(batch, tasks, state, placements)
        msg = placements_to_pb(
            placements,
            agent_id=self.settings.agent_id,
            sequence=batch.sequence,
            policy=self.policy_name,
            profile=self.profile.name,
            model_version=self.model_version,
        )
        if self.shadow is not None:
            msg.shadow.CopyFrom(self.shadow.report())
        results = stub.SubmitPlacements(msg, timeout=SUBMIT_TIMEOUT_S)
        self.batches += 1
        accepted = sum(r.accepted for r in results.results)
        log.info(
            "batch %d: %d task(s), %d placed, %d committed (%.1f ms)",
            batch.sequence,
            len(tasks),
            sum(p.placed for p in placements),
            accepted,
            (time.perf_counter() - started) * 1000,
        )
        _log_not_placed(batch.sequence, placements, results.results)


def _log_not_placed(sequence: int, placements, results) -> None:
    """One line per placement the master refused (up to MAX_REFUSED_LINES), and one
    line for the tasks the policy left pending, counted by reason."""
    where = {p.task_id: p.worker_id for p in placements}
    refused = [r for r in results if not r.accepted and where.get(r.task_id)]
    for r in refused[:MAX_REFUSED_LINES]:
        why = r.reason or "no reason given"
        log.info("task %s not placed on %s: %s", r.task_id, where[r.task_id], why)
    if len(refused) > MAX_REFUSED_LINES:
        log.info(
            "batch %d: %d more placement(s) refused", sequence, len(refused) - MAX_REFUSED_LINES
        )
    pending = [r for r in results if not r.accepted and not where.get(r.task_id)]
    if pending:
        log.info("batch %d: %d task(s) left pending: %s", sequence, len(pending), _reasons(pending))


def _reasons(results) -> str:
    """The reasons, most common first (at most MAX_PENDING_REASONS), each with its
    count and one task, e.g. `no healthy worker (3, e.g. t-1)`."""
    by: dict[str, list[str]] = {}
    for r in results:
        by.setdefault(r.reason or "no reason given", []).append(r.task_id)
    top = sorted(by.items(), key=lambda kv: -len(kv[1]))
    text = "; ".join(f"{why} ({len(ids)}, e.g. {ids[0]})" for why, ids in top[:MAX_PENDING_REASONS])
    rest = len(top) - MAX_PENDING_REASONS
    return text + (f"; {rest} other reason(s)" if rest > 0 else "")


def _code(err: grpc.RpcError) -> grpc.StatusCode | None:
    return err.code() if hasattr(err, "code") else None


def _describe(err: grpc.RpcError) -> str:
    code = _code(err)
    if rpc.store_failed(err):
        return f"the master cannot use its store: {err.details()}"
    if code == grpc.StatusCode.UNAVAILABLE:
        return "unavailable"
    details = err.details() if hasattr(err, "details") else str(err)
    return f"{code.name.lower() if code else 'error'}: {details}"


def run_agent(settings: AgentSettings) -> int:
    """Run the sidecar until SIGTERM/SIGINT. Exit status 0, or 1 for a bad setting
    (bad input; 2 is kept for a master that cannot be reached)."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr
    )
    try:
        agent = Agent(settings)
    except CloudAIError as err:
        print(f"cloudai agent: {err}", file=sys.stderr)
        return 1
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    worker = threading.Thread(target=agent.run, name="agent", daemon=True)
    worker.start()
    # Announced only now, so that whoever waits for this line can already stop us.
    print(
        f"✓ CloudAI agent {settings.agent_id}: profile {agent.profile.name}, "
        f"master {settings.master}",
        flush=True,
    )
    try:
        # Wake up now and then: a bare Event.wait() can delay signal delivery.
        while not stop.wait(0.5) and worker.is_alive():
            pass
    finally:
        agent.stop()
        worker.join(timeout=5)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if agent.refused:
        print(f"cloudai agent: {agent.refused}", file=sys.stderr)
        return 1
    if agent.shadow is not None:
        print(summary_line(agent.shadow))
    print("✓ agent stopped", flush=True)
    return 0
