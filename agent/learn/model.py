"""Learned-model files: one versioned file per trained model.

A model file (joblib) holds a plain dict:

    format        "cloudai-model", format_version 1
    version       e.g. "learned-20250101T120000-3f2a9c1b": stored on every decision
                  the model takes part in (DecisionRecord.model_version); the digest
                  covers the priority weights, the profile and the predictors
    priority      {"features": [...], "backfill": [w...], "no_backfill": [w...],
                  "recent": k}; the features are names from priority.FEATURES (any
                  subset, in any order), so models trained on an older, smaller
                  feature set load; "recent" (optional, 0 = off) makes the orderer
                  estimate run times from each user's last k jobs (RecentRuntimes)
    profile       a placement profile (dict, see policy.profiles) or None
    predictors    {"runtime": estimator, "memory": estimator, ...} or None
    meta          how it was trained: traces, slices, scores

The shipped default (cloudai/agent/models/default.joblib) holds only numbers and
strings, so it loads on any scikit-learn version. Files with predictors hold
scikit-learn estimators; like any pickle, load only model files you produced.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cloudai.agent.policy.profiles import Profile
from cloudai.errors import ConfigError, InvalidArgument
from cloudai.security.inputs import MAX_SHORT_TEXT
from cloudai.validation import validate_text

from .priority import FEATURES

FORMAT, FORMAT_VERSION = "cloudai-model", 1
DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "models" / "default.joblib"


class ModelError(ConfigError):
    """A model file that is missing, unreadable, corrupt or of another format."""


@dataclass
class LearnedModel:
    version: str
    priority: dict[str, Any]
    profile: dict[str, Any] | None = None
    predictors: dict[str, Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def new(
        cls,
        backfill: np.ndarray,
        no_backfill: np.ndarray,
        *,
        profile: Profile | None = None,
        predictors: dict[str, Any] | None = None,
        meta: dict[str, Any] | None = None,
        name: str = "learned",
        features: Sequence[str] = FEATURES,
        recent: int = 0,
    ) -> LearnedModel:
        priority: dict[str, Any] = {
            "features": list(features),
            "backfill": [float(x) for x in backfill],
            "no_backfill": [float(x) for x in no_backfill],
        }
        if recent:
            priority["recent"] = int(recent)
        prof = profile.to_dict() if profile else None
        digest = hashlib.sha256(json.dumps([priority, prof], sort_keys=True).encode())
        if predictors:  # without them, the digest is the one older versions made
            digest.update(predictors_digest(predictors).encode())
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        version = f"{name}-{stamp}-{digest.hexdigest()[:8]}"
        return cls(version, priority, prof, predictors, dict(meta or {}))

    @property
    def features(self) -> tuple[str, ...]:
        return tuple(self.priority["features"])

    @property
    def recent(self) -> int:
        """k of the RecentRuntimes estimate the orderer uses (0: requested times)."""
        return int(self.priority.get("recent", 0))

    def weights(self, backfill: bool) -> np.ndarray:
        return np.asarray(self.priority["backfill" if backfill else "no_backfill"], np.float64)

    def placement_profile(self) -> Profile:
        """The tuned placement profile, or first-fit when the model has none."""
        from cloudai.agent.policy.baselines import baseline_profile

        if not self.profile:
            return baseline_profile("firstfit")
        return Profile.from_dict(self.profile).validate()

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "version": self.version,
            "priority": self.priority,
            "profile": self.profile,
            "predictors": self.predictors,
            "meta": self.meta,
        }

    def save(self, path: str | Path) -> Path:
        import joblib

        p = writable(path)
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            joblib.dump(self.to_dict(), p, compress=3)
        except OSError as err:
            raise ModelError(f"cannot write model file {str(p)!r}: {err.strerror or err}") from err
        return p


def predictors_digest(predictors: dict[str, Any]) -> str:
    """A digest of the fitted predictors' content (their estimators' parameters and
    fitted arrays, their per-key statistics): the same for the same training data and
    seed, whatever the process, so that a model's version tells its predictors apart.
    joblib's hash pickles with sorted dicts and sets and hashes numpy arrays' bytes."""
    import joblib

    return joblib.hash(predictors, hash_name="sha1")


def writable(path: str | Path) -> Path:
    """`path` if a model file can be written there (checked before a long training run);
    ModelError otherwise: no name, a directory, a folder that cannot be written, or an
    SQLite database (the master's store, say): writing a model over it would destroy it."""
    if not str(path).strip():
        raise ModelError("no model file given: name the file to write")
    p = Path(path)
    if _is_database(p):
        raise ModelError(
            f"{str(p)!r} is an SQLite database (a master's store?), not a model file: "
            "it is left alone; give another file name"
        )
    if p.is_dir():
        raise ModelError(f"model file {str(p)!r} is a directory: give a file name in it")
    folder = next((d for d in p.absolute().parents if d.exists()), Path("/"))
    if not folder.is_dir():
        raise ModelError(f"cannot write model file {str(p)!r}: {str(folder)!r} is not a folder")
    if (p.exists() and not os.access(p, os.W_OK)) or not os.access(folder, os.W_OK | os.X_OK):
        raise ModelError(f"cannot write model file {str(p)!r}: permission denied")
    return p


def _is_database(p: Path) -> bool:
    """True for an existing SQLite database file (its 16-byte header)."""
    try:
        with p.open("rb") as f:
            return f.read(16) == SQLITE_HEADER
    except OSError:  # missing, a directory, unreadable: writable() says why
        return False


SQLITE_HEADER = b"SQLite format 3\x00"


def load_model(path: str | Path) -> LearnedModel:
    """Read and check a model file; raise ModelError with one clear line otherwise."""
    import joblib

    p = Path(path)
    if p.is_dir():
        raise ModelError(f"model file {str(p)!r} is a directory, not a model file")
    if not p.is_file():
        raise ModelError(f"model file {str(p)!r} does not exist")
    if p.stat().st_size == 0:
        raise ModelError(f"model file {str(p)!r} is empty")
    try:
        data = joblib.load(p)
    except Exception as err:  # joblib/pickle raise many types for a damaged file
        reason = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
        raise ModelError(
            f"model file {str(p)!r} is corrupt or not a model file (reading it failed "
            f"with {reason})"
        ) from err
    return _from_dict(data, p)


def _from_dict(data: Any, p: Path) -> LearnedModel:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ModelError(f"model file {str(p)!r} is not a CloudAI model file")
    reason = ""
    if data.get("format_version") != FORMAT_VERSION:
        reason = f"unsupported model format {data.get('format_version')!r}"
    version = str(data.get("version") or "unversioned")
    reason = reason or _priority_problem(data.get("priority")) or _other_problem(data)
    reason = reason or _label_problem(version)
    if reason:
        raise ModelError(f"model file {str(p)!r} is invalid: {reason}")
    return LearnedModel(
        version=version,
        priority=data["priority"],
        profile=data.get("profile"),
        predictors=data.get("predictors"),
        meta=dict(data.get("meta") or {}),
    )


def _label_problem(version: str) -> str:
    """What the master would refuse in the model's version ("" when nothing): it is
    sent with every decision, and a refused one would keep the agent from placing."""
    try:
        validate_text("its version", version, MAX_SHORT_TEXT)
    except InvalidArgument as err:
        return str(err)
    return ""


def _priority_problem(prio: Any) -> str:
    """What is wrong with a model's `priority` table ("" when nothing)."""
    if not isinstance(prio, dict):
        return f"'priority' must be a table, got {type(prio).__name__}"
    names = prio.get("features")
    if not isinstance(names, list | tuple) or not names or any(f not in FEATURES for f in names):
        return "trained on other features than this version's"
    for key in ("backfill", "no_backfill"):
        w = prio.get(key)
        if not isinstance(w, list | tuple) or len(w) != len(names) or not all(map(_finite, w)):
            return f"priority weights {key!r} must be {len(names)} finite numbers"
    recent = prio.get("recent", 0)
    if not isinstance(recent, int) or isinstance(recent, bool) or recent < 0:
        return f"'recent' must be a whole number >= 0, got {recent!r}"
    return ""


def _finite(x: Any) -> bool:
    return isinstance(x, int | float | np.number) and not isinstance(x, bool) and np.isfinite(x)


def _other_problem(data: dict[str, Any]) -> str:
    """What is wrong with a model's profile, predictors or meta ("" when nothing)."""
    profile = data.get("profile")
    if profile is not None:
        if not isinstance(profile, dict):
            return f"'profile' must be a table or None, got {type(profile).__name__}"
        try:
            Profile.from_dict(profile).validate()
        except (ConfigError, TypeError, ValueError, AttributeError) as err:
            return f"placement profile: {err}"
    for key in ("predictors", "meta"):
        if not isinstance(data.get(key) or {}, dict):
            return f"{key!r} must be a table or None, got {type(data[key]).__name__}"
    return _predictors_problem((data.get("predictors") or {}).get("tasks"))


def _predictors_problem(pred: Any) -> str:
    """What is wrong with a model's task predictors ("" when none or usable): they
    must predict run times and peak memory (the agent calls both on every batch)."""
    if pred is None:
        return ""
    missing = [m for m in PREDICT_METHODS if not callable(getattr(pred, m, None))]
    if missing:
        return f"'predictors' has no {missing[0]}() (got {type(pred).__name__})"
    return ""


PREDICT_METHODS = ("predict_runtime", "predict_memory")


_default: LearnedModel | None = None


def load_default_model() -> LearnedModel:
    """The model shipped in the package (loaded once)."""
    global _default
    if _default is None:
        _default = load_model(DEFAULT_MODEL)
    return _default
