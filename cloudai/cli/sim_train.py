"""`cloudai sim train`'s support: its options, checked and parsed, and the training run.

The typer command itself (`sim_train`, with its options) stays in sim_cmds.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from dataclasses import dataclass

from cloudai.errors import ConfigError

from .sim_cmds import _config, _exclude, _load


@dataclass(frozen=True, kw_only=True)
class TrainOptions:
    """`cloudai sim train`'s options as given (one field per option, same names)."""

    trace: str
    fmt: str
    out: str
    nodes: str
    node_limit: int
    procs: int
    slice_: str
    limit: int
    seed: int
    iterations: int
    population: int
    windows: int
    length: int
    workers: int
    base: str
    synthetic: int
    exclude: str
    block: int
    load: str
    sampler: str
    validation: int
    start_from_base: bool
    start_on_validation: bool
    guard: float
    objective: str
    init_std: float
    recent: int
    features: str
    modes: str


def run_train(opts: TrainOptions, command: Callable[..., None]) -> None:
    """Train as the options say, write the model and print where it went.

    `command` is the typer command the options came from (`sim_cmds.sim_train`):
    its signature gives each option's default and flag."""
    from cloudai.agent.learn.model import load_model, writable
    from cloudai.agent.learn.tune import train_on_trace

    writable(opts.out)  # before training, not after
    cfg = _train_sim_config(opts)
    _refuse_swf_only(opts, cfg, command)
    _refuse_exclude_only(opts, command)
    tcfg = _train_config(opts).check()
    say = lambda line: print(line, flush=True)  # noqa: E731
    base = load_model(opts.base) if opts.base else None
    model = train_on_trace(opts.trace, cfg, tcfg, say, base)
    path = model.save(opts.out)
    print(f"✓ model {model.version} written to {path}")


# What training an openb profile reads: every other option is for SWF traces.
_OPENB_TRAIN = {"trace", "fmt", "out", "nodes", "node_limit", "limit", "slice_", "seed",
                "iterations", "population", "base"}  # fmt: skip


def _refuse_swf_only(opts: TrainOptions, cfg, command: Callable[..., None]) -> None:
    """On an openb trace, a ConfigError naming the first SWF-only option given: it
    would be ignored, and the model would silently not be what was asked for."""
    from cloudai.agent.sim.runner import check_format

    if check_format(opts.trace, cfg) != "openb":
        return
    params = inspect.signature(command).parameters
    for name, value in dataclasses.asdict(opts).items():
        default = params[name].default.default
        if name not in _OPENB_TRAIN and value != default:
            flag = params[name].default.param_decls[0]
            raise ConfigError(
                f"{flag} is for SWF traces; on an openb trace training tunes the "
                "placement profile (it reads --iterations, --population, --seed, --nodes, "
                "--node-limit, --limit, --slice and --base)"
            )


# What only shapes the held-out sequences of --exclude.
_EXCLUDE_ONLY = ("block", "sampler")


def _refuse_exclude_only(opts: TrainOptions, command: Callable[..., None]) -> None:
    """Without --exclude, a ConfigError naming the first option given that only
    --exclude reads: it would be ignored, as _refuse_swf_only says of openb."""
    if opts.exclude:
        return
    params = inspect.signature(command).parameters
    for name in _EXCLUDE_ONLY:
        if getattr(opts, name) != params[name].default.default:
            flag = params[name].default.param_decls[0]
            raise ConfigError(
                f"{flag} is for --exclude (the held-out sequences): pass --exclude K:L:S"
            )


def _train_sim_config(o: TrainOptions):
    """The simulator settings training runs under (no backfill flag, no windows of its own)."""
    return _config(o.fmt, o.nodes, o.node_limit, o.procs, False, o.seed, o.limit, 0, 0, o.slice_)


def _train_config(o: TrainOptions):
    """The search settings, each text option parsed and checked (ConfigError if bad)."""
    from cloudai.agent.learn.priority import FEATURES
    from cloudai.agent.learn.train import TrainConfig

    return TrainConfig(
        o.iterations,
        o.population,
        0.25,
        o.windows,
        o.length,
        o.seed,
        o.workers,
        o.init_std,
        synthetic=o.synthetic,
        exclude=_exclude(o.exclude),
        block=o.block,
        load=_load(o.load),
        features=_features(o.features, FEATURES),
        modes=_modes(o.modes),
        validation=o.validation,
        start_from_base=o.start_from_base,
        start_on_validation=o.start_on_validation,
        guard=o.guard,
        objective=_one(o.objective, ("logmean", "mean"), "--objective"),
        recent=o.recent,
        sampler=_one(o.sampler, ("bootstrap", "resample"), "--sampler"),
    )


def _features(text: str, known: tuple[str, ...]) -> tuple[str, ...]:
    """The features --features names; all of them when it is not given."""
    names = _names(text, known, "--features")
    if text and not names:
        raise ConfigError(f"--features {text!r}: name at least one (or leave it out for all)")
    return names or known


def _modes(text: str) -> tuple[str, ...]:
    """The weight vectors --modes names; at least one (else nothing would be trained)."""
    # Each once: a mode named twice would be searched twice, and the other mode would
    # not be taken from the shipped model (training then failed with a traceback).
    modes = tuple(dict.fromkeys(_names(text, ("backfill", "no_backfill"), "--modes")))
    if not modes:
        raise ConfigError(f"--modes {text!r}: name backfill, no_backfill or both")
    return modes


def _one(text: str, known: tuple[str, ...], flag: str) -> str:
    """The one name `text` gives (checked against `known`); known[0] if it gives none."""
    names = _names(text, known, flag)
    if len(names) > 1:
        raise ConfigError(f"{flag} {text!r}: name one of {', '.join(known)}")
    return (names or (known[0],))[0]


def _names(text: str, known: tuple[str, ...], flag: str) -> tuple[str, ...]:
    names = tuple(x.strip() for x in text.split(",") if x.strip())
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"{flag}: unknown {unknown[0]!r} (known: {', '.join(known)})")
    return names
