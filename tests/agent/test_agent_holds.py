"""Holding a worker for a task that has waited too long (agent/policy/holds.py)."""

from __future__ import annotations

import json

import pytest

from cloudai.agent.policy import Profile, make_state, make_task, make_worker, place_batch
from cloudai.agent.policy.holds import (
    HELD_REASON,
    HOLD_AFTER_S,
    MAX_HOLD_TRIES,
    waited,
    worker_to_hold,
)
from cloudai.agent.policy.profiles import BUILTIN_PROFILES, load_profile, save_profile
from cloudai.errors import ConfigError

NOW = 10_000.0


def _busy_pair():
    """w1 has 1 cpu free of 4, w2 has 2 free of 4; nothing fits a 4-cpu task now."""
    return make_state(
        make_worker("w1").cpu(4).mem("8g").used(cpu=3, mem="1g"),
        make_worker("w2").cpu(4).mem("8g").used(cpu=2, mem="1g"),
    )


def _big(waited_s: float):
    return make_task("big").cpu(4).mem("1g").queued(NOW - waited_s)


def _small(name: str = "small"):
    return make_task(name).cpu(1).mem("256m").queued(NOW - 5)


def _place(*builders, profile="default"):
    """The placements in the order the builders are given (not the decision order)."""
    out = place_batch([b.build() for b in builders], _busy_pair(), profile, now=NOW)
    by_id = {p.task_id: p for p in out}
    return [by_id[b.build().task_id] for b in builders]


def test_a_task_that_waited_long_gets_the_worker_closest_to_fitting_held():
    big, s1, s2 = _place(_big(HOLD_AFTER_S + 1), _small("s1"), _small("s2"))
    assert not big.placed
    # w2 lacks 2 of 4 cpu, w1 lacks 3: w2 is held, and the small tasks go to w1 only.
    assert big.hint.endswith("worker w2 is held for it (no newer task goes there)")
    assert s1.worker_id == "w1"
    assert s1.rejections == {HELD_REASON: 1}
    assert not s2.placed  # w1 is full now, and w2 stays held
    assert s2.rejections == {HELD_REASON: 1, "insufficient cpu": 1}
    assert "held" not in s2.hint


def test_no_hold_before_the_wait_and_for_a_task_of_unknown_age():
    for big in (_big(HOLD_AFTER_S - 1), make_task("big").cpu(4).mem("1g")):
        out = _place(big, _small("s1"), _small("s2"))
        assert "held" not in out[0].hint
        assert out[1].worker_id == "w2" and out[2].placed  # w2 has the most room
        assert not any(HELD_REASON in p.rejections for p in out)


def test_a_profile_can_turn_holds_off_or_hold_at_once():
    off = Profile("off", {"least_allocated": 1.0}, hold_after_s=None)
    out = _place(_big(10 * HOLD_AFTER_S), _small(), profile=off)
    assert out[1].worker_id == "w2" and "held" not in out[0].hint
    at_once = Profile("now", {"least_allocated": 1.0}, hold_after_s=0.0)
    out = _place(_big(10), _small(), profile=at_once)
    assert out[1].worker_id == "w1" and "w2 is held" in out[0].hint


def test_only_the_first_starving_task_is_held_for():
    second = make_task("big2").cpu(3.5).mem("1g").queued(NOW - HOLD_AFTER_S - 1)
    out = _place(_big(2 * HOLD_AFTER_S), second, _small())
    assert "w2 is held" in out[0].hint
    assert "held" not in out[1].hint  # one reservation per batch, as in EASY
    assert out[1].rejections == {HELD_REASON: 1, "insufficient cpu": 1}
    assert out[2].worker_id == "w1"


def test_the_held_worker_must_be_able_to_take_the_task_one_day():
    state = make_state(
        make_worker("small").cpu(2).mem("8g"),  # too small ever
        make_worker("gpu").cpu(8).mem("8g").used(cpu=7).label("zone", "b"),  # wrong zone
        make_worker("ok").cpu(8).mem("8g").used(cpu=6).label("zone", "a"),
    )
    task = make_task("t").cpu(4).mem("1g").selector(zone="a").queued(1.0).build()
    alive = state.active.copy()
    filters = place_filters()
    assert worker_to_hold(task, state, alive, filters) == state.index["ok"]
    nowhere = make_task("t").cpu(16).mem("1g").queued(1.0).build()
    assert worker_to_hold(nowhere, state, alive, filters) is None
    [p] = place_batch([nowhere], state, now=NOW)
    assert "held" not in p.hint


