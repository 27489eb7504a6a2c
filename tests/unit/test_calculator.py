"""The calculator: exact arithmetic checked against Python's fractions, and the inputs it must refuse."""

from __future__ import annotations

import time
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conclave.errors import ToolInputError
from tools.calculator import MAX_DEPTH, evaluate, format_fraction

# ------------------------------------------------------------------ generated expressions vs fractions


class DivByZero(Exception):
    pass


def _render_int(n: int, thousands: bool) -> str:
    return f"{n:,}" if thousands else str(n)


@st.composite
def leaves(draw: st.DrawFn) -> tuple[str, Fraction]:
    kind = draw(st.sampled_from(["int", "decimal", "percent"]))
    if kind == "int":
        n = draw(st.integers(0, 10**7))
        return _render_int(n, draw(st.booleans())), Fraction(n)
    if kind == "decimal":
        whole = draw(st.integers(0, 99_999))
        places = draw(st.integers(1, 4))
        frac = draw(st.integers(0, 10**places - 1))
        text = f"{_render_int(whole, draw(st.booleans()))}.{frac:0{places}d}"
        return text, Fraction(whole) + Fraction(frac, 10**places)
    p = draw(st.integers(0, 200))
    of = draw(st.integers(0, 10_000))
    return f"{p}% of {of}", Fraction(p, 100) * of


def _combine(
    children: st.SearchStrategy[tuple[str, Fraction | None]],
) -> st.SearchStrategy[tuple[str, Fraction | None]]:
    @st.composite
    def node(draw: st.DrawFn) -> tuple[str, Fraction | None]:
        op = draw(st.sampled_from(["+", "-", "*", "/", "neg", "pow", "mod"]))
        left_text, left = draw(children)
        if op == "neg":
            return f"-({left_text})", None if left is None else -left
        if op == "pow":
            k = draw(st.integers(-3, 3))
            if left is None or (left == 0 and k < 0) or max(left.numerator, left.denominator) > 10**12:
                return f"({left_text})", left
            return f"({left_text}) ** {k}" if k >= 0 else f"({left_text}) ** ({k})", left**k
        right_text, right = draw(children)
        text = f"({left_text}) {op if op != 'mod' else '%'} ({right_text})"
        if left is None or right is None:
            return text, None
        if op == "+":
            return text, left + right
        if op == "-":
            return text, left - right
        if op == "*":
            return text, left * right
        if right == 0:
            return text, None  # division / modulo by zero: must be rejected
        return text, left / right if op == "/" else left % right

    return node()


expressions = st.recursive(leaves().map(lambda t: (t[0], t[1])), _combine, max_leaves=12)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expressions)
def test_matches_fractions(case: tuple[str, Fraction | None]) -> None:
    text, expected = case
    if expected is None:
        with pytest.raises(ToolInputError, match="by zero"):
            evaluate(text)
        return
    result = evaluate(text)
    assert result.value == expected
    shown = Fraction(result.text)
    if result.exact:
        assert shown == expected
    else:
        # Rounded to at least 12 decimal places (more for values below 1).
        assert abs(shown - expected) <= Fraction(1, 2 * 10**12)
        d = expected.denominator
        while d % 2 == 0:
            d //= 2
        while d % 5 == 0:
            d //= 5
        assert d != 1, "a terminating decimal must be shown exactly"


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(0, 999), min_size=1, max_size=8),
    st.lists(st.sampled_from("+-*"), min_size=7, max_size=7),
)
def test_precedence_without_parentheses(numbers: list[int], ops: list[str]) -> None:
    # Expected value computed by hand with the usual precedence: * binds tighter than + and -.
    terms: list[Fraction] = [Fraction(numbers[0])]
    signs: list[int] = [1]
    text = str(numbers[0])
    for n, op in zip(numbers[1:], ops, strict=False):
        text += f" {op} {n}"
        if op == "*":
            terms[-1] *= n
        else:
            terms.append(Fraction(n))
            signs.append(1 if op == "+" else -1)
    expected = sum(s * t for s, t in zip(signs, terms, strict=True))
    assert evaluate(text).value == expected


@settings(max_examples=200, deadline=None)
@given(st.integers(-(10**15), 10**15))
def test_thousands_separators_round_trip(n: int) -> None:
    assert evaluate(f"{n:,}").value == n
    assert evaluate(f"{n:,}").text == str(n)


@settings(max_examples=200, deadline=None)
@given(st.fractions(min_value=-(10**6), max_value=10**6, max_denominator=10**6))
def test_formatting_is_exact_or_rounded_to_12_places(value: Fraction) -> None:
    text, exact = format_fraction(value)
    if exact:
        assert Fraction(text) == value
    else:
        assert abs(Fraction(text) - value) <= Fraction(1, 2 * 10**12)


# ------------------------------------------------------------------ documented behaviour


