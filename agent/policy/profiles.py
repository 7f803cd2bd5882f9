"""Profiles: named sets of filters and weighted scorers, as data.

A profile file (JSON, or TOML read with tomllib) looks like:

    {"name": "gpu-pack", "filters": ["health", "avoid", "selector", "cpu", "memory", "gpu"],
     "scorers": {"most_allocated": 2, "image_locality": 1}, "orderer": "priority_fifo",
     "params": {"priority_fifo": {"aging_s": 120}}}

`filters` defaults to every built-in filter in the standard order, `orderer` to
priority_fifo. Weights are finite numbers >= 0; a weight of 0 disables a scorer.
`params` holds each plugin's constructor arguments. `hold_after_s` (default 300) is
how long a task that fits nowhere waits before a worker is held for it (holds.py);
null or false turns holds off. Loading a profile validates all of it, building every
plugin it names once, so a bad profile is refused at start-up.
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cloudai.errors import ConfigError

from .filters import DEFAULT_FILTERS
from .holds import HOLD_AFTER_S
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
    # Hold a worker for a task that has waited this long and fits nowhere (holds.py);
    # None: never.
    hold_after_s: float | None = HOLD_AFTER_S

    def validate(self, registry: Registry = REGISTRY) -> Profile:
        """Raise ConfigError naming the first problem; return self when valid. Beyond
        `check`, every plugin the profile names is built once with its params, so a
        parameter a plugin does not take, or a value it refuses, fails here and not
        at the first batch."""
        return self._named(_problems, registry)

    def check(self, registry: Registry = REGISTRY) -> Profile:
        """The cheap part of `validate` (types, names, weights), building no plugin:
        the pipeline runs it for every batch, and builds the plugins with `make`."""
        return self._named(_check_shape, registry)

    def make(self, kind: Kind, name: str, registry: Registry = REGISTRY) -> Any:
        """A new instance of plugin `name` with this profile's params for it."""
        try:
            return _build(self, kind, name, registry)
        except ConfigError as err:
            raise ConfigError(f"profile {self.name!r}: {err}") from err

    def _named(self, check: Callable[[Profile, Registry], None], registry: Registry) -> Profile:
        try:
            check(self, registry)
        except ConfigError as err:
            raise ConfigError(f"profile {self.name!r}: {err}") from err
        return self

    def to_dict(self) -> dict[str, Any]:
        d = {
            "name": self.name,
            "description": self.description,
            "filters": list(self.filters),
            "scorers": dict(self.scorers),
            "orderer": self.orderer,
            "params": {k: dict(v) for k, v in self.params.items()},
        }
        # Only when not the default: model digests made before it existed still hold.
        if self.hold_after_s != HOLD_AFTER_S:
            d["hold_after_s"] = self.hold_after_s
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Profile:
        known = {"name", "description", "filters", "scorers", "orderer", "params", "hold_after_s"}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown profile field(s): {', '.join(sorted(unknown))}")
        if not isinstance(d.get("scorers"), dict) or not d["scorers"]:
            raise ConfigError("a profile needs a non-empty 'scorers' table: {name: weight}")
        for key in ("name", "description", "orderer"):
            _want(isinstance(d.get(key, ""), str), key, "a string", d.get(key))
        filters = d.get("filters", list(DEFAULT_FILTERS))
        _want(isinstance(filters, list), "filters", "a list of filter names", filters)
        params = d.get("params", {})
        _want(isinstance(params, dict), "params", "a table of tables", params)
        for plugin, table in params.items():
            _want(isinstance(table, dict), f"params.{plugin}", "a table", table)
        return cls(
            name=d.get("name", ""),
            description=d.get("description", ""),
            filters=tuple(filters),
            scorers=dict(d["scorers"]),
            orderer=d.get("orderer", "priority_fifo"),
            params={k: dict(v) for k, v in params.items()},
            # false (TOML has no null) or null: never hold.
            hold_after_s=None
            if d.get("hold_after_s") is False
            else d.get("hold_after_s", HOLD_AFTER_S),
        )