def test_a_starving_pinned_task_holds_its_own_worker():
    out = _place(
        _big(HOLD_AFTER_S + 1).pin("w1"),
        make_task("pinned").cpu(1).mem("256m").pin("w1").queued(NOW),
        _small(),
    )
    assert "worker w1 is held for it" in out[0].hint
    assert not out[1].placed and out[1].rejections == {HELD_REASON: 1}
    assert out[2].worker_id == "w2" and out[2].rejections == {HELD_REASON: 1}


def test_holds_end_starvation_in_a_busy_cluster():
    """Two 4-cpu workers kept busy by a stream of 1-cpu tasks of 60 s, two arriving
    every 20 s: without a hold a 4-cpu task waits as long as the stream lasts; with
    one it starts soon after its wait passes HOLD_AFTER_S."""
    off = Profile("off", {"least_allocated": 1.0}, hold_after_s=None)
    assert _start_of_big(off) is None
    started = _start_of_big(Profile("holds", {"least_allocated": 1.0}))
    assert started is not None and HOLD_AFTER_S < started < HOLD_AFTER_S + 60 + 20


def _start_of_big(profile: Profile, horizon: float = 3600.0) -> float | None:
    """Time the big task (queued at t=1) starts in a 20-s step simulation, or None.
    Each worker starts with three 1-cpu tasks running, ending at 30, 50 and 70 s."""
    workers = {w: [(30.0, 1.0), (50.0, 1.0), (70.0, 1.0)] for w in ("w1", "w2")}
    queue = [make_task("big").cpu(4).mem("1g").queued(1.0).build()]
    t, n = 20.0, 0
    while t < horizon:
        for running in workers.values():
            running[:] = [r for r in running if r[0] > t]
        for _ in range(2):
            n += 1
            queue.append(make_task(f"s{n}").cpu(1).mem("1m").queued(t).build())
        used = {w: sum(c for _, c in running) for w, running in workers.items()}
        state = make_state(*(make_worker(w).cpu(4).mem("8g").used(cpu=c) for w, c in used.items()))
        tasks = {q.task_id: q for q in queue}
        for p in place_batch(queue, state, profile, now=t):
            if p.placed:
                workers[p.worker_id].append((t + 60.0, tasks.pop(p.task_id).cpu))
                if p.task_id == "big":
                    return t
        queue = list(tasks.values())
        t += 20.0
    return None


def place_filters():
    from cloudai.agent.policy.core import Pipeline

    return Pipeline.build(BUILTIN_PROFILES["default"]).filters


def test_profiles_keep_hold_after_s_through_json_and_toml(tmp_path):
    for hold in (None, 0.0, 42.5):
        p = Profile("p", {"least_allocated": 1.0}, hold_after_s=hold)
        for suffix in (".json", ".toml"):
            path = save_profile(p, tmp_path / f"p{suffix}")
            assert load_profile(path).hold_after_s == hold, (hold, suffix)
    plain = Profile("p", {"least_allocated": 1.0})
    assert "hold_after_s" not in plain.to_dict()  # the default: digests stay as before
    assert Profile.from_dict(plain.to_dict()).hold_after_s == HOLD_AFTER_S


@pytest.mark.parametrize("bad", [-1, "300", True, float("nan"), float("inf")])
def test_a_bad_hold_after_s_is_refused_at_load(tmp_path, bad):
    path = tmp_path / "p.json"
    text = json.dumps({"scorers": {"least_allocated": 1}, "hold_after_s": bad})
    path.write_text(text)
    with pytest.raises(ConfigError, match="hold_after_s"):
        load_profile(path)


def test_waited_is_unknown_without_a_queue_time():
    assert waited(make_task("t").build(), NOW) == -1.0
    assert waited(make_task("t").queued(NOW - 7).build(), NOW) == 7.0


def test_tasks_no_worker_could_take_are_looked_at_a_few_times_a_batch(monkeypatch):
    import cloudai.agent.policy.batch as batch_module

    calls = []
    real = batch_module.worker_to_hold
    monkeypatch.setattr(batch_module, "worker_to_hold", lambda *a: calls.append(1) or real(*a))
    for distinct in (False, True):
        calls.clear()
        huge = [
            make_task(f"huge{i}").cpu(64 + i * distinct).mem("1g").queued(NOW - HOLD_AFTER_S - i)
            for i in range(500)
        ]
        out = _place(*huge, _small())
        assert not any(p.placed for p in out[:-1]) and out[-1].placed
        assert len(calls) == (MAX_HOLD_TRIES if distinct else 1)  # one look per kind
        assert not any("held" in p.hint for p in out)
