"""Linear scorers' `terms`, fused into one plain function for one worker at a time.

A reservation changes one worker, and that worker's column of the scoring matrix is
then recomputed with Python floats (see plan.py). Calling every scorer's `terms` and
adding up their tuples costs several times the arithmetic itself, once per placement.
`fuse` runs each scorer's `terms` once on symbols instead of numbers, records the
arithmetic, and compiles it into a single expression per feature, a function of the
seven view fields that returns the whole column.

The function performs the same operations on the same operands in the same order as
calling `terms` and adding the tuples (IEEE + - * / are exactly rounded, a + b ==
b + a, and an operation repeated on the same operands is computed once), so it gives
the same numbers; only adding a literal zero is skipped, which can change nothing
but the sign of a zero. Terms that do anything else with the view (compare it,
branch on it, pass it to numpy or math) cannot be traced: the symbol refuses, `fuse`
returns None, and the plan calls `terms` as before.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import reduce
from operator import add
from typing import Any

from .snapshot import WorkerView

Column = Callable[..., list[float]]
Operand = str | int  # a literal or a view field (str), or a node of the trace (int)


class _Untraceable(Exception):
    pass


class _Trace:
    """The recorded arithmetic: nodes (op, left, right), each recorded once."""

    def __init__(self) -> None:
        self.nodes: list[tuple[str, Operand, Operand]] = []
        self.uses: list[int] = []
        self._index: dict[tuple[str, Operand, Operand], int] = {}

    def node(self, op: str, left: Operand, right: Operand = "") -> Operand:
        key = (op, left, right)
        i = self._index.get(key)
        if i is None:
            i = self._index[key] = len(self.nodes)
            self.nodes.append(key)
            self.uses.append(0)
            self.use(left)
            self.use(right)
        return i

    def use(self, x: Operand) -> None:
        if isinstance(x, int):
            self.uses[x] += 1

    def render(self, x: Operand) -> str:
        """Source for an operand: a temporary when used more than once, else inline."""
        if not isinstance(x, int):
            return x
        return f"t{x}" if self.uses[x] > 1 else f"({self.expr(x)})"

    def expr(self, i: int) -> str:
        op, left, right = self.nodes[i]
        if op == "neg":
            return f"-{self.render(left)}"
        return f"{self.render(left)} {op} {self.render(right)}"

    def source(self, fields: Sequence[str], column: Sequence[Operand]) -> str:
        for x in column:
            self.use(x)
        lines = [f"def column({', '.join(fields)}):"]
        lines += [f"    t{i} = {self.expr(i)}" for i in range(len(self.nodes)) if self.uses[i] > 1]
        return "\n".join([*lines, f"    return [{', '.join(map(self.render, column))}]"])


class _Sym:
    """A number that records the arithmetic done with it."""

    __slots__ = ("trace", "ref")
    __hash__ = None  # type: ignore[assignment]
    __array_ufunc__ = None  # numpy refuses to compute with it

    def __init__(self, trace: _Trace, ref: Operand) -> None:
        self.trace, self.ref = trace, ref

    def _op(self, op: str, other: Any, reverse: bool = False) -> Any:
        o = _operand(other)
        neutral = op in "+-" and o in ("0", "0.0") or op in "*/" and o in ("1", "1.0")
        if neutral and (not reverse or op in "+*"):
            return self  # x + 0, x - 0, x * 1, x / 1 are x
        left, right = (o, self.ref) if reverse else (self.ref, o)
        return _Sym(self.trace, self.trace.node(op, left, right))

    def __add__(self, o: Any) -> Any:
        return self._op("+", o)

    def __radd__(self, o: Any) -> Any:
        return self._op("+", o, True)

    def __sub__(self, o: Any) -> Any:
        return self._op("-", o)

    def __rsub__(self, o: Any) -> Any:
        return self._op("-", o, True)

    def __mul__(self, o: Any) -> Any:
        return self._op("*", o)

    def __rmul__(self, o: Any) -> Any:
        return self._op("*", o, True)

    def __truediv__(self, o: Any) -> Any:
        return self._op("/", o)

    def __rtruediv__(self, o: Any) -> Any:
        return self._op("/", o, True)

    def __neg__(self) -> _Sym:
        return _Sym(self.trace, self.trace.node("neg", self.ref))

    def __pos__(self) -> _Sym:
        return self

    def _refuse(self, *args: Any) -> Any:
        raise _Untraceable

    __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = _refuse  # type: ignore[assignment]
    __bool__ = __float__ = __int__ = __index__ = __abs__ = __pow__ = __rpow__ = _refuse
    __floordiv__ = __rfloordiv__ = __mod__ = __rmod__ = __round__ = _refuse


def _operand(x: Any) -> Operand:
    if isinstance(x, _Sym):
        return x.ref
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
        per_scorer = [list(fn(view, gpu)) for fn in terms]
        column = []
        for f in features:
            coefs = [c[f] for c in per_scorer]
            if scales is not None:
                coefs = [c * s for c, s in zip(coefs, scales, strict=True)]
            # Plain + on symbols and numbers alike: numbers add up now, exactly as they
            # would at run time, and symbols record the addition.
            value = reduce(add, coefs)
            column.append(value + offset if f == features[0] else value)
        refs = [_operand(x) for x in column]
    except (_Untraceable, TypeError, ValueError, IndexError, ArithmeticError):
        return None
    namespace: dict[str, Any] = {}
    source = trace.source(WorkerView._fields, refs)
    exec(compile(source, "<fused terms>", "exec"), namespace)  # our own tokens only
    return namespace.pop("column")  # so that its globals do not refer back to it
