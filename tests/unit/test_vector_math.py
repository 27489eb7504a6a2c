"""vector_math: NumPy arithmetic over named arrays through a whitelisted expression tree."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from conclave.tools.vector_math import MAX_ELEMENTS, evaluate_vector
from hypothesis import given, settings
from hypothesis import strategies as st

from conclave.errors import ToolInputError
from tests.conftest import HANG_GUARD_S

X = [[1, 1], [1, 2], [1, 3]]
Y = [1, 2, 2]
W = [0, 0]


def run(expression: str, **variables: object) -> object:
    return json.loads(evaluate_vector(expression, variables))


def test_mse_gradient_matches_the_note() -> None:
    # grad = (2/n) X^T (Xw - y) with the numbers of tools/demo_notes/05-gradient-descent.md
    grad = run("(2 / len(y)) * transpose(X) @ (X @ w - y)", X=X, y=Y, w=W)
    assert grad == pytest.approx([-10 / 3, -22 / 3], abs=1e-11)
    step = run("w - alpha * (2 / len(y)) * transpose(X) @ (X @ w - y)", X=X, y=Y, w=W, alpha=0.1)
    assert step == pytest.approx([1 / 3, 22 / 30], abs=1e-11)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("dot(a, b)", 32),
        ("a @ b", 32),
        ("a * b", [4, 10, 18]),
        ("a + 1", [2, 3, 4]),
        ("-a", [-1, -2, -3]),
        ("a ** 2", [1, 4, 9]),
        ("b / a", [4, 2.5, 2]),
        ("mean(a)", 2),
        ("sum(a)", 6),
        ("norm([3, 4])", 5),
        ("transpose(M)", [[1, 3], [2, 4]]),
        ("matmul(M, M)", [[7, 10], [15, 22]]),
        ("M @ [1, 1]", [3, 7]),
        ("sum(M, 0)", [4, 6]),
        ("mean(M, 1)", [1.5, 3.5]),
        ("max(a) - min(a)", 2),
        ("sqrt(a)", [1, 1.41421356237, 1.73205080757]),
        ("outer(a, [1, 2])", [[1, 2], [2, 4], [3, 6]]),
        ("size(M)", 4),
        ("len(M)", 2),
        ("abs(-a)", [1, 2, 3]),
        ("1 / 3", 0.333333333333),
    ],
)
def test_operations(expression: str, expected: object) -> None:
    assert run(expression, a=[1, 2, 3], b=[4, 5, 6], M=[[1, 2], [3, 4]]) == expected


@settings(max_examples=100, deadline=None)
@given(
    st.integers(1, 6).flatmap(
        lambda n: st.tuples(
            st.lists(st.integers(-100, 100), min_size=n, max_size=n),
            st.lists(st.integers(-100, 100), min_size=n, max_size=n),
        )
    )
)
def test_dot_matches_numpy(vectors: tuple[list[int], list[int]]) -> None:
    a, b = vectors
    assert run("dot(a, b)", a=a, b=b) == int(np.dot(a, b))
    assert run("a - b", a=a, b=b) == [x - y for x, y in zip(a, b, strict=True)]


@pytest.mark.parametrize(
    ("expression", "variables", "message"),
    [
        ("__import__('os').system('id')", {}, "attribute access is not allowed"),
        ("__import__('os')", {}, "unknown function '__import__'"),
        ("X.T", {"X": X}, "attribute access is not allowed"),
        ("a.__class__", {"a": [1]}, "attribute access is not allowed"),
        ("X[0]", {"X": X}, "indexing is not allowed"),
        ("'abc'", {}, "only numbers"),
        ("True", {}, "only numbers"),
        ("lambda: 1", {}, "Lambda is not allowed"),
        ("[x for x in a]", {"a": [1]}, "ListComp is not allowed"),
        ("q + 1", {"a": [1]}, "unknown name 'q'"),
        ("open(a)", {"a": [1]}, "unknown function 'open'"),
        ("sum(a, axis=0)", {"a": [1]}, "keyword arguments"),
        ("a @ b", {"a": [1, 2], "b": [1, 2, 3]}, "do not line up"),
        ("a + b", {"a": [1, 2], "b": [1, 2, 3]}, "cannot be combined"),
        ("a / 0", {"a": [1, 2]}, "division by zero"),
        ("a ** 1000", {"a": [2]}, "exponents are limited"),
        ("exp(a)", {"a": [1000]}, "exp argument too large"),
        ("log(a)", {"a": [0]}, "positive"),
        ("outer(a, a)", {"a": list(range(200))}, "outer product too large"),
        ("c @ r", {"c": [[1]] * 200, "r": [[1] * 200]}, "matrix product too large"),
        ("a", {"a": list(range(MAX_ELEMENTS + 1))}, "the limit is"),
        ("a", {"a": [[[1]]]}, "at most 2"),
        ("a", {"a": [[1, 2], [3]]}, "rectangular"),
        ("a", {"a": [True, False]}, "only numbers"),
        ("a", {"a": ["1"]}, "only numbers"),
        ("a", {"a": {"x": 1}}, "must be a number, a list"),
        ("a", {"a": float("nan")}, "finite"),
        ("dot", {"a": [1]}, "is a function"),
        ("1 +", {}, "syntax error"),
        ("", {}, "empty"),
        ("a", {"sum": [1]}, "invalid variable name"),
        ("a", {"1x": [1]}, "invalid variable name"),
        ("(" * 300 + "1" + ")" * 300, {}, "syntax error|too complex|nested"),
        ("-" * 100 + "1", {}, "nested too deeply"),
        ("1+" * 2000, {}, "too long"),
    ],
)
def test_rejections(expression: str, variables: dict[str, object], message: str) -> None:
    started = time.perf_counter()
    with pytest.raises(ToolInputError, match=message):
        evaluate_vector(expression, variables)  # type: ignore[arg-type]
    assert time.perf_counter() - started < HANG_GUARD_S


# ------------------------------------------------------------------ limits: axes of numbers, huge and tiny values


def _outcome(expression: str, variables: dict[str, object] | None = None) -> object:
    """The JSON result or the ToolInputError; any other exception fails the test. Always fast."""
    started = time.perf_counter()
    try:
        outcome: object = json.loads(evaluate_vector(expression, variables))  # type: ignore[arg-type]
    except ToolInputError as exc:
        assert exc.hint
        assert "\n" not in exc.message
        outcome = exc
    assert time.perf_counter() - started < HANG_GUARD_S, expression[:60]
    return outcome


@pytest.mark.parametrize("expression", ["mean(3, 0)", "sum(3, 0)", "min(a, 0)", "max(a, -1)", "mean(a, 0)"])
def test_axis_of_a_single_number_is_a_clear_error(expression: str) -> None:
    outcome = _outcome(expression, {"a": 3})
    assert isinstance(outcome, ToolInputError)
    assert "axis" in outcome.message


def test_reductions_of_a_single_number_without_axis() -> None:
    assert run("mean(3)") == 3
    assert run("sum(a)", a=4) == 4


@pytest.mark.parametrize(
    "value",
    [10**309, -(10**400), [1, 10**309], [[1, 2], [3, 10**309]], [10**5000], 2**1024],
    ids=["1e309", "-1e400", "list", "matrix", "1e5000-in-list", "2**1024"],
)
def test_integers_beyond_float_range_are_a_clear_error(value: object) -> None:
    outcome = _outcome("a * 2", {"a": value})
    assert isinstance(outcome, ToolInputError)
    assert "too large" in outcome.message


def test_large_but_finite_numbers_are_accepted() -> None:
    assert run("a / 10", a=10**308) == 1e307
    assert run("a", a=[2**1023]) == [pytest.approx(float(2**1023), rel=1e-11)]
    assert run("1e305 * 2") == 2e305


@pytest.mark.parametrize(("expression", "expected"), [("exp(-1000)", 0), ("1e-200 * 1e-200", 0), ("a / 1e308", [0])])
def test_underflow_to_zero_is_not_an_error(expression: str, expected: object) -> None:
    assert run(expression, a=[1e-300]) == expected


def test_variables_must_be_a_mapping() -> None:
    for bad in ("abc", [1, 2], 3):
        outcome = _outcome("1 + 1", bad)  # type: ignore[arg-type]
        assert isinstance(outcome, ToolInputError)
        assert "variables" in outcome.message


_V_ATOMS = ["a", "M", "s", "0", "1", "2.5", "1e300", "-1", "[1, 2]", "[[1], [2]]", "[]"]


@st.composite
def _vector_expressions(draw: st.DrawFn, depth: int = 3) -> str:
    if depth == 0 or draw(st.integers(0, 3)) == 0:
        return draw(st.sampled_from(_V_ATOMS))
    kind = draw(st.sampled_from(["bin", "call1", "call2", "neg"]))
    left = draw(_vector_expressions(depth - 1))
    if kind == "neg":
        return f"-({left})"
    if kind == "call1":
        names = ["transpose", "mean", "sum", "norm", "sqrt", "abs", "exp", "log", "len", "size"]
        name = draw(st.sampled_from(names))
        return f"{name}({left})"
    right = draw(_vector_expressions(depth - 1))
    if kind == "call2":
        name = draw(st.sampled_from(["dot", "matmul", "outer", "mean", "sum", "min", "max"]))
        return f"{name}({left}, {right})"
    op = draw(st.sampled_from(["+", "-", "*", "/", "**", "@"]))
    return f"({left}) {op} ({right})"


@settings(max_examples=400, deadline=None)
@given(_vector_expressions(), st.sampled_from([3, 10**309, 0.5, [1, 2], [[1, 2], [3, 4]]]))
def test_any_expression_gives_json_or_a_tool_input_error(expression: str, s: object) -> None:
    _outcome(expression, {"a": [1.0, -2.0], "M": [[1, 2], [3, 4]], "s": s})


def test_a_long_flat_chain_of_operators_is_not_nesting() -> None:
    """``1+1+...`` parses as nested additions, but it is one level of the expression: only real nesting counts."""
    assert evaluate_vector("+".join(["1"] * 40), {}) == "40"
    assert evaluate_vector("-".join(["1"] * 999), {}) == "-997"
    assert json.loads(evaluate_vector("x" + " + x" * 300 + " - 2*x @ [[1, 0], [0, 1]]", {"x": [1, 2]})) == [299, 598]
    with pytest.raises(ToolInputError, match="nested too deeply"):
        evaluate_vector("2 * (1 + " * 40 + "1" + ")" * 40, {})  # each level inside the one before: real nesting