@pytest.mark.parametrize(
    ("expression", "text", "exact"),
    [
        ("(1,234 + 15% of 80) / 3", "415.333333333333", False),
        ("1,234,567.5 * 2", "2469135", True),
        ("15% of 80", "12", True),
        ("15%", "0.15", True),
        ("50 + 10%", "50.1", True),
        ("10 % 3", "1", True),
        ("-7 % 3", "2", True),
        ("2 ** 10", "1024", True),
        ("2 ^ 10", "1024", True),
        ("2 ** 3 ** 2", "512", True),
        ("-2 ** 2", "-4", True),
        ("2 ** -2", "0.25", True),
        ("0.1 + 0.2", "0.3", True),
        ("1 / 3", "0.333333333333", False),
        ("2 / 3", "0.666666666667", False),
        ("1 / 7000", "0.000142857142857", False),
        ("sqrt(16)", "4", True),
        ("sqrt(2)", "1.414213562373", False),
        ("(8/27) ** (1/3)", "0.666666666667", False),
        ("4 ** 1.5", "8", True),
        ("log(8, 2)", "3", True),
        ("log(1)", "0", True),
        ("exp(0)", "1", True),
        ("exp(1)", "2.718281828459", False),
        ("round(2.5)", "3", True),
        ("round(-2.5)", "-3", True),
        ("round(1.2345, 2)", "1.23", True),
        ("min(3, 1, 2)", "1", True),
        ("max(1,234)", "234", True),  # inside a call, commas separate arguments
        ("max((1,234), 5)", "1234", True),  # ... unless grouped in parentheses
        ("abs(-1.5)", "1.5", True),
        ("15% of (1,234)", "185.1", True),
        ("1e3 + 1", "1001", True),
        ("pi", "3.14159265359", False),
    ],
)
def test_documented_examples(expression: str, text: str, exact: bool) -> None:
    result = evaluate(expression)
    assert (result.text, result.exact) == (text, exact)


def test_exact_value_kept_even_when_text_is_rounded() -> None:
    assert evaluate("(1,234 + 15% of 80) / 3").value == Fraction(1246, 3)


# ------------------------------------------------------------------ rejections


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("__import__('os').system('id')", "unknown name '__import__'"),
        ("(1).real", "attribute access is not allowed"),
        ("x + 1", "unknown name 'x'"),
        ("os", "unknown name 'os'"),
        ("open(1)", "unknown name 'open'"),
        ("eval(1)", "unknown name 'eval'"),
        ("'abc'", "strings are not allowed"),
        ("1 / 0", "division by zero"),
        ("5 % 0", "modulo by zero"),
        ("0 ** -1", "division by zero"),
        ("1 / (2 - 2)", "division by zero"),
        ("9**9**9", "power too large"),
        ("10 ** 100000", "power too large"),
        ("2 ** 2 ** 2 ** 2 ** 2", "power too large"),
        ("(10 ** 1000) ** 1000", "power too large"),
        ("1e99999", "exponent too large"),
        ("exp(100000)", "exp argument too large"),
        ("sqrt(-1)", "not a real number"),
        ("(-8) ** (1/3)", "not a real number"),
        ("log(0)", "positive"),
        ("1,23", "unexpected ','"),
        ("2 (3)", "unexpected '('"),
        ("2pi", "right after a number"),
        ("", "empty expression"),
        ("1 +", "ends too early"),
        ("(1 + 2", "missing ')'"),
        ("1 + 2)", "unbalanced ')'"),
        ("round(1, 2, 3)", "takes 1 to 2"),
        ("max()", "takes 1 to 1000"),
        ("5 of 3", "'of' must follow a percentage"),
        ("1 ; 2", "unexpected character ';'"),
        ("[1]", "unexpected character '['"),
        ("lambda: 1", "unknown name 'lambda'"),
    ],
)
def test_rejects_with_clear_message(expression: str, message: str) -> None:
    started = time.perf_counter()
    with pytest.raises(ToolInputError) as info:
        evaluate(expression)
    assert message in info.value.message
    assert info.value.hint  # every rejection says how to fix it
    assert time.perf_counter() - started < 0.5


def test_rejects_deep_nesting_fast() -> None:
    for expression in (
        "(" * 10_000 + "1" + ")" * 10_000,
        "-" * 5_000 + "1",
        "(" * (MAX_DEPTH + 1) + "1" + ")" * (MAX_DEPTH + 1),
    ):
        started = time.perf_counter()
        with pytest.raises(ToolInputError, match="nested too deeply|too long"):
            evaluate(expression)
        assert time.perf_counter() - started < 0.5
    with pytest.raises(ToolInputError, match="nested too deeply"):
        evaluate("(" * 100 + "1" + ")" * 100)


def test_nesting_within_limit_is_fine() -> None:
    depth = MAX_DEPTH - 2
    assert evaluate("(" * depth + "1 + 1" + ")" * depth).value == 2


def test_rejects_100kb_input_fast() -> None:
    started = time.perf_counter()
    with pytest.raises(ToolInputError, match="too long"):
        evaluate("1+" * 50_000 + "1")
    assert time.perf_counter() - started < 0.5


def test_huge_intermediate_values_are_bounded() -> None:
    started = time.perf_counter()
    with pytest.raises(ToolInputError, match="too large"):
        evaluate(" * ".join(["99999999999999999999"] * 400))
    assert time.perf_counter() - started < 1.0


def test_rejects_non_string() -> None:
    with pytest.raises(ToolInputError):
        evaluate(123)  # type: ignore[arg-type]
