"""The calculator: exact arithmetic checked against Python's fractions, and the inputs it must refuse."""

from __future__ import annotations

import sys
import time
from decimal import Decimal
from fractions import Fraction

import pytest
from conclave.tools.calculator import MAX_DEPTH, CalcResult, evaluate, format_fraction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conclave.errors import ToolInputError
from tests.conftest import HANG_GUARD_S

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
    assert time.perf_counter() - started < HANG_GUARD_S


def test_rejects_deep_nesting_fast() -> None:
    for expression in (
        "(" * 10_000 + "1" + ")" * 10_000,
        "-" * 5_000 + "1",
        "(" * (MAX_DEPTH + 1) + "1" + ")" * (MAX_DEPTH + 1),
    ):
        started = time.perf_counter()
        with pytest.raises(ToolInputError, match="nested too deeply|too long"):
            evaluate(expression)
        assert time.perf_counter() - started < HANG_GUARD_S
    with pytest.raises(ToolInputError, match="nested too deeply"):
        evaluate("(" * 100 + "1" + ")" * 100)


def test_nesting_within_limit_is_fine() -> None:
    depth = MAX_DEPTH - 2
    assert evaluate("(" * depth + "1 + 1" + ")" * depth).value == 2


def test_rejects_100kb_input_fast() -> None:
    started = time.perf_counter()
    with pytest.raises(ToolInputError, match="too long"):
        evaluate("1+" * 50_000 + "1")
    assert time.perf_counter() - started < HANG_GUARD_S


def test_huge_intermediate_values_are_bounded() -> None:
    started = time.perf_counter()
    with pytest.raises(ToolInputError, match="too large"):
        evaluate(" * ".join(["99999999999999999999"] * 400))
    assert time.perf_counter() - started < HANG_GUARD_S


def test_rejects_non_string() -> None:
    with pytest.raises(ToolInputError):
        evaluate(123)  # type: ignore[arg-type]


# ------------------------------------------------------------------ limits: huge, tiny and unusual inputs


def _timed(expression: str, limit: float = HANG_GUARD_S) -> object:
    """Evaluate, returning the result or the ToolInputError; anything else fails the test. Always fast."""
    started = time.perf_counter()
    try:
        outcome: object = evaluate(expression)
    except ToolInputError as exc:
        assert exc.hint, f"no hint for {expression[:60]!r}"
        assert "\n" not in exc.message
        outcome = exc
    assert time.perf_counter() - started < limit, expression[:60]
    return outcome


def test_result_beyond_int_str_limit_is_formatted() -> None:
    # 2**16000 has 4,817 digits: within the size limit, beyond Python's 4,300-digit int->str conversion limit.
    result = _timed("2**8000*2**8000")
    assert isinstance(result, CalcResult)
    assert result.value == 2**16000
    assert result.exact
    assert Decimal(result.text) == Decimal(2**16000)


def test_long_integer_literal_within_the_limit_is_read() -> None:
    result = _timed("1" * 4_400 + " + 1")
    assert isinstance(result, CalcResult)
    assert result.value == int(Decimal("1" * 4_399 + "2"))
    assert result.text == "1" * 4_399 + "2"


@pytest.mark.parametrize(
    "expression",
    ["1" * 5_000, "1" * 5_000 + " + 1", "0." + "0" * 4_999 + "1", "1." + "5" * 5_000, "2 * " + "9" * 9_000],
    ids=["5000-digits", "5000-digits-plus-1", "5000-decimals", "5001-digits-with-point", "9000-digits"],
)
def test_overlong_number_literal_is_refused(expression: str) -> None:
    outcome = _timed(expression)
    assert isinstance(outcome, ToolInputError)
    assert "number too long" in outcome.message


@pytest.mark.parametrize(
    ("expression", "char"), [("2²", "²"), ("①", "①"), ("2**2²", "²"), ("³ + 1", "³"), ("pi²", "²")]
)
def test_unicode_digit_lookalikes_are_refused_by_name(expression: str, char: str) -> None:
    outcome = _timed(expression)
    assert isinstance(outcome, ToolInputError)
    assert repr(char) in outcome.message
    assert "ValueError" not in outcome.message