def _want(ok: bool, key: str, what: str, got: Any) -> None:
    if not ok:
        raise ConfigError(f"{key!r} must be {what}, got {type(got).__name__} {got!r}")


def _check_shape(p: Profile, registry: Registry) -> None:
    """Types, plugin names and kinds, finite weights: ConfigError with a bare message."""
    if not isinstance(p.name, str) or not p.name:
        raise ConfigError("a profile needs a name")
    _want(isinstance(p.filters, list | tuple), "filters", "a list of filter names", p.filters)
    for name in p.filters:
        _check(registry, Kind.FILTER, name)
    _want(isinstance(p.scorers, dict), "scorers", "a table {name: weight}", p.scorers)
    for name, weight in p.scorers.items():
        _check(registry, Kind.SCORER, name)
        if not _weight_ok(weight):
            got = weight if _is_number(weight) else repr(weight)
            raise ConfigError(f"scorer weight {name} must be a finite number >= 0, got {got}")
    if not any(p.scorers.values()):
        raise ConfigError("at least one scorer weight must be > 0 (all are 0)")
    _check(registry, Kind.ORDERER, p.orderer)
    hold = p.hold_after_s
    _want(hold is None or _weight_ok(hold), "hold_after_s", "a finite number >= 0 or null", hold)
    _want(isinstance(p.params, dict), "params", "a table of tables", p.params)
    for name, table in p.params.items():
        if not isinstance(name, str) or registry.kind_of(name) is None:
            raise ConfigError(f"params for unknown plugin {name!r}")
        _want(isinstance(table, dict), f"params.{name}", "a table", table)


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _weight_ok(x: Any) -> bool:
    # `not x >= 0` rather than `x < 0`: NaN compares false either way.
    return _is_number(x) and math.isfinite(x) and x >= 0


def _check(registry: Registry, kind: Kind, name: Any) -> None:
    if not isinstance(name, str):
        raise ConfigError(f"a {kind} name must be a string, got {type(name).__name__} {name!r}")
    have = registry.kind_of(name)
    if have == kind:
        return
    if have is None:
        known = ", ".join(registry.names(kind))
        raise ConfigError(f"unknown {kind} {name!r} (known: {known})")
    raise ConfigError(f"{name!r} is a {have}, not a {kind}")


def _problems(p: Profile, registry: Registry) -> None:
    """`validate` with bare messages (no profile name): load_profile names the file."""
    _check_shape(p, registry)
    for name in dict.fromkeys([*p.filters, *p.scorers, p.orderer, *p.params]):
        kind = registry.kind_of(name)
        assert kind is not None  # _check_shape checked every name
        _build(p, kind, name, registry)


def _build(p: Profile, kind: Kind, name: str, registry: Registry) -> Any:
    params = p.params.get(name, {})
    try:
        return registry.create(kind, name, **params)
    except ConfigError:
        raise
    except Exception as err:  # any plugin's refusal of its params is bad input
        given = ", ".join(f"{k}={v!r}" for k, v in params.items()) or "no params"
        raise ConfigError(f"{kind} {name!r} refused its params ({given}): {err}") from err


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
    except UnicodeDecodeError as err:
        raise ConfigError(f"profile file {str(p)!r} is not UTF-8 text: {err.reason}") from err
    try:
        data = tomllib.loads(text) if p.suffix.lower() == ".toml" else json.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as err:
        raise ConfigError(
            f"profile file {str(p)!r} is not valid {p.suffix or 'JSON'}: {err}"
        ) from err
    if not isinstance(data, dict):
        raise ConfigError(f"profile file {str(p)!r} must hold a table/object")
    data.setdefault("name", p.stem)
    try:
        profile = Profile.from_dict(data)
        _problems(profile, registry)
    except ConfigError as err:
        raise ConfigError(f"profile {p}: {err}") from err
    return profile


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
    if "hold_after_s" in d:  # TOML has no null: false says "never"
        hold = d["hold_after_s"]
        lines.append(f"hold_after_s = {'false' if hold is None else repr(float(hold))}")
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
