"""Small vector and matrix arithmetic with NumPy over named arrays, through a whitelisted expression tree.

The expression is parsed with ``ast.parse(mode="eval")`` and walked with a strict whitelist: numbers, the given
variable names, ``+ - * / ** @`` and unary minus, and the functions below. Anything else (attribute access,
subscripts, strings, keywords, comprehensions, lambdas, ...) is rejected before any computation. Nothing is ever
compiled or executed. Example, the gradient of the mean squared error of a linear model::

    evaluate_vector("(2 / len(y)) * transpose(X) @ (X @ w - y)", {"X": [[1, 1], [1, 2]], "w": [0, 0], "y": [1, 2]})

Functions: ``dot transpose matmul mean sum norm sqrt abs exp log len size min max outer``. ``mean``, ``sum``,
``min`` and ``max`` take an optional axis as a second argument (a vector has axis 0, a matrix axes 0 and 1; a single
number has none, so ``mean(3, 0)`` is refused). Results are JSON: a number, a list or a list of lists, with floats
rounded to 12 significant digits.

Limits: at most 10,000 elements in any array or result (40,000 over all variables), 2 dimensions, 32 variables,
2,000 characters of expression, nesting depth 32 and exponents of at most ±64. Numbers are 64-bit floats: every
number given or computed must be finite (at most about 1.8e308 in size; a larger integer is refused, not rounded to
infinity). Overflow, division by zero and invalid operations are refused with a clear message; underflow is not an
error (``exp(-1000)`` is 0).
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from conclave.errors import ToolInputError

__all__ = ["MAX_ELEMENTS", "MAX_EXPRESSION_CHARS", "MAX_VARIABLES", "evaluate_vector"]

MAX_ELEMENTS = 10_000
MAX_VARIABLES = 32
MAX_EXPRESSION_CHARS = 2_000
MAX_DEPTH = 32
MAX_POWER = 64
_FLOAT_MAX = float(np.finfo(float).max)  # about 1.8e308: larger Python ints cannot become floats
_HINT = "e.g. expression='transpose(X) @ (X @ w - y)' with variables {'X': [[1, 2], [3, 4]], 'w': [1, 0], 'y': [1, 2]}"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")

Value = Any  # np.ndarray | float


def _error(message: str, hint: str = _HINT) -> ToolInputError:
    return ToolInputError(f"vector_math: {message}", hint=hint)


def _check(value: Value) -> Value:
    arr = np.asarray(value)
    if arr.size > MAX_ELEMENTS:
        raise _error(f"result too large ({arr.size:,} elements; the limit is {MAX_ELEMENTS:,})")
    if arr.ndim > 2:
        raise _error("results may have at most 2 dimensions")
    if not np.all(np.isfinite(arr)):
        raise _error("the result is not finite (overflow, division by zero or an invalid operation)")
    return value


def _axis(arr: np.ndarray, axis: Value | None) -> int | None:
    if axis is None:
        return None
    if arr.ndim == 0:
        raise _error("a single number has no axis: leave out the second argument, or pass a vector or matrix")
    a = np.asarray(axis)
    if a.ndim != 0 or float(a) != int(a) or not -arr.ndim <= int(a) < arr.ndim:
        valid = "0 (or -1)" if arr.ndim == 1 else "0 or 1 (or -1, -2)"
        raise _error(f"axis must be a whole number valid for a {arr.ndim}-dimensional array: {valid}")
    return int(a)


def _reduce(fn: Callable[..., Any]) -> Callable[..., Value]:
    def apply(x: Value, axis: Value | None = None) -> Value:
        arr = np.asarray(x, dtype=float)
        if arr.size == 0:
            raise _error("cannot reduce an empty array")
        return fn(arr, axis=_axis(arr, axis))

    return apply


def _matmul(a: Value, b: Value) -> Value:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.ndim == 0 or b.ndim == 0:
        raise _error("matmul needs vectors or matrices, not numbers (use * to scale)")
    if a.shape[-1] != b.shape[0]:
        raise _error(f"shapes {a.shape} and {b.shape} do not line up for a matrix product")
    rows = a.shape[0] if a.ndim == 2 else 1
    cols = b.shape[1] if b.ndim == 2 else 1
    if rows * cols > MAX_ELEMENTS:
        raise _error(f"matrix product too large ({rows * cols:,} elements)")
    return a @ b


def _dot(a: Value, b: Value) -> Value:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.ndim == 1 and b.ndim == 1:
        if a.shape != b.shape:
            raise _error(f"dot needs vectors of the same length (got {a.size} and {b.size})")
        return float(a @ b)
    return _matmul(a, b)


def _outer(a: Value, b: Value) -> Value:
    a, b = np.ravel(np.asarray(a, dtype=float)), np.ravel(np.asarray(b, dtype=float))
    if a.size * b.size > MAX_ELEMENTS:
        raise _error(f"outer product too large ({a.size * b.size:,} elements)")
    return np.outer(a, b)


def _positive(fn: Callable[[Value], Value], what: str, strict: bool) -> Callable[[Value], Value]:
    def apply(x: Value) -> Value:
        arr = np.asarray(x, dtype=float)
        if np.any(arr <= 0) if strict else np.any(arr < 0):
            raise _error(f"{what} needs {'positive' if strict else 'non-negative'} values")
        return fn(arr)

    return apply


def _exp(x: Value) -> Value:
    arr = np.asarray(x, dtype=float)
    if np.any(arr > 700):
        raise _error("exp argument too large (overflow)")
    return np.exp(arr)


def _len(x: Value) -> Value:
    arr = np.asarray(x)
    if arr.ndim == 0:
        raise _error("len needs a vector or matrix")
    return float(arr.shape[0])


_FUNCTIONS: dict[str, tuple[Callable[..., Value], int, int]] = {
    "dot": (_dot, 2, 2),
    "matmul": (_matmul, 2, 2),
    "transpose": (lambda x: np.transpose(np.asarray(x, dtype=float)), 1, 1),
    "outer": (_outer, 2, 2),
    "mean": (_reduce(np.mean), 1, 2),
    "sum": (_reduce(np.sum), 1, 2),
    "min": (_reduce(np.min), 1, 2),
    "max": (_reduce(np.max), 1, 2),
    "norm": (lambda x: float(np.linalg.norm(np.asarray(x, dtype=float))), 1, 1),
    "sqrt": (_positive(np.sqrt, "sqrt", strict=False), 1, 1),
    "log": (_positive(np.log, "log", strict=True), 1, 1),
    "exp": (_exp, 1, 1),
    "abs": (lambda x: np.abs(np.asarray(x, dtype=float)), 1, 1),
    "len": (_len, 1, 1),
    "size": (lambda x: float(np.asarray(x).size), 1, 1),
}


def _binary(op: ast.operator, a: Value, b: Value) -> Value:
    if isinstance(op, ast.MatMult):
        return _matmul(a, b)
    a_arr, b_arr = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    try:
        shape = np.broadcast_shapes(a_arr.shape, b_arr.shape)
    except ValueError as exc:
        raise _error(f"shapes {a_arr.shape} and {b_arr.shape} cannot be combined element-wise") from exc
    if math.prod(shape) > MAX_ELEMENTS:
        raise _error(f"element-wise result too large ({math.prod(shape):,} elements)")
    # Overflow, division by zero and invalid operations raise FloatingPointError (turned into a clear error);
    # underflow to zero or a subnormal number is an ordinary result (1e-200 * 1e-200 is 0), not an error.
    with np.errstate(all="raise", under="ignore"):
        try:
            if isinstance(op, ast.Add):
                return a_arr + b_arr
            if isinstance(op, ast.Sub):
                return a_arr - b_arr
            if isinstance(op, ast.Mult):
                return a_arr * b_arr
            if isinstance(op, ast.Div):
                if np.any(b_arr == 0):
                    raise _error("division by zero")
                return a_arr / b_arr
            if isinstance(op, ast.Pow):
                if np.any(np.abs(b_arr) > MAX_POWER):
                    raise _error(f"exponents are limited to ±{MAX_POWER}")
                return a_arr**b_arr
        except FloatingPointError as exc:
            raise _error(f"arithmetic error: {exc}") from exc
    raise _error(f"operator {type(op).__name__} is not allowed (use + - * / ** @)")


class _Evaluator:
    def __init__(self, variables: dict[str, Value]):
        self.variables = variables
        self.depth = 0

    def eval(self, node: ast.AST) -> Value:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _error(f"expression nested too deeply (more than {MAX_DEPTH} levels)")
        try:
            return _check(self._eval(node))
        finally:
            self.depth -= 1

    def _chain(self, node: ast.BinOp) -> Value:
        """A left-leaning chain (``a + b - c @ d ...``, which Python parses as nested operations) evaluated left to
        right in a loop: a long sum is long, not deep; only its operands count towards the nesting limit."""
        links = []
        left: ast.AST = node
        while isinstance(left, ast.BinOp) and not isinstance(left.op, ast.Pow):
            links.append(left)
            left = left.left
        value = self.eval(left)
        for link in reversed(links):
            value = _check(_binary(link.op, value, self.eval(link.right)))
        return value

    def _eval(self, node: ast.AST) -> Value:
        if isinstance(node, ast.Expression):
            return self.eval(node.body)
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
                raise _error(f"only numbers are allowed as literals (got {node.value!r})")
            return _to_float(node.value, "number")
        if isinstance(node, ast.Name):
            if node.id in self.variables:
                return self.variables[node.id]
            if node.id in _FUNCTIONS:
                raise _error(f"{node.id} is a function: write {node.id}(...)")
            known = ", ".join(sorted(self.variables)) or "none given"
            raise _error(f"unknown name {node.id!r} (variables: {known})")
        if isinstance(node, ast.BinOp):
            if isinstance(node.op, ast.Pow):  # right-associative: a tower of powers is nesting
                return _binary(node.op, self.eval(node.left), self.eval(node.right))
            return self._chain(node)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            value = np.asarray(self.eval(node.operand), dtype=float)
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.List):
            if len(node.elts) > MAX_ELEMENTS:
                raise _error("list literal too long")
            return _to_array([self.eval(e) for e in node.elts], "list literal")
        if isinstance(node, ast.Call):
            if isinstance(node.func, ast.Attribute):
                raise _error("attribute access is not allowed (call the functions by name, e.g. transpose(X))")
            if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS:
                what = node.func.id if isinstance(node.func, ast.Name) else type(node.func).__name__
                raise _error(f"unknown function {what!r} (allowed: {', '.join(_FUNCTIONS)})")
            if node.keywords:
                raise _error("keyword arguments are not allowed (pass the axis as the second argument)")
            fn, lo, hi = _FUNCTIONS[node.func.id]
            if not lo <= len(node.args) <= hi:
                raise _error(f"{node.func.id} takes {lo if lo == hi else f'{lo} or {hi}'} argument(s)")
            args = [self.eval(a) for a in node.args]
            with np.errstate(all="raise", under="ignore"):
                try:
                    return fn(*args)
                except FloatingPointError as exc:
                    raise _error(f"arithmetic error in {node.func.id}: {exc}") from exc
        if isinstance(node, ast.Attribute):
            raise _error("attribute access is not allowed (use transpose(X) instead of X.T)")
        if isinstance(node, ast.Subscript):
            raise _error("indexing is not allowed")
        raise _error(f"{type(node).__name__} is not allowed in an expression")


def _too_large(name: str) -> ToolInputError:
    return _error(
        f"{name} is too large: numbers must be finite and at most about 1.8e308 in size (64-bit floats)",
        hint="scale the numbers down, e.g. work in thousands or use logarithms",
    )


def _to_float(value: int | float, name: str) -> float:
    """A Python number as a finite float; an integer beyond the float range is refused, not an OverflowError."""
    if isinstance(value, int) and abs(value) > _FLOAT_MAX:  # exact comparison: no conversion needed
        raise _too_large(name)
    number = float(value)
    if math.isinf(number):
        raise _too_large(name)
    if math.isnan(number):
        raise _error(f"{name} must be finite (not NaN)")
    return number


def _to_array(value: Any, name: str) -> Value:
    if isinstance(value, bool):
        raise _error(f"{name} must be a number or a list of numbers, not a boolean")
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise _error(f"{name} must be finite")
        return _to_float(value, name)
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "iuf":
            raise _error(f"{name} must hold only numbers (got an array of {value.dtype})")
        value = value.astype(float)
        if value.ndim > 2 or value.size > MAX_ELEMENTS or not np.all(np.isfinite(value)):
            raise _error(f"{name} must have at most 2 dimensions, {MAX_ELEMENTS:,} elements and finite numbers")
        return value
    if not isinstance(value, list):
        raise _error(f"{name} must be a number, a list or a list of lists (got {type(value).__name__})")

    def check_items(items: list[Any]) -> None:
        for item in items:
            if isinstance(item, bool) or not isinstance(item, (int, float, np.floating, np.integer)):
                if isinstance(item, (list, np.ndarray)):
                    continue
                raise _error(f"{name} must hold only numbers (found {item!r})")
            if isinstance(item, int) and abs(item) > _FLOAT_MAX:
                raise _too_large(name)

    check_items(value)
    try:
        arr = np.array(value, dtype=float)
    except OverflowError as exc:  # an integer beyond the float range, deeper than check_items looked
        raise _too_large(name) from exc
    except (ValueError, TypeError) as exc:
        raise _error(f"{name} must be rectangular (all rows the same length) and numeric") from exc
    if arr.ndim > 2:
        raise _error(f"{name} has {arr.ndim} dimensions; at most 2 are allowed")
    if arr.size > MAX_ELEMENTS:
        raise _error(f"{name} has {arr.size:,} elements; the limit is {MAX_ELEMENTS:,}")
    if arr.ndim == 2:
        for row in value:
            if not isinstance(row, (list, np.ndarray)):
                raise _error(f"{name} mixes numbers and lists")
            check_items(list(row))
    if not np.all(np.isfinite(arr)):
        raise _error(f"{name} must hold finite numbers")
    return arr


def _round_float(x: float) -> float | int:
    if x == 0:
        return 0
    rounded = float(f"{x:.12g}")
    if rounded.is_integer() and abs(rounded) < 1e15:
        return int(rounded)
    return rounded


def _to_json(value: Value) -> Any:
    arr = np.asarray(value, dtype=float)
    if arr.ndim == 0:
        return _round_float(float(arr))
    if arr.ndim == 1:
        return [_round_float(float(x)) for x in arr]
    return [[_round_float(float(x)) for x in row] for row in arr]


def evaluate_vector(expression: str, variables: dict[str, Any] | None = None) -> str:
    """Evaluate a vector/matrix expression over named arrays; the result as JSON text."""
    if not isinstance(expression, str) or not expression.strip():
        raise _error("the expression is empty")
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise _error(f"expression too long ({len(expression):,} characters; the limit is {MAX_EXPRESSION_CHARS:,})")
    if variables is None:
        variables = {}
    if not isinstance(variables, Mapping):
        raise _error(f"variables must be an object mapping names to numbers or lists (got {type(variables).__name__})")
    variables = dict(variables)
    if len(variables) > MAX_VARIABLES:
        raise _error(f"too many variables ({len(variables)}; the limit is {MAX_VARIABLES})")
    arrays: dict[str, Value] = {}
    total = 0
    for name, value in variables.items():
        if not isinstance(name, str) or not _NAME.match(name) or name in _FUNCTIONS:
            raise _error(f"invalid variable name {name!r} (letters, digits and _, not a function name)")
        arrays[name] = _to_array(value, f"variable {name!r}")
        total += int(np.asarray(arrays[name]).size)
        if total > MAX_ELEMENTS * 4:
            raise _error("variables too large in total")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise _error(f"syntax error: {exc.msg}") from exc
    except ValueError as exc:  # e.g. "source code string cannot contain null bytes"
        raise _error(f"the expression cannot be parsed: {exc}") from exc
    except (RecursionError, MemoryError) as exc:
        raise _error("expression too complex to parse") from exc
    try:
        result = _Evaluator(arrays).eval(tree)
    except RecursionError as exc:
        raise _error("expression nested too deeply") from exc
    return json.dumps(_to_json(result))
