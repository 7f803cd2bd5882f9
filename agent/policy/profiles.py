"""Profiles: named sets of filters and weighted scorers, as data.

A profile file (JSON, or TOML read with tomllib) looks like:

    {"name": "gpu-pack", "filters": ["health", "avoid", "selector", "cpu", "memory", "gpu"],
     "scorers": {"most_allocated": 2, "image_locality": 1}, "orderer": "priority_fifo",
     "params": {"priority_fifo": {"aging_s": 120}}}

`filters` defaults to every built-in filter in the standard order, `orderer` to
priority_fifo. Weights are non-negative numbers; a weight of 0 disables a scorer.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cloudai.errors import ConfigError

from .filters import DEFAULT_FILTERS
from .registry import REGISTRY, Kind, Registry


@dataclass(frozen=True)
class Profile:
    name: str
    scorers: dict[str, float]
    filters: tuple[str, ...] = DEFAULT_FILTERS
    orderer: str = "priority_fifo"
    # Per-plugin constructor arguments, e.g. {"priority_fifo": {"aging_s": 120}}.
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    description: str = ""

    def validate(self, registry: Registry = REGISTRY) -> Profile:
        """Raise ConfigError naming the first problem; return self when valid."""
        if not self.name:
            raise ConfigError("a profile needs a name")
        for name in self.filters:
            _check(registry, self.name, Kind.FILTER, name)
        for name, weight in self.scorers.items():
            _check(registry, self.name, Kind.SCORER, name)
            if not isinstance(weight, int | float) or weight < 0:
                raise ConfigError(
                    f"profile {self.name!r}: weight of {name!r} must be a number >= 0, "
                    f"got {weight!r}"
                )
        _check(registry, self.name, Kind.ORDERER, self.orderer)
        for name in self.params:
            if registry.kind_of(name) is None:
                raise ConfigError(f"profile {self.name!r}: params for unknown plugin {name!r}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "filters": list(self.filters),
            "scorers": dict(self.scorers),
            "orderer": self.orderer,
            "params": {k: dict(v) for k, v in self.params.items()},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Profile:
        unknown = set(d) - {"name", "description", "filters", "scorers", "orderer", "params"}
        if unknown:
            raise ConfigError(f"unknown profile field(s): {', '.join(sorted(unknown))}")
        if not isinstance(d.get("scorers"), dict) or not d["scorers"]:
            raise ConfigError("a profile needs a non-empty 'scorers' table: {name: weight}")
        return cls(
            name=str(d.get("name", "")),
            description=str(d.get("description", "")),
            filters=tuple(d.get("filters", DEFAULT_FILTERS)),
            scorers={str(k): v for k, v in d["scorers"].items()},
            orderer=str(d.get("orderer", "priority_fifo")),
            params={str(k): dict(v) for k, v in d.get("params", {}).items()},
        )


def _check(registry: Registry, profile: str, kind: Kind, name: str) -> None:
    have = registry.kind_of(name)
    if have == kind:
        return
    if have is None:
        known = ", ".join(registry.names(kind))
        raise ConfigError(f"profile {profile!r}: unknown {kind} {name!r} (known: {known})")
    raise ConfigError(f"profile {profile!r}: {name!r} is a {have}, not a {kind}")


BUILTIN_PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile(
            "default",
            {
                "least_allocated": 1.0,
                "balanced_allocation": 1.0,
                "image_locality": 1.0,
                "live_load": 1.0,
            },
            description="spread, balance resources, reuse cached images, avoid busy hosts",
        ),
        Profile(
            "binpack", {"most_allocated": 1.0}, description="fill workers before using new ones"
        ),
        Profile("spread", {"least_allocated": 1.0}, description="use the emptiest worker"),
        Profile(
            "tetris", {"tetris": 1.0}, description="match the demand's shape to the free shape"
        ),
    )
}


def load_profile(path: str | Path, registry: Registry = REGISTRY) -> Profile:
    """Read and validate a profile file (.json or .toml)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"cannot read profile file {str(p)!r}: {err.strerror or err}") from err
    try:
        data = tomllib.loads(text) if p.suffix.lower() == ".toml" else json.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as err:
        raise ConfigError(
            f"profile file {str(p)!r} is not valid {p.suffix or 'JSON'}: {err}"
        ) from err
    if not isinstance(data, dict):
        raise ConfigError(f"profile file {str(p)!r} must hold a table/object")
    data.setdefault("name", p.stem)
    return Profile.from_dict(data).validate(registry)


def save_profile(profile: Profile, path: str | Path) -> Path:
    """Write a profile as JSON, or as TOML when the path ends in .toml."""
    profile.validate()
    p = Path(path)
    d = profile.to_dict()
    text = _to_toml(d) if p.suffix.lower() == ".toml" else json.dumps(d, indent=2) + "\n"
    p.write_text(text, encoding="utf-8")
    return p


def _to_toml(d: dict[str, Any]) -> str:
    # tomllib only reads; a profile is flat enough to write by hand (JSON strings are
    # valid TOML basic strings).
    lines = [f"{k} = {json.dumps(d[k])}" for k in ("name", "description", "orderer")]
    lines.append(f"filters = {json.dumps(d['filters'])}")
    lines += ["", "[scorers]"] + [
        f"{json.dumps(k)} = {float(v)!r}" for k, v in d["scorers"].items()
    ]
    for plugin, params in d["params"].items():
        lines += ["", f"[params.{json.dumps(plugin)}]"]
        lines += [f"{json.dumps(k)} = {json.dumps(v)}" for k, v in params.items()]
    return "\n".join(lines) + "\n"


def resolve_profile(profile: Profile | str | Path, registry: Registry = REGISTRY) -> Profile:
    """A Profile, the name of a built-in one, or the path of a profile file; validated."""
    if isinstance(profile, Profile):
        return profile.validate(registry)
    if isinstance(profile, str) and profile in BUILTIN_PROFILES:
        return BUILTIN_PROFILES[profile]
    if Path(profile).suffix.lower() in (".json", ".toml") or Path(profile).exists():
        return load_profile(profile, registry)
    names = ", ".join(BUILTIN_PROFILES)
    raise ConfigError(
        f"unknown profile {str(profile)!r}: use one of {names}, or a profile file path"
    )
