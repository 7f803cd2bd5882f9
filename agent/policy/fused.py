"""Linear scorers' `terms`, fused into one plain function for one worker at a time.

A reservation changes one worker, and that worker's column of the scoring matrix is
then recomputed with Python floats (see plan.py). Calling every scorer's `terms` and
adding up their tuples costs several times the arithmetic itself, once per placement.
`fuse` runs each scorer's `terms` once on symbols instead of numbers, records the
arithmetic, and compiles it into a single function of the seven view fields that
returns the whole column.

The function performs the same operations on the same operands in the same order as
calling `terms` and adding the tuples, so its results are bit for bit the same (IEEE
+ - * / are exactly rounded, and a + b == b + a). Terms that do anything else with
the view (compare it, branch on it, pass it to numpy or math) cannot be traced: the
symbol refuses, `fuse` returns None, and the plan calls `terms` as before.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from .snapshot import WorkerView

Column = Callable[..., list[float]]


class _Untraceable(Exception):
    pass


class _Trace:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def emit(self, expr: str) -> _Sym:
        name = f"t{len(self.lines)}"
        self.lines.append(f"    {name} = {expr}")
        return _Sym(self, name)


class _Sym:
    """A number that records the arithmetic done with it."""

    __slots__ = ("trace", "name")
    __hash__ = None  # type: ignore[assignment]
    __array_ufunc__ = None  # numpy refuses to compute with it

    def __init__(self, trace: _Trace, name: str) -> None:
        self.trace, self.name = trace, name

    def _op(self, op: str, other: Any, reverse: bool = False) -> _Sym:
        rhs = _operand(other)
        return self.trace.emit(f"{rhs} {op} {self.name}" if reverse else f"{self.name} {op} {rhs}")

    def __add__(self, o: Any) -> _Sym:
        return self._op("+", o)

    def __radd__(self, o: Any) -> _Sym:
        return self._op("+", o, True)

    def __sub__(self, o: Any) -> _Sym:
        return self._op("-", o)

    def __rsub__(self, o: Any) -> _Sym:
        return self._op("-", o, True)

    def __mul__(self, o: Any) -> _Sym:
        return self._op("*", o)

    def __rmul__(self, o: Any) -> _Sym:
        return self._op("*", o, True)

    def __truediv__(self, o: Any) -> _Sym:
        return self._op("/", o)

    def __rtruediv__(self, o: Any) -> _Sym:
        return self._op("/", o, True)

    def __neg__(self) -> _Sym:
        return self.trace.emit(f"-{self.name}")

    def __pos__(self) -> _Sym:
        return self

    def _refuse(self, *args: Any) -> Any:
        raise _Untraceable

    __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = _refuse  # type: ignore[assignment]
    __bool__ = __float__ = __int__ = __index__ = __abs__ = __pow__ = __rpow__ = _refuse
    __floordiv__ = __rfloordiv__ = __mod__ = __rmod__ = __round__ = _refuse


def _operand(x: Any) -> str:
    if isinstance(x, _Sym):
        return x.name
    if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x):
        raise _Untraceable
    return repr(int(x)) if isinstance(x, int) else repr(float(x))


def fuse(
    terms: Sequence[Callable[[WorkerView, bool], Sequence[Any]]],
    gpu: bool,
    features: Sequence[int],
    scales: Sequence[float] | None,
    offset: float,
) -> Column | None:
    """One function (the seven view fields) -> the column: for each feature in
    `features`, the scorers' terms (times `scales`, if any) added in scorer order,
    plus `offset` on the first. None when some `terms` cannot be traced."""
    trace = _Trace()
    view = WorkerView(*(_Sym(trace, f) for f in WorkerView._fields))
    try:
        per_scorer = [[_operand(t) for t in fn(view, gpu)] for fn in terms]
        column = []
        for f in features:
            acc = ""
            for m, coefs in enumerate(per_scorer):
                term = coefs[f]
                if scales is not None:
                    term = trace.emit(f"{_operand(scales[m])} * {term}").name
                acc = term if not acc else trace.emit(f"{acc} + {term}").name
            column.append(acc)
        column[0] = trace.emit(f"{column[0]} + {_operand(offset)}").name
    except (_Untraceable, TypeError, ValueError, IndexError, ArithmeticError):
        return None
    source = "\n".join(
        [f"def column({', '.join(WorkerView._fields)}):", *trace.lines]
        + [f"    return [{', '.join(column)}]"]
    )
    namespace: dict[str, Any] = {}
    exec(compile(source, "<fused terms>", "exec"), namespace)  # our own tokens only
    return namespace["column"]
