"""One registry that refuses duplicates; profiles as data, validated, saved and loaded."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cloudai.agent.policy import (
    BUILTIN_PROFILES,
    REGISTRY,
    Kind,
    Profile,
    load_profile,
    make_state,
    make_task,
    make_worker,
    place_batch,
    resolve_profile,
    save_profile,
)
from cloudai.agent.policy.scorers import LeastAllocated
from cloudai.errors import ConfigError


def test_registry_refuses_duplicate_names():
    reg = REGISTRY.copy()
    with pytest.raises(ConfigError, match="already registered"):
        reg.register(Kind.SCORER, "least_allocated", LeastAllocated)
    # One namespace for all kinds: a scorer cannot take a filter's name either.
    with pytest.raises(ConfigError, match="already registered"):
        reg.register(Kind.SCORER, "cpu", LeastAllocated)


def test_registry_creates_by_kind_and_name():
    assert REGISTRY.create(Kind.FILTER, "cpu").name == "cpu"
    assert REGISTRY.create("orderer", "priority_fifo", aging_s=5).aging_s == 5
    with pytest.raises(ConfigError, match="unknown scorer 'nope'"):
        REGISTRY.create(Kind.SCORER, "nope")
    with pytest.raises(ConfigError, match="is a filter, not a scorer"):
        REGISTRY.create(Kind.SCORER, "health")


class FavouriteWorker:
    """A plugin from outside the library: 100 for one named worker, else 0."""

    name = "favourite"
    bounds = (0.0, 1.0)

    def __init__(self, worker: str = "") -> None:
        self.worker = worker

    def score(self, task, state, mask):
        return np.array([w == self.worker for w in state.ids], float)


def test_a_registered_plugin_is_usable_from_a_profile():
    reg = REGISTRY.copy()
    reg.register(Kind.SCORER, "favourite", FavouriteWorker)
    profile = Profile(
        "fav", {"favourite": 1.0, "least_allocated": 0.1}, params={"favourite": {"worker": "w2"}}
    )
    state = make_state(make_worker("w1").cpu(8), make_worker("w2").cpu(2))
    [p] = place_batch([make_task("t").build()], state, profile, now=0, registry=reg)
    assert p.worker_id == "w2"
    assert p.candidates[0].scores["favourite"] == 100.0


@pytest.mark.parametrize("suffix", [".json", ".toml"])
def test_profile_file_round_trip(tmp_path, suffix):
    original = Profile(
        "gpu-pack",
        {"most_allocated": 2.0, "image_locality": 0.5},
        filters=("health", "cpu", "memory", "gpu"),
        orderer="fifo",
        params={"priority_fifo": {"aging_s": 120.0}},
        description="pack GPU boxes",
    )
    path = save_profile(original, tmp_path / f"p{suffix}")
    assert load_profile(path) == original
    assert resolve_profile(str(path)) == original


def test_a_minimal_file_gets_defaults(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"scorers": {"tetris": 1}}))
    p = load_profile(path)
    default_filters = BUILTIN_PROFILES["default"].filters
    assert (p.name, p.orderer, p.filters) == ("mine", "priority_fifo", default_filters)


@pytest.mark.parametrize(
    "content,message",
    [
        ({"scorers": {"leastalocated": 1}}, "unknown scorer 'leastalocated'"),
        ({"scorers": {"tetris": 1}, "filters": ["health", "cpu", "ram"]}, "unknown filter 'ram'"),
        ({"scorers": {"cpu": 1}}, "'cpu' is a filter, not a scorer"),
        ({"scorers": {"tetris": -1}}, "weight tetris must be a finite number >= 0, got -1$"),
        ({"scorers": {}}, "non-empty 'scorers'"),
        ({"scorers": {"tetris": 1}, "orderer": "lottery"}, "unknown orderer 'lottery'"),
        ({"scorers": {"tetris": 1}, "wieghts": {}}, "unknown profile field"),
    ],
)
def test_bad_profile_files_say_what_is_wrong(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ConfigError, match=message):
        load_profile(path)


def test_unreadable_and_unknown_profiles(tmp_path):
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid"):
        load_profile(tmp_path / "broken.json")
    with pytest.raises(ConfigError, match="cannot read"):
        load_profile(tmp_path / "missing.json")
    with pytest.raises(ConfigError, match="unknown profile 'fastest'"):
        resolve_profile("fastest")


def test_builtin_profiles_are_valid():
    assert set(BUILTIN_PROFILES) == {"default", "binpack", "spread", "tetris"}
    for p in BUILTIN_PROFILES.values():
        p.validate()
