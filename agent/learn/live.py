"""The learned policy in the live agent, and shadow mode.

`LearnedPolicy.prepare` turns one SchedulingBatch into the inputs of `place_batch`:
the tasks (with memory packed by prediction when enabled), the snapshot, and the
model's profile whose `learned` orderer gets the batch's runtime estimates and the
cluster's free and largest cpu. The placement itself is `place_batch`, as for every
other policy; the simulator resolves the same orderer from the same model file.
`LearnedPolicy.place` does both; with memory packed by prediction it then re-places,
by request, any task whose request does not fit where it went (the master commits by
request, and would refuse it).

`Shadow` places each batch a second time with a candidate policy, on a copy of the
snapshot, and counts the tasks where the two choices differ. Nothing it decides is
sent: it only logs, so a policy can be judged on live traffic before it is switched on.

The disagreement rate is over *decisions*: a task in a batch that at least one of the
two policies placed. A task neither placed (it fits nowhere, and stays pending) is no
decision, so a queue of unplaceable tasks, pushed again with every batch, does not
dilute the rate. A task is counted once per batch that decides it (again only if the
master sends it again, e.g. after refusing the placement). A disagreement is of one
of two kinds, counted apart: both policies placed the task, on different workers; or
only one placed it (with more queued work than room, the two orders chose different
tasks to run now).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence

import numpy as np

from cloudai.agent.policy.baselines import baseline_profile
from cloudai.agent.policy.core import place_batch
from cloudai.agent.policy.placement import Placement
from cloudai.agent.policy.profiles import Profile
from cloudai.agent.policy.snapshot import CPU, MEM, ClusterState, TaskRequest
from cloudai.convert import spec_from_pb
from cloudai.model import TaskSpec
from cloudai.proto import master_agent_pb2
from cloudai.reasons import shadow_kinds

from .model import LearnedModel, ModelError, load_default_model, load_model
from .predictors import packed_memory

log = logging.getLogger("cloudai.agent")
DEFAULT_MEMORY_MARGIN = 0.2
DEFAULT = "(the shipped model)"


class LearnedPolicy:
    def __init__(
        self,
        model: LearnedModel,
        pack_memory: bool = False,
        memory_margin: float = DEFAULT_MEMORY_MARGIN,
    ) -> None:
        self.model = model
        self.pack_memory, self.margin = pack_memory, memory_margin
        self.base = dataclasses.replace(model.placement_profile(), orderer="learned")
        pred = (model.predictors or {}).get("tasks")
        self.predictors = pred

    @property
    def version(self) -> str:
        return self.model.version

    def prepare(
        self,
        batch: master_agent_pb2.SchedulingBatch,
        tasks: list[TaskRequest],
        state: ClusterState,
    ) -> tuple[list[TaskRequest], Profile]:
        runtime = self._runtimes(batch)
        if self.pack_memory and self.predictors is not None and tasks:
            specs = [spec_from_pb(t.spec) for t in batch.tasks]
            peak = self.predictors.predict_memory(specs)
            tasks = [
                dataclasses.replace(t, memory_bytes=packed_memory(t.memory_bytes, p, self.margin))
                for t, p in zip(tasks, peak.tolist(), strict=True)
            ]
        params = {
            "model": self.model,
            "backfill": True,  # a live queue never blocks: every task that fits goes
            "runtime": runtime,
            "free": float(state.free[CPU].max(initial=0.0)) if len(state) else math.inf,
            "capacity": float(state.cap[CPU].max(initial=0.0)) if len(state) else math.inf,
        }
        merged = {**self.base.params, "learned": params}
        return tasks, dataclasses.replace(self.base, params=merged)

    def place(
        self,
        batch: master_agent_pb2.SchedulingBatch,
        tasks: list[TaskRequest],
        state: ClusterState,
    ) -> list[Placement]:
        """Place the batch with this model. With memory packing, no task is left on a
        worker its *request* does not fit: the master commits by request and would
        refuse it, and the task would wait although another worker has room."""
        packed, profile = self.prepare(batch, tasks, state)
        now = batch.timestamp or None
        placements = place_batch(packed, state, profile, now=now)
        return placements if packed is tasks else by_request(placements, tasks, state, profile, now)

    def _runtimes(self, batch: master_agent_pb2.SchedulingBatch) -> dict[str, float]:
        """Predicted seconds when the model has predictors, else the task's timeout
        (the user's own bound, like an SWF requested time) where one is set."""
        if self.predictors is not None and batch.tasks:
            specs = [spec_from_pb(t.spec) for t in batch.tasks]
            pred = self.predictors.predict_runtime(specs)
            return {t.task_id: float(p) for t, p in zip(batch.tasks, pred.tolist(), strict=True)}
        return {t.task_id: t.spec.timeout_s for t in batch.tasks if t.spec.timeout_s > 0}


def by_request(
    placements: list[Placement],
    tasks: Sequence[TaskRequest],
    state: ClusterState,
    profile: Profile,
    now: float | None,
) -> list[Placement]:
    """`placements` (made with packed memory) whose requests fit, in decision order;
    the tasks whose request does not fit where they went are placed again, by their
    request, on what the kept placements leave free. So are the tasks left unplaced:
    the ones moved may have held, in the first pass, what those needed."""
    request = {t.task_id: t for t in tasks}
    work, kept, again, moved = state.copy(), [], [], False
    for p in placements:
        t, i = request[p.task_id], state.index.get(p.worker_id, -1)
        if p.placed and i >= 0 and work.free[MEM, i] >= t.memory_bytes:
            work.reserve(i, t.cpu, t.memory_bytes, t.gpu)
            kept.append(p)
        else:
            moved = moved or p.placed
            again.append(t)
    if not moved:
        return placements
    return kept + place_batch(again, work, profile, now=now, mutate=True)


def learned_or_none(path: str, **kw: object) -> LearnedPolicy | None:
    """The learned policy from `path` (or the shipped model when empty); None, with
    one warning line, when the file is missing or corrupt."""
    model = _model_or_none(
        path, "learned policy unavailable (%s); falling back to the default profile"
    )
    return None if model is None else LearnedPolicy(model, **kw)  # type: ignore[arg-type]


def _model_or_none(path: str, warning: str) -> LearnedModel | None:
    """The model file at `path` (the shipped model when empty); None, after logging
    `warning` with the reason, when it is missing or corrupt."""
    try:
        model = load_model(path) if path else load_default_model()
        _check_predictors(model, path)
    except ModelError as err:
        log.warning(warning, err)
        return None
    return model


def _check_predictors(model: LearnedModel, path: str) -> None:
    """ModelError unless the model's predictors (if any) answer for one task: a file
    whose estimators cannot predict here (another scikit-learn, a damaged pickle)
    would otherwise fail every batch the agent is sent."""
    pred = (model.predictors or {}).get("tasks")
    if pred is None:
        return
    probe, name = [TaskSpec(image="probe")], repr(path or DEFAULT)
    try:
        ok = all(np.shape(f(probe)) == (1,) for f in (pred.predict_runtime, pred.predict_memory))
    except Exception as err:  # whatever the estimator raises, the model is unusable
        why = (str(err) or type(err).__name__).splitlines()[0]
        raise ModelError(f"model file {name}: its predictors cannot predict: {why}") from err
    if not ok:
        raise ModelError(f"model file {name}: its predictors give no prediction per task")


@dataclasses.dataclass
class ShadowBatch:
    """One batch compared: how many decisions it held (tasks at least one policy
    placed), and (task, active worker, shadow worker) for each that differs."""

    decisions: int
    diff: list[tuple[str, str, str]]


class Shadow:
    """Counts how often a candidate policy would have decided differently. The rate
    is disagreements / decisions, where a decision is a task in a batch that the
    active or the shadow policy placed (see the module docstring)."""

    def __init__(self, policy: str, learned: LearnedPolicy | None = None) -> None:
        """`learned`: the candidate when `policy` is "learned" (see shadow_or_none)."""
        self.name = policy
        self.learned = learned
        self.profile = None if policy == "learned" else baseline_profile(policy)
        if self.learned is None and self.profile is None:
            raise ValueError("a learned shadow needs its LearnedPolicy")
        self.decisions = 0
        self.disagreements = 0
        self.elsewhere = 0  # both placed the task, on different workers

    @property
    def rate(self) -> float:
        return self.disagreements / self.decisions if self.decisions else 0.0

    def report(self) -> master_agent_pb2.ShadowReport:
        """The counts so far, as the agent sends them with each answer (for status)."""
        return master_agent_pb2.ShadowReport(
            policy=self.name,
            decisions=self.decisions,
            disagreements=self.disagreements,
            other_worker=self.elsewhere,
        )

    def compare(
        self,
        batch: master_agent_pb2.SchedulingBatch,
        tasks: list[TaskRequest],
        state: ClusterState,
        active: Sequence[Placement],
    ) -> ShadowBatch:
        """Place the batch with the shadow policy and count where it differs."""
        if self.learned is not None:
            ours = self.learned.place(batch, tasks, state)
        else:
            assert self.profile is not None
            ours = place_batch(tasks, state, self.profile, now=batch.timestamp or None)
        theirs = {p.task_id: p.worker_id for p in ours}
        decided = [(p.task_id, p.worker_id, theirs.get(p.task_id, "")) for p in active]
        decided = [(t, a, b) for t, a, b in decided if a or b]
        diff = [(t, a or "-", b or "-") for t, a, b in decided if a != b]
        self.decisions += len(decided)
        self.disagreements += len(diff)
        self.elsewhere += sum(1 for _, a, b in diff if "-" not in (a, b))
        return ShadowBatch(len(decided), diff)


def shadow_or_none(policy: str, model_path: str = "", **kw: object) -> Shadow | None:
    """The shadow for `policy`; None, with one warning line, for a learned shadow
    whose model file is missing or corrupt (the shadow is then disabled: comparing
    the default profile instead would report on a policy nobody asked about). `kw`
    (pack_memory, memory_margin) configure a learned shadow as `--policy learned`
    would run with the same settings: the policy being judged is that one."""
    if policy != "learned":
        return Shadow(policy)
    model = _model_or_none(
        model_path, "shadow policy learned disabled (%s); no disagreement will be logged"
    )
    return None if model is None else Shadow(policy, LearnedPolicy(model, **kw))  # type: ignore[arg-type]


NO_DECISION = "no decision compared yet (neither policy has placed a task)"


def disagreement_line(shadow: Shadow, outcome: ShadowBatch) -> str:
    diff, n = outcome.diff, outcome.decisions
    if not shadow.decisions:  # a rate of 0.0% would read as full agreement
        return f"shadow {shadow.name}: {NO_DECISION}"
    shown = ", ".join(f"{t}: {a}->{b}" for t, a, b in diff[:5])
    more = f" (+{len(diff) - 5} more)" if len(diff) > 5 else ""
    return (
        f"shadow {shadow.name}: {len(diff)} of {n} decision(s) differ{': ' if diff else ''}"
        f"{shown}{more}; disagreement rate {shadow.rate:.1%} over {shadow.decisions}"
        f"{shadow_kinds(shadow.disagreements, shadow.elsewhere)}"
    )


def summary_line(shadow: Shadow) -> str:
    """The line the agent prints when it stops: the rate over the whole run."""
    if not shadow.decisions:
        return f"shadow {shadow.name}: {NO_DECISION}"
    rate = f"disagreement rate {shadow.rate:.1%} over {shadow.decisions} decision(s)"
    return f"shadow {shadow.name}: {rate}{shadow_kinds(shadow.disagreements, shadow.elsewhere)}"
