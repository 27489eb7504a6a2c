"""Exact calculator: a whitelist evaluator over a tokenizer and a recursive-descent parser.

Nothing here ever reaches Python's ``eval``: the input is tokenized into numbers, the whitelisted names below and
operators, parsed into values directly, and computed with :class:`fractions.Fraction`.

Syntax and rules (also in the README, "Calculator"):

* ``+ - * /``, ``**`` (``^`` is accepted as a synonym), unary minus/plus, parentheses.
* ``%`` right after an operand is a *percentage* (``15%`` is 0.15; ``15% of 80`` is 12); between two operands
  (``10 % 3``) it is *modulo*. A ``%`` followed by a number, a name or ``(`` is modulo, anything else percentage.
* Functions ``sqrt log exp round min max abs floor ceil`` (``log(x)`` is natural, ``log(x, base)``; ``round(x, ndigits=0)``
  rounds half away from zero) and constants ``pi`` and ``e``.
* Thousands separators: ``1,234`` and ``1,234,567.5``. A comma is a thousands separator when it follows a group of
  one to three digits, is followed by exactly three digits and then no further digit, *and* is not directly inside a
  function's argument list. Inside ``min(...)``/``max(...)``/``round(...)``/``log(...)`` a comma always separates
  arguments, so ``max(1,234)`` is 234; write ``max(1234, 5)`` or ``max((1,234), 5)`` there.
* Numbers are written with decimal digits (``0``-``9``; the decimal digits of other scripts are read too).
  Superscripts (``2²``), circled digits (``①``) and other digit-like characters are refused, naming the character:
  write ``2**2``.
* Results are exact decimals when the value terminates. Otherwise (``1/3``, ``sqrt(2)``) the text is rounded to 12
  decimal places (more for values below 1, so that at least 12 significant digits remain), and ``exact`` is False.
  Rounded values below 1e-6 (``(1/3)**8000``), and values of 1e15 or more that were computed approximately (not as
  exact fractions: ``e**100``), are written in scientific notation with 12 significant digits, and so is any value
  whose decimal text would have more than 5,000 digits (``2**-16000``; ``exact`` is then False).

Limits keep every evaluation fast (microseconds for ordinary input, under a second even for 10,000 characters
built to be slow): input length (10,000 characters), nesting depth (64), number literals (at most 4,932 digits,
exponents up to ``e±1000``) and the size of every value:

* A value is kept exact while its numerator and denominator have at most 16,384 bits (about 4,930 digits each).
* A value whose exact form would be larger, but whose magnitude lies between 10^-4,850 and 10^4,850, is computed
  with about 50 significant digits instead and marked as rounded: ``1000*(1+0.05/365)**(365*30)`` is
  4481.228688524515 and ``e**100`` is 2.68811714182e+43. Values that are inexact anyway (from ``pi``, ``e``,
  ``sqrt``, ``log``, ``exp``) are kept to about 50 significant digits as well.
* A magnitude beyond that (``9**9**9``, ``10**100000``, ``0.5**100000``) fails at once with a clear message
  instead of computing.

No conversion between ``int`` and ``str`` is subject to Python's digit limit (``sys.get_int_max_str_digits``,
4,300 by default): long numbers are read and written through :mod:`decimal`, and rounded in binary.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from decimal import MAX_EMAX, MIN_EMIN, Context, Decimal, DecimalException, localcontext
from fractions import Fraction

from conclave.errors import ToolInputError

__all__ = [
    "MAX_BITS",
    "MAX_DEPTH",
    "MAX_INPUT_CHARS",
    "MAX_MAGNITUDE",
    "MAX_NUMBER_DIGITS",
    "CalcResult",
    "evaluate",
    "format_fraction",
]

MAX_INPUT_CHARS = 10_000
MAX_DEPTH = 64
MAX_BITS = 16_384  # exact values: at most this many bits (~4,930 decimal digits) in numerator and denominator
MAX_NUMBER_DIGITS = int(MAX_BITS * math.log10(2))  # 4,932: a literal's digits always fit in MAX_BITS
# Rounded values (about 50 significant digits) lie within 10^±MAX_MAGNITUDE, so that they too fit in MAX_BITS:
# a 170-bit (or 50-digit) mantissa times 10^-4,850 has a denominator of at most about 16,280 bits.
MAX_MAGNITUDE = 4_850
DISPLAY_DECIMALS = 12
_WORK_PREC = 50
_MAX_EXP_ARG = 10_000  # exp(10,000) is about 10^4,343, inside MAX_MAGNITUDE
_MAX_NUMBER_EXPONENT = 1_000
_MAX_ROUNDED_EXPONENT_DIGITS = 50  # a rounded power's exponent; more would need a base within 1e-45 of 1
_MAX_PLAIN_DIGITS = 5_000  # longer decimal texts are written in scientific notation
_SHORT_DIGITS = 600  # int(str) is safe up to here, whatever the (>= 640) sys.set_int_max_str_digits() limit
_ROUND_BITS = 170  # a rounded value keeps 170 significant bits, a little over 50 decimal digits
_INEXACT_BITS = 4 * _ROUND_BITS  # an inexact value is rounded again once its numerator/denominator is longer
_LOG10_2 = math.log10(2)

_PI = Fraction(Decimal("3.14159265358979323846264338327950288419716939937511"))
_E = Fraction(Decimal("2.71828182845904523536028747135266249775724709369996"))
_HINT = "write plain arithmetic, e.g. (1,234 + 15% of 80) / 3 or sqrt(2) * 3"


@dataclass(frozen=True)
class CalcResult:
    """A calculator result: the value, its decimal text, and whether that text is exact."""

    value: Fraction
    text: str
    exact: bool

    def __repr__(self) -> str:
        # repr(Fraction) goes through str(int), which refuses numbers over sys.get_int_max_str_digits() digits.
        bits = max(self.value.numerator.bit_length(), self.value.denominator.bit_length())
        value = repr(self.value) if bits <= 2_000 else f"<Fraction of {bits:,} bits>"
        return f"CalcResult(value={value}, text={self.text!r}, exact={self.exact!r})"


@dataclass(frozen=True)
class _Num:
    value: Fraction
    exact: bool = True


@dataclass(frozen=True)
class _Tok:
    kind: str  # "num" | "name" | "op" | "end"
    text: str
    pos: int
    value: _Num | None = None


def _error(message: str, hint: str = _HINT) -> ToolInputError:
    return ToolInputError(f"calculator: {message}", hint=hint)


# ---------------------------------------------------------------- tokenizer

_OPS2 = ("**",)
_OPS1 = "+-*/^%(),"


def _tokenize(src: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    # Paren stack: "call" when "(" opens a function's arguments (commas separate), "group" otherwise.
    stack: list[str] = []
    i, n = 0, len(src)
    while i < n:
        ch = src[i]
        if ch.isspace():
            i += 1
            continue
        if ch.isdecimal() or (ch == "." and i + 1 < n and src[i + 1].isdecimal()):
            allow_thousands = not stack or stack[-1] == "group"
            tok, i = _lex_number(src, i, allow_thousands)
            tokens.append(tok)
            continue
        if ch.isnumeric():
            # str.isdigit()/isnumeric() accept superscripts, circled digits, fractions; int() and Decimal do not.
            raise _error(
                f"unsupported character {ch!r} at position {i}: numbers are written with the digits 0-9",
                hint="write 2**2 (or 2^2) for 2², 1 for ①, 1/2 for ½",
            )
        if ch.isalpha() or ch == "_":
            j = i
            while j < n and (src[j].isalpha() or src[j].isdecimal() or src[j] == "_"):
                j += 1
            name = src[i:j]
            if name != "of" and name not in _FUNCTIONS and name not in _CONSTANTS:
                raise _error(f"unknown name {name!r} at position {i} (allowed: {_ALLOWED})")
            tokens.append(_Tok("name", name, i))
            i = j
            continue
        if src.startswith("**", i):
            tokens.append(_Tok("op", "**", i))
            i += 2
            continue
        if ch in _OPS1:
            if ch == "(":
                is_call = bool(tokens) and tokens[-1].kind == "name" and tokens[-1].text != "of"
                stack.append("call" if is_call else "group")
                if len(stack) > MAX_DEPTH:
                    raise _error(f"expression is nested too deeply (more than {MAX_DEPTH} levels)")
            elif ch == ")":
                if not stack:
                    raise _error(f"unbalanced ')' at position {i}")
                stack.pop()
            elif ch == "," and (not stack or stack[-1] == "group"):
                raise _error(
                    f"unexpected ',' at position {i}: commas separate function arguments or thousands (1,234)",
                    hint="write thousands as 1,234 (groups of exactly three digits) or without separators",
                )
            tokens.append(_Tok("op", "**" if ch == "^" else ch, i))
            i += 1
            continue
        if ch == ".":
            raise _error(f"attribute access is not allowed ('.' at position {i})")
        if ch in "'\"":
            raise _error(f"strings are not allowed (quote at position {i})")
        raise _error(f"unexpected character {ch!r} at position {i}")
    if stack:
        raise _error("unbalanced '(': missing ')'")
    tokens.append(_Tok("end", "", n))
    return tokens


def _lex_number(src: str, i: int, allow_thousands: bool) -> tuple[_Tok, int]:
    n = len(src)
    start = i
    j = i
    while j < n and src[j].isdecimal():
        j += 1
    int_part = src[i:j]
    if allow_thousands and 1 <= len(int_part) <= 3:
        k = j
        groups = [int_part]
        while (
            k + 4 <= n
            and src[k] == ","
            and src[k + 1 : k + 4].isdecimal()
            and (k + 4 == n or not src[k + 4].isdecimal())
        ):
            groups.append(src[k + 1 : k + 4])
            k += 4
        if len(groups) > 1:
            int_part = "".join(groups)
            j = k
    frac_part = ""
    if j < n and src[j] == ".":
        k = j + 1
        while k < n and src[k].isdecimal():
            k += 1
        frac_part = src[j + 1 : k]
        j = k
        if j < n and src[j] == ".":
            raise _error(f"malformed number at position {start}")
    exponent = 0
    if j < n and src[j] in "eE":
        k = j + 1
        if k < n and src[k] in "+-":
            k += 1
        if k < n and src[k].isdecimal():
            m = k
            while m < n and src[m].isdecimal():
                m += 1
            exponent = int(src[j + 1 : m]) if m - (j + 1) < 8 else 10**9
            if abs(exponent) > _MAX_NUMBER_EXPONENT:
                raise _error(f"number exponent too large at position {start} (limit 1e±{_MAX_NUMBER_EXPONENT})")
            j = m
    if j < n and (src[j].isalpha() or src[j] == "_"):
        raise _error(
            f"unexpected {src[j]!r} right after a number at position {j}",
            hint="write multiplication explicitly, e.g. 2 * pi",
        )
    digits = (int_part or "0") + frac_part
    if len(digits) > MAX_NUMBER_DIGITS:
        raise _error(
            f"number too long at position {start} ({len(digits):,} digits; the limit is {MAX_NUMBER_DIGITS:,})",
            hint="write long numbers with an exponent, e.g. 1.5e300",
        )
    # int(str) refuses more than sys.get_int_max_str_digits() digits (4,300 by default, 640 at the least): long
    # literals go through Decimal, whose conversions have no such limit. Both read the decimal digits of any script.
    mantissa = int(digits) if len(digits) <= _SHORT_DIGITS else int(Decimal(digits))
    value = _fit(Fraction(mantissa, 10 ** len(frac_part)) * Fraction(10) ** exponent, True, "number")
    return _Tok("num", src[start:j], start, value), j


# ---------------------------------------------------------------- arithmetic helpers


def _magnitude_error(what: str, log10_value: float) -> ToolInputError:
    """'<what> too large/small: ... about 10^N' for a value whose decimal logarithm is about log10_value."""
    big = log10_value > 0
    if abs(log10_value) < 1e15:
        about = f"about 10^{log10_value:,.0f}"
    elif math.isfinite(log10_value):
        about = f"about 10^({log10_value:.3g})"
    else:
        about = f"beyond 10^({'' if big else '-'}10^300)"
    return _error(
        f"{what} too {'large' if big else 'small'}: {about} "
        f"(the limit is about 10^{'' if big else '-'}{MAX_MAGNITUDE:,})",
        hint="use smaller numbers or exponents" if big else "use larger numbers or smaller exponents",
    )


def _fit(value: Fraction, exact: bool, what: str = "intermediate result") -> _Num:
    """Keep a value exact while it fits in MAX_BITS; else round it to 50 digits, or refuse an absurd magnitude.

    A value that is already inexact is rounded as soon as it grows beyond a few hundred bits: its digits past the
    50th mean nothing, and keeping it small keeps long chains (pi * pi * ..., a sum of rounded powers) fast.
    """
    num_bits, den_bits = value.numerator.bit_length(), value.denominator.bit_length()
    if max(num_bits, den_bits) <= (MAX_BITS if exact else _INEXACT_BITS):
        return _Num(value, exact)
    log10_value = (num_bits - den_bits) * _LOG10_2  # within a bit of log10|value|; value != 0 here
    if abs(log10_value) > MAX_MAGNITUDE:
        raise _magnitude_error(what, log10_value)
    mantissa, exp2 = _binary_round(value, _ROUND_BITS)
    return _Num(Fraction(mantissa, 1 << -exp2) if exp2 < 0 else Fraction(mantissa << exp2), False)


def _binary_round(value: Fraction, bits: int) -> tuple[int, int]:
    """(m, e) with m * 2**e equal to value rounded to about ``bits`` significant bits, by integer arithmetic alone."""
    num, den = value.numerator, value.denominator
    shift = bits - (num.bit_length() - den.bit_length())  # value * 2**shift has about `bits` bits
    if shift >= 0:
        num <<= shift
    else:
        den <<= -shift
    return (2 * num + den) // (2 * den), -shift  # round half up


def _ctx(prec: int = _WORK_PREC) -> Context:
    return Context(prec=prec, Emax=MAX_EMAX, Emin=MIN_EMIN)


def _to_decimal(value: Fraction, ctx: Context) -> Decimal:
    """The value rounded to ``ctx.prec`` digits.

    Never str(int) (limited to sys.get_int_max_str_digits() digits), and no Decimal(int) of a huge int either (its
    conversion is quadratic: milliseconds at 16,000 bits): large values are first rounded in binary.
    """
    num, den = value.numerator, value.denominator
    bits = 4 * ctx.prec + 64
    if max(num.bit_length(), den.bit_length()) <= 2 * bits:
        return ctx.divide(Decimal(num), Decimal(den))
    mantissa, exp2 = _binary_round(value, bits)
    return ctx.multiply(Decimal(mantissa), ctx.power(Decimal(2), exp2))


def _ln(value: Fraction, ctx: Context) -> Decimal:
    """ln(value) for value > 0 to ``ctx.prec`` digits, also next to 1, where ln of the rounded value loses them all."""
    x = value - 1
    if x != 0 and abs(x) < Fraction(1, 10**20):
        # ln(1 + x) = x - x²/2 + x³/3 - ...: from the exact x, four terms are good to 80 digits.
        dx = _to_decimal(x, ctx)
        with localcontext(ctx):  # Decimal operators round to the current context, not to ctx
            return +(dx - dx * dx / 2 + dx * dx * dx / 3 - dx * dx * dx * dx / 4)
    return ctx.ln(_to_decimal(value, ctx))


def _from_decimal(value: Decimal, exact: bool, what: str = "intermediate result") -> _Num:
    """A finite Decimal as an exact Fraction (then fitted), via its digits: no slow or limited int conversion."""
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # finite: the contexts trap overflow and invalid operations
    if len(digits) <= _SHORT_DIGITS:
        mantissa = int("".join(map(str, digits)))
    else:
        mantissa = int(Decimal((0, digits, 0)))
    mantissa = -mantissa if sign else mantissa
    fraction = Fraction(mantissa * 10**exponent) if exponent >= 0 else Fraction(mantissa, 10**-exponent)
    return _fit(fraction, exact, what)


def _iroot(value: int, k: int) -> int | None:
    """The exact integer k-th root of a non-negative int, or None."""
    if value < 2:
        return value
    if k == 2:
        root = math.isqrt(value)
        return root if root * root == value else None
    # Start just above the root from a float estimate (good to ~38 bits at any size: math.log2 takes big ints);
    # integer Newton steps from above then decrease monotonically to the floor of the root in a few steps.
    e = math.log2(value) / k
    whole = int(e)
    x = (int(2 ** (e - whole) * 2**53) << whole >> 53) if whole > 53 else int(2**e)
    x += (x >> 30) + 2
    for _ in range(200):
        y = ((k - 1) * x + value // x ** (k - 1)) // k
        if y >= x:
            break
        x = y
    return x if x**k == value else None


def _power(base: _Num, exp: _Num) -> _Num:
    b, p = base.value, exp.value
    exact = base.exact and exp.exact
    if p.denominator == 1:
        k = p.numerator
        if b == 0:
            if k < 0:
                raise _error("division by zero (0 raised to a negative power)")
            return _Num(Fraction(1) if k == 0 else Fraction(0), exact)
        if abs(b) == 1:
            return _Num(b ** (k % 2) if b < 0 else Fraction(1), exact)
        largest = max(abs(b.numerator), b.denominator)
        if abs(k).bit_length() <= 32 and abs(k) * math.log2(largest) <= MAX_BITS + 1:
            return _fit(b**k, exact, "power")
        # The exact value would be huge (its digits, not necessarily its magnitude): round to 50 digits.
        return _rounded_power(b, p)
    if b < 0:
        raise _error("a negative number raised to a fractional power is not a real number")
    if b == 0:
        if p < 0:
            raise _error("division by zero (0 raised to a negative power)")
        return _Num(Fraction(0), exact)
    # Exact rational roots first: (a/c)^(p/q) is rational when a and c are perfect q-th powers.
    q = p.denominator
    if q <= 64:
        num_root = _iroot(b.numerator, q)
        den_root = _iroot(b.denominator, q)
        if num_root is not None and den_root is not None:
            return _power(_Num(Fraction(num_root, den_root), base.exact), _Num(Fraction(p.numerator), exp.exact))
    return _rounded_power(b, p)


def _log10_abs(value: Fraction) -> float:
    """log10|value| as a float, for any size of numerator and denominator (math.log10 takes big ints)."""
    return math.log10(abs(value.numerator)) - math.log10(value.denominator)


def _rounded_power(b: Fraction, p: Fraction) -> _Num:
    """b**p to 50 significant digits (b > 0, or b < 0 with a whole p), or a clear error for absurd magnitudes.

    A float estimate of log10|b**p| refuses absurd magnitudes at once; the value is then exp(p * ln|b|) in Decimal,
    with as many extra digits as p has, so that an exponent like 365*30 loses no accuracy to the rounded base.
    """
    log10_base = _log10_abs(b)
    if log10_base != 0:
        log10_log10 = math.log10(abs(log10_base)) + _log10_abs(p)
        estimate = 10**log10_log10 if log10_log10 < 300 else math.inf
        if (log10_base > 0) != (p > 0):
            estimate = -estimate
        if abs(estimate) > MAX_MAGNITUDE + 1:
            raise _magnitude_error("power", estimate)
    p_digits = max(1, int(_log10_abs(p)) + 1) if p else 1
    if p_digits > _MAX_ROUNDED_EXPONENT_DIGITS:
        raise _error(
            f"power too large: the exponent has about {p_digits:,} digits "
            f"(the limit is {_MAX_ROUNDED_EXPONENT_DIGITS} unless the base is 0, 1 or -1)",
            hint="use smaller exponents",
        )
    ctx = _ctx(_WORK_PREC + p_digits + 10)
    try:
        ln_result = ctx.multiply(_ln(abs(b), ctx), _to_decimal(p, ctx))
        log10_result = float(ln_result) / math.log(10)
        if abs(log10_result) > MAX_MAGNITUDE:
            raise _magnitude_error("power", log10_result)
        result = ctx.exp(ln_result)
    except DecimalException as exc:  # not expected within the bounds above; never let it escape as is
        message = f"power cannot be computed ({type(exc).__name__})"
        raise _error(message, hint="use smaller exponents") from exc
    if b < 0 and p.numerator % 2:
        result = ctx.minus(result)  # not -result: operators round to the thread's context (28 digits)
    return _from_decimal(_ctx().plus(result), False, "power")


def _sqrt(x: _Num) -> _Num:
    if x.value < 0:
        raise _error("sqrt of a negative number is not a real number")
    return _power(x, _Num(Fraction(1, 2)))


def _log(x: _Num, base: _Num | None = None) -> _Num:
    if x.value <= 0:
        raise _error("log is only defined for positive numbers")
    exact = x.exact and (base is None or base.exact)
    if base is not None and (base.value <= 0 or base.value == 1):
        raise _error("log base must be positive and not 1")
    if x.value == 1:
        return _Num(Fraction(0), exact)
    ctx = _ctx()
    ln_x = _ln(x.value, ctx)
    if base is None:
        return _from_decimal(ln_x, False)
    result = ctx.divide(ln_x, _ln(base.value, ctx))
    # log(8, 2) is exactly 3: check integer candidates exactly.
    candidate = int(result.to_integral_value()) if result.copy_abs() <= MAX_BITS else None
    if candidate is not None and abs(result - candidate) < Decimal("1e-30"):
        bits = max(base.value.numerator.bit_length(), base.value.denominator.bit_length()) * abs(candidate)
        if bits <= MAX_BITS and base.value**candidate == x.value:
            return _Num(Fraction(candidate), exact)
    return _from_decimal(result, False)


def _exp(x: _Num) -> _Num:
    if x.value == 0:
        return _Num(Fraction(1), x.exact)
    if abs(x.value) > _MAX_EXP_ARG:
        raise _error(f"exp argument too large (|x| must be at most {_MAX_EXP_ARG})")
    ctx = _ctx()
    return _from_decimal(_to_decimal(x.value, ctx).exp(ctx), False)


def _round(x: _Num, ndigits: _Num | None = None) -> _Num:
    places = 0
    if ndigits is not None:
        if ndigits.value.denominator != 1 or abs(ndigits.value) > 100:
            raise _error("round's second argument must be a whole number between -100 and 100")
        places = int(ndigits.value)
    scale = Fraction(10) ** places
    scaled = x.value * scale
    # Half away from zero, as people expect from a calculator (Python's round is half-to-even).
    magnitude = math.floor(abs(scaled) + Fraction(1, 2))
    rounded = Fraction(magnitude if scaled >= 0 else -magnitude) / scale
    return _fit(rounded, x.exact)


def _minmax(pick: Callable[..., Fraction]) -> Callable[..., _Num]:
    def apply(*args: _Num) -> _Num:
        value = pick(a.value for a in args)
        return _Num(value, all(a.exact for a in args))

    return apply


# name -> (function, min args, max args)
_FUNCTIONS: dict[str, tuple[Callable[..., _Num], int, int]] = {
    "sqrt": (_sqrt, 1, 1),
    "log": (_log, 1, 2),
    "exp": (_exp, 1, 1),
    "round": (_round, 1, 2),
    "min": (_minmax(min), 1, 1000),
    "max": (_minmax(max), 1, 1000),
    "abs": (lambda x: _Num(abs(x.value), x.exact), 1, 1),
    "floor": (lambda x: _Num(Fraction(math.floor(x.value)), x.exact), 1, 1),
    "ceil": (lambda x: _Num(Fraction(math.ceil(x.value)), x.exact), 1, 1),
}
_CONSTANTS = {"pi": _Num(_PI, False), "e": _Num(_E, False)}
_ALLOWED = ", ".join([*_FUNCTIONS, *_CONSTANTS])
FUNCTION_NAMES = frozenset(_FUNCTIONS)
"""The functions an expression may call (chains read ``name(...)`` with one of these as arithmetic)."""


# ---------------------------------------------------------------- parser / evaluator


class _Parser:
    def __init__(self, tokens: list[_Tok]):
        self.tokens = tokens
        self.i = 0
        self.depth = 0

    @property
    def tok(self) -> _Tok:
        return self.tokens[self.i]

    def _next(self) -> _Tok:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def _is_op(self, *ops: str) -> bool:
        return self.tok.kind == "op" and self.tok.text in ops

    def _enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _error(f"expression is nested too deeply (more than {MAX_DEPTH} levels)")

    def parse(self) -> _Num:
        if self.tok.kind == "end":
            raise _error("empty expression")
        value = self.additive()
        if self.tok.kind != "end":
            raise _error(f"unexpected {self.tok.text!r} at position {self.tok.pos}")
        return value

    def additive(self) -> _Num:
        left = self.multiplicative()
        while self._is_op("+", "-"):
            op = self._next().text
            right = self.multiplicative()
            value = left.value + right.value if op == "+" else left.value - right.value
            left = _fit(value, left.exact and right.exact)
        return left

    def multiplicative(self) -> _Num:
        left = self.unary()
        while self._is_op("*", "/", "%"):
            op = self._next().text
            right = self.unary()
            exact = left.exact and right.exact
            if op == "*":
                left = _fit(left.value * right.value, exact)
                continue
            if right.value == 0:
                raise _error("division by zero" if op == "/" else "modulo by zero")
            if op == "/":
                left = _fit(left.value / right.value, exact)
            else:
                left = _fit(left.value % right.value, exact)
        return left

    def unary(self) -> _Num:
        if self._is_op("-", "+"):
            op = self._next().text
            self._enter()
            operand = self.unary()
            self.depth -= 1
            return _Num(-operand.value, operand.exact) if op == "-" else operand
        return self.power()

    def power(self) -> _Num:
        base = self.postfix()
        if self._is_op("**"):
            self._next()
            self._enter()
            exponent = self.unary()  # right-associative: 2**3**2 == 2**9; 2**-1 allowed
            self.depth -= 1
            return _power(base, exponent)
        return base

    def postfix(self) -> _Num:
        value = self.primary()
        if self._is_op("%"):
            after = self.tokens[self.i + 1]
            starts_operand = (
                after.kind == "num"
                or (after.kind == "name" and after.text != "of")
                or (after.kind == "op" and after.text == "(")
            )
            if not starts_operand:
                self._next()
                value = _fit(value.value / 100, value.exact)
                if self.tok.kind == "name" and self.tok.text == "of":
                    self._next()
                    self._enter()
                    whole = self.unary()
                    self.depth -= 1
                    value = _fit(value.value * whole.value, value.exact and whole.exact)
        elif self.tok.kind == "name" and self.tok.text == "of":
            raise _error("'of' must follow a percentage, e.g. 15% of 80")
        return value

    def primary(self) -> _Num:
        tok = self._next()
        if tok.kind == "num":
            assert tok.value is not None
            return tok.value  # the tokenizer already fitted it to the limits
        if tok.kind == "op" and tok.text == "(":
            self._enter()
            value = self.additive()
            self.depth -= 1
            if not self._is_op(")"):
                raise _error(f"expected ')' at position {self.tok.pos}")
            self._next()
            return value
        if tok.kind == "name":
            return self._name(tok)
        if tok.kind == "end":
            raise _error("expression ends too early")
        raise _error(f"unexpected {tok.text!r} at position {tok.pos}")

    def _name(self, tok: _Tok) -> _Num:
        name = tok.text
        if name in _CONSTANTS:
            if self._is_op("("):
                raise _error(f"{name} is a constant, not a function")
            return _CONSTANTS[name]
        if name not in _FUNCTIONS:
            raise _error(f"unknown name {name!r} at position {tok.pos} (allowed: {_ALLOWED})")
        func, lo, hi = _FUNCTIONS[name]
        if not self._is_op("("):
            raise _error(f"{name} is a function: write {name}(...)")
        self._next()
        self._enter()
        args: list[_Num] = []
        if not self._is_op(")"):
            args.append(self.additive())
            while self._is_op(","):
                self._next()
                args.append(self.additive())
        self.depth -= 1
        if not self._is_op(")"):
            raise _error(f"expected ')' or ',' at position {self.tok.pos}")
        self._next()
        if not lo <= len(args) <= hi:
            expected = str(lo) if lo == hi else f"{lo} to {hi}"
            raise _error(f"{name} takes {expected} argument(s), got {len(args)}")
        return func(*args)


# ---------------------------------------------------------------- formatting


def _terminating_places(value: Fraction) -> int | None:
    """The decimal places of a terminating value (1/8 -> 3), or None when its expansion does not terminate."""
    d = value.denominator
    twos = (d & -d).bit_length() - 1
    d >>= twos
    fives = 0
    while d % 5 == 0:
        d //= 5
        fives += 1
    return max(twos, fives) if d == 1 else None


def _integer_digits(value: Fraction) -> int:
    """An upper bound (by at most one) on the digits before the decimal point."""
    bits = abs(value.numerator).bit_length() - value.denominator.bit_length() + 1
    return max(1, int(bits * _LOG10_2) + 1)


def _plain(value: Fraction, places: int) -> str:
    """Round to ``places`` decimals (half-even; ties cannot occur for non-terminating values) and strip zeros."""
    scaled = round(value * 10**places)
    sign = "-" if scaled < 0 else ""
    # str(Decimal(int)), not str(int): the latter refuses more than sys.get_int_max_str_digits() digits.
    digits = str(Decimal(abs(scaled))).rjust(places + 1, "0")
    whole, frac = digits[: len(digits) - places], digits[len(digits) - places :]
    frac = frac.rstrip("0")
    text = f"{sign}{whole}.{frac}" if frac else f"{sign}{whole}"
    return "0" if text == "-0" else text


def _scientific(value: Fraction) -> str:
    dec = _to_decimal(value, _ctx(2 * DISPLAY_DECIMALS))  # the format below rounds it to 12 digits
    mantissa, _, exponent = f"{dec:.{DISPLAY_DECIMALS - 1}e}".partition("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent):+d}"


def format_fraction(value: Fraction, exact: bool = True) -> tuple[str, bool]:
    """Decimal text for a value and whether that text is exact (see the module docstring for the rule)."""
    terminating = _terminating_places(value) if exact else None
    if terminating is not None:
        if _integer_digits(value) + terminating <= _MAX_PLAIN_DIGITS:
            return _plain(value, terminating), True
        return _scientific(value), False
    if value == 0:
        return "0", False
    magnitude = abs(value)
    # Below 1e-6 a rounded text is mostly leading zeros (an exact 3**-8000 would be 3,800 of them).
    if magnitude < Fraction(1, 10**6) or (not exact and magnitude >= 10**15):
        return _scientific(value), False
    places = DISPLAY_DECIMALS
    if magnitude < 1:
        # Leading zeros after the point do not count towards the 12 significant digits.
        places += -math.floor(math.log10(magnitude.numerator) - math.log10(magnitude.denominator)) - 1
    if _integer_digits(value) + places > _MAX_PLAIN_DIGITS:
        return _scientific(value), False
    return _plain(value, places), False


def evaluate(expression: str) -> CalcResult:
    """Evaluate an arithmetic expression exactly; raise ToolInputError with a clear message on bad input."""
    if not isinstance(expression, str):
        raise _error("the expression must be a string")
    if len(expression) > MAX_INPUT_CHARS:
        raise _error(f"expression too long ({len(expression):,} characters; the limit is {MAX_INPUT_CHARS:,})")
    tokens = _tokenize(expression)
    result = _Parser(tokens).parse()
    text, exact = format_fraction(result.value, result.exact)
    return CalcResult(value=result.value, text=text, exact=exact)