def test_decimal_digits_of_other_scripts_still_read() -> None:
    assert evaluate("٣ + 1").value == 4  # ARABIC-INDIC DIGIT THREE: a decimal digit, as int() reads it


def test_daily_compound_interest_is_computed_rounded() -> None:
    # 1000 * (1 + 0.05/365)**10950 is 4481.2286885245152477...: its exact value has ~42,851 digits.
    result = _timed("1000*(1+0.05/365)**(365*30)")
    assert isinstance(result, CalcResult)
    assert not result.exact
    assert result.text == "4481.228688524515"
    assert abs(result.value - Fraction("4481.22868852451524775228008582748")) < Fraction(1, 10**25)


def test_e_to_the_100_is_computed_rounded() -> None:
    result = _timed("e**100")
    assert isinstance(result, CalcResult)
    assert (result.text, result.exact) == ("2.68811714182e+43", False)
    expected = Fraction("26881171418161354484126255515800135873611118.7737")
    assert abs(result.value / expected - 1) < Fraction(1, 10**40)


@pytest.mark.parametrize(
    ("expression", "text"),
    [
        ("(1 + 1/1000000) ** 1000000", "2.718280469319"),
        ("1.5 ** 20000", "6.68622694845e+3521"),
        ("(2/3) ** 20000", "1.49561181173e-3522"),
        ("(-1.5) ** 20001", "-1.00293404227e+3522"),
    ],
)
def test_large_exponents_with_ordinary_magnitude_are_rounded(expression: str, text: str) -> None:
    result = _timed(expression)
    assert isinstance(result, CalcResult)
    assert (result.text, result.exact) == (text, False)


def test_rounded_values_stay_bounded_in_long_chains() -> None:
    # Each factor is exact (about 15,000 bits); their product's exact value is too big, its magnitude is not.
    result = _timed("(7301/7300)**1200 * (7303/7302)**1200")
    assert isinstance(result, CalcResult)
    assert not result.exact
    assert abs(float(result.value) - (7301 / 7300) ** 1200 * (7303 / 7302) ** 1200) < 1e-9
    result = _timed(" * ".join(["pi"] * 150))
    assert isinstance(result, CalcResult)
    assert result.text == "3.7366369507e+74"


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("9**9**9", "too large"),
        ("10**100000", "too large"),
        ("e**100000", "too large"),
        ("(1 + 1/1000000) ** (10**12)", "too large"),
        ("10**-100000", "too small"),
        ("0.5 ** 100000", "too small"),
        ("2 ** (10**30)", "too large"),
        ("(-3) ** (10**30 + 1)", "too large"),
        ("2 ** (2 ** 16000)", "too large"),
        ("sqrt(2) ** (10**9)", "too large"),
        ("exp(10000) * exp(10000)", "too large"),
        ("1/exp(10000) * 1/exp(10000)", "too small"),
    ],
)
def test_absurd_magnitudes_are_refused_fast(expression: str, message: str) -> None:
    outcome = _timed(expression)
    assert isinstance(outcome, ToolInputError)
    assert message in outcome.message


def test_power_of_one_with_huge_exponent_is_exact() -> None:
    assert evaluate("1 ** (10**1000)").text == "1"
    assert evaluate("(-1) ** (10**1000 + 1)").text == "-1"
    assert evaluate("0 ** (10**1000)").text == "0"


def test_long_terminating_decimal_is_shown_in_scientific_notation() -> None:
    result = _timed("2 ** -16000")  # exact, terminating, but 16,000 decimal places
    assert isinstance(result, CalcResult)
    assert result.value == Fraction(1, 2**16000)
    assert (result.text, result.exact) == ("3.31184022195e-4817", False)


def test_format_fraction_never_hits_the_int_str_limit() -> None:
    text, exact = format_fraction(Fraction(10**6000 + 1))
    assert exact is False
    assert text == "1e+6000"
    text, exact = format_fraction(Fraction(1, 3) * 10**5000, exact=False)
    assert (text, exact) == ("3.33333333333e+4999", False)


