"""vector_math: NumPy arithmetic over named arrays through a whitelisted expression tree."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conclave.errors import ToolInputError
from tools.vector_math import MAX_ELEMENTS, evaluate_vector

X = [[1, 1], [1, 2], [1, 3]]
Y = [1, 2, 2]
W = [0, 0]


def run(expression: str, **variables: object) -> object:
    return json.loads(evaluate_vector(expression, variables))


def test_mse_gradient_matches_the_note() -> None:
    # grad = (2/n) X^T (Xw - y) with the numbers of examples/knowledge/05-gradient-descent.md
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
    assert time.perf_counter() - started < 1.0
