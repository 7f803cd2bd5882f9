"""A model's version names its predictors too. `cloudai agent train` on different
task histories wrote files with different runtime/memory predictors but one version
(its digest covered the priority weights and the profile only), so the version stored
on every decision did not say which predictors placed it. The digest now covers the
fitted predictors: another history gives another version, the same history and seed
the same digest in any process. A model without predictors keeps the digest it had,
and the shipped model files load with the versions they carry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cloudai.agent.learn.model import DEFAULT_MODEL, LearnedModel, load_default_model, load_model
from cloudai.agent.learn.predictors import synthetic_examples, with_predictors
from cloudai.agent.policy.profiles import Profile

from .test_agent_predictors import cli, history


def _digest(version: str) -> str:
    return version.rsplit("-", 1)[1]


def _train(tmp_path: Path, db: Path, out: str) -> str:
    """`cloudai agent train` as a real process (each its own hash seed): the version."""
    cmd = ("agent", "train", "--db", f"sqlite:///{db}", "--out", out, "--json")
    done = cli(*cmd, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    version = json.loads(done.stdout)["version"]
    assert load_model(tmp_path / out).version == version
    return version


def test_agent_train_on_another_history_gives_another_version(tmp_path):
    history(tmp_path / "a.db")
    history(tmp_path / "same.db")  # the same runs, written later
    history(tmp_path / "owned.db", owner="ann")  # the same runs, with an owner
    a = _train(tmp_path, tmp_path / "a.db", "a.joblib")
    same = _train(tmp_path, tmp_path / "same.db", "same.joblib")
    owned = _train(tmp_path, tmp_path / "owned.db", "owned.joblib")
    assert _digest(a) == _digest(same)
    assert _digest(a) != _digest(owned)
    # The policy is the shipped model's in all three: only the predictors differ.
    assert _digest(a) != _digest(load_default_model().version)


def test_the_digest_covers_the_predictors_and_is_repeatable():
    base = load_default_model()
    one = with_predictors(base, synthetic_examples(40, seed=1))
    again = with_predictors(base, synthetic_examples(40, seed=1))
    other = with_predictors(base, synthetic_examples(40, seed=2))
    assert one.priority == other.priority and one.profile == other.profile
    assert _digest(one.version) == _digest(again.version)
    assert _digest(one.version) != _digest(other.version)


@pytest.mark.parametrize(
    "path", sorted(DEFAULT_MODEL.parent.glob("*.joblib")), ids=lambda p: p.name
)
def test_shipped_models_load_and_keep_the_digest_of_a_model_without_predictors(path):
    model = load_model(path)
    if model.predictors:
        pytest.skip("a model file with predictors: its digest covers them")
    rebuilt = LearnedModel.new(
        model.weights(True),
        model.weights(False),
        profile=Profile.from_dict(model.profile) if model.profile else None,
        features=model.features,
        recent=model.recent,
    )
    assert _digest(rebuilt.version) == _digest(model.version)