@pytest.mark.parametrize(
    ("expression", "text"),
    [
        ("log(1 + 1/10**4000)", "1e-4000"),
        ("log(1 - 1/10**30)", "-1e-30"),
        ("log(2, 1 + 1/10**60)", "6.9314718056e+59"),
        ("log(2, 1 + 1/10**4000)", "6.9314718056e+3999"),
    ],
)
def test_log_next_to_one_keeps_its_digits(expression: str, text: str) -> None:
    result = _timed(expression)
    assert isinstance(result, CalcResult)
    assert (result.text, result.exact) == (text, False)


def test_no_conversion_depends_on_the_int_str_limit() -> None:
    previous = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(640)  # the lowest limit Python allows
    try:
        assert evaluate("2**8000*2**8000").value == 2**16000
        assert evaluate("1" * 4_000 + " * 3").text == "3" * 4_000
        result = evaluate("2**5000 / 3")
        assert result.text.startswith("4708223440464753") and result.text.endswith("125.333333333333")
        assert "bits" in repr(result)  # the repr leaves out a numerator too long for str()
        assert evaluate("e**100").text == "2.68811714182e+43"
        assert evaluate("1/3 + 1/10**700").text == "0.333333333333"
    finally:
        sys.set_int_max_str_digits(previous)


_ATOMS = ["0", "1", "2", "7", "0.5", "10", "365", "1,234", "1e3", "pi", "e", "9" * 60, "²", "①", "٣", "x", "."]
_JOINERS = ["+", "-", "*", "/", "**", "^", "%", " % ", "% of ", ",", "(", ")", " "]


@st.composite
def _token_soup(draw: st.DrawFn) -> str:
    parts = draw(st.lists(st.sampled_from(_ATOMS + _JOINERS), min_size=1, max_size=14))
    return "".join(parts)


@st.composite
def _grammar(draw: st.DrawFn, depth: int = 3) -> str:
    if depth == 0 or draw(st.integers(0, 3)) == 0:
        extra = ["1/3", "7301/7300", "1.000001", "(2/3)", "-1", "1" * 700, "2**16000", "(1 + 1/10**40)", "1e-999"]
        return draw(st.sampled_from(_ATOMS + extra))
    kind = draw(st.sampled_from(["bin", "pow", "call", "neg", "pct"]))
    left = draw(_grammar(depth - 1))
    if kind == "neg":
        return f"-({left})"
    if kind == "pct":
        return f"({left})% of ({draw(_grammar(depth - 1))})"
    if kind == "call":
        name = draw(st.sampled_from(["sqrt", "log", "exp", "round", "min", "max", "abs"]))
        if name in ("log", "round", "min", "max") and draw(st.booleans()):
            return f"{name}({left}, {draw(_grammar(depth - 1))})"
        return f"{name}({left})"
    right = draw(_grammar(depth - 1))
    op = "**" if kind == "pow" else draw(st.sampled_from(["+", "-", "*", "/", "%"]))
    return f"({left}) {op} ({right})"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(_grammar(), _token_soup()))
def test_any_input_gives_a_result_or_a_tool_input_error(expression: str) -> None:
    outcome = _timed(expression)
    if isinstance(outcome, CalcResult):
        assert outcome.text
        assert "\n" not in outcome.text


def test_a_tiny_rounded_value_is_written_in_scientific_notation() -> None:
    """Below 1e-6 a rounded text is scientific, as the module promises, even for an exact fraction: (1/3)**8000 is
    exact, and its plain text ran to 3,831 characters of leading zeros."""
    assert evaluate("(1/3)**8000").text == "1.07142615205e-3817"
    assert evaluate("1/3**20").text == "2.86797199079e-10"
    assert evaluate("-1/3**20").text == "-2.86797199079e-10"
    tiny_exact = evaluate("1/2**30")  # a terminating value is still written out exactly
    assert tiny_exact.text == "0.000000000931322574615478515625" and tiny_exact.exact
    assert evaluate("1/7").text == "0.142857142857"
