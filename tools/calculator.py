"""Exact calculator: a whitelist evaluator over a tokenizer and a recursive-descent parser.

Nothing here ever reaches Python's ``eval``: the input is tokenized into numbers, the whitelisted names below and
operators, parsed into values directly, and computed with :class:`fractions.Fraction`.

Syntax and rules (also in the README, "Calculator"):

* ``+ - * /``, ``**`` (``^`` is accepted as a synonym), unary minus/plus, parentheses.
* ``%`` right after an operand is a *percentage* (``15%`` is 0.15; ``15% of 80`` is 12); between two operands
  (``10 % 3``) it is *modulo*. A ``%`` followed by a number, a name or ``(`` is modulo, anything else percentage.
* Functions ``sqrt log exp round min max abs`` (``log(x)`` is natural, ``log(x, base)``; ``round(x, ndigits=0)``
  rounds half away from zero) and constants ``pi`` and ``e``.
* Thousands separators: ``1,234`` and ``1,234,567.5``. A comma is a thousands separator when it follows a group of
  one to three digits, is followed by exactly three digits and then no further digit, *and* is not directly inside a
  function's argument list. Inside ``min(...)``/``max(...)``/``round(...)``/``log(...)`` a comma always separates
  arguments, so ``max(1,234)`` is 234; write ``max(1234, 5)`` or ``max((1,234), 5)`` there.
* Results are exact decimals when the value terminates. Otherwise (``1/3``, ``sqrt(2)``) the text is rounded to 12
  decimal places (more for values below 1, so that at least 12 significant digits remain), and ``exact`` is False.
  Inexact values of 1e15 or more, or below 1e-6, are written in scientific notation with 12 significant digits.

Limits keep every evaluation fast: input length, nesting depth, and the size (in bits) of every intermediate value;
``9**9**9`` fails at once with a clear message instead of computing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Context, Decimal
from fractions import Fraction

from conclave.errors import ToolInputError

__all__ = ["MAX_BITS", "MAX_DEPTH", "MAX_INPUT_CHARS", "CalcResult", "evaluate", "format_fraction"]

MAX_INPUT_CHARS = 10_000
MAX_DEPTH = 64
MAX_BITS = 16_384  # ~4,900 decimal digits for any numerator or denominator
DISPLAY_DECIMALS = 12
_WORK_PREC = 50
_MAX_EXP_ARG = 10_000
_MAX_NUMBER_EXPONENT = 1_000

_PI = Fraction(Decimal("3.14159265358979323846264338327950288419716939937511"))
_E = Fraction(Decimal("2.71828182845904523536028747135266249775724709369996"))
_HINT = "write plain arithmetic, e.g. (1,234 + 15% of 80) / 3 or sqrt(2) * 3"


@dataclass(frozen=True)
class CalcResult:
    """A calculator result: the value, its decimal text, and whether that text is exact."""

    value: Fraction
    text: str
    exact: bool


@dataclass(frozen=True)
class _Num:
    value: Fraction
    exact: bool = True


@dataclass(frozen=True)
class _Tok:
    kind: str  # "num" | "name" | "op" | "end"
    text: str
    pos: int
    value: Fraction | None = None


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
        if ch.isdigit() or (ch == "." and i + 1 < n and src[i + 1].isdigit()):
            allow_thousands = not stack or stack[-1] == "group"
            tok, i = _lex_number(src, i, allow_thousands)
            tokens.append(tok)
            continue
        if ch.isalpha() or ch == "_":
            j = i
            while j < n and (src[j].isalnum() or src[j] == "_"):
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
    while j < n and src[j].isdigit():
        j += 1
    int_part = src[i:j]
    if allow_thousands and 1 <= len(int_part) <= 3:
        k = j
        groups = [int_part]
        while (
            k + 4 <= n
            and src[k] == ","
            and src[k + 1 : k + 4].isdigit()
            and (k + 4 == n or not src[k + 4].isdigit())
        ):
            groups.append(src[k + 1 : k + 4])
            k += 4
        if len(groups) > 1:
            int_part = "".join(groups)
            j = k
    frac_part = ""
    if j < n and src[j] == ".":
        k = j + 1
        while k < n and src[k].isdigit():
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
        if k < n and src[k].isdigit():
            m = k
            while m < n and src[m].isdigit():
                m += 1
            exponent = int(src[j + 1 : m]) if m - (j + 1) < 8 else 10**9
            if abs(exponent) > _MAX_NUMBER_EXPONENT:
                raise _error(
                    f"number exponent too large at position {start} (limit 1e±{_MAX_NUMBER_EXPONENT})"
                )
            j = m
    if j < n and (src[j].isalpha() or src[j] == "_"):
        raise _error(
            f"unexpected {src[j]!r} right after a number at position {j}",
            hint="write multiplication explicitly, e.g. 2 * pi",
        )
    digits = (int_part or "0") + frac_part
    value = Fraction(int(digits), 10 ** len(frac_part)) * Fraction(10) ** exponent
    return _Tok("num", src[start:j], start, value), j


# ---------------------------------------------------------------- arithmetic helpers


def _check_size(value: Fraction) -> Fraction:
    if value.numerator.bit_length() > MAX_BITS or value.denominator.bit_length() > MAX_BITS:
        raise _error(
            f"intermediate result too large (over {MAX_BITS} bits, about {int(MAX_BITS * 0.30103)} digits)",
            hint="use smaller numbers or exponents",
        )
    return value


def _ctx() -> Context:
    return Context(prec=_WORK_PREC, Emax=10**6, Emin=-(10**6))


def _to_decimal(value: Fraction, ctx: Context) -> Decimal:
    return ctx.divide(Decimal(value.numerator), Decimal(value.denominator))


def _from_decimal(value: Decimal, exact: bool) -> _Num:
    return _Num(_check_size(Fraction(value)), exact)


def _iroot(value: int, k: int) -> int | None:
    """The exact integer k-th root of a non-negative int, or None."""
    if value < 2:
        return value
    guess = (
        round(math.exp(math.log(value) / k)) if value.bit_length() < 1000 else 1 << (value.bit_length() // k)
    )
    # Newton's method from the float guess; converges in a few steps and verifies exactly.
    x = max(guess, 1)
    for _ in range(200):
        y = ((k - 1) * x + value // x ** (k - 1)) // k
        if abs(y - x) <= 1:
            break
        x = y
    for cand in (x - 1, x, x + 1):
        if cand >= 0 and cand**k == value:
            return cand
    return None


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
        size = max(b.numerator.bit_length(), b.denominator.bit_length())
        if abs(k) > MAX_BITS or size * abs(k) > MAX_BITS * 1.02:
            raise _error(
                f"power too large: the result would have about {int(size * abs(k) * 0.30103):,} digits "
                f"(limit about {int(MAX_BITS * 0.30103):,})",
                hint="use smaller exponents",
            )
        return _Num(_check_size(b**k), exact)
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
            return _power(
                _Num(Fraction(num_root, den_root), base.exact), _Num(Fraction(p.numerator), exp.exact)
            )
    ctx = _ctx()
    ln_b = _to_decimal(b, ctx).ln(ctx)
    magnitude = abs(float(ln_b) * float(p)) / math.log(2)
    if magnitude > MAX_BITS:
        raise _error("power too large", hint="use smaller exponents")
    result = ctx.power(_to_decimal(b, ctx), _to_decimal(p, ctx))
    return _from_decimal(result, False)


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
    ln_x = _to_decimal(x.value, ctx).ln(ctx)
    if base is None:
        return _from_decimal(ln_x, False)
    result = ctx.divide(ln_x, _to_decimal(base.value, ctx).ln(ctx))
    # log(8, 2) is exactly 3: check integer candidates exactly.
    candidate = int(result.to_integral_value())
    if abs(candidate) <= MAX_BITS and abs(result - candidate) < Decimal("1e-30"):
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
    return _Num(rounded, x.exact)


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
}
_CONSTANTS = {"pi": _Num(_PI, False), "e": _Num(_E, False)}
_ALLOWED = ", ".join([*_FUNCTIONS, *_CONSTANTS])


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
            left = _Num(_check_size(value), left.exact and right.exact)
        return left

    def multiplicative(self) -> _Num:
        left = self.unary()
        while self._is_op("*", "/", "%"):
            op = self._next().text
            right = self.unary()
            exact = left.exact and right.exact
            if op == "*":
                left = _Num(_check_size(left.value * right.value), exact)
                continue
            if right.value == 0:
                raise _error("division by zero" if op == "/" else "modulo by zero")
            if op == "/":
                left = _Num(_check_size(left.value / right.value), exact)
            else:
                left = _Num(_check_size(left.value % right.value), exact)
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
                value = _Num(value.value / 100, value.exact)
                if self.tok.kind == "name" and self.tok.text == "of":
                    self._next()
                    self._enter()
                    whole = self.unary()
                    self.depth -= 1
                    value = _Num(_check_size(value.value * whole.value), value.exact and whole.exact)
        elif self.tok.kind == "name" and self.tok.text == "of":
            raise _error("'of' must follow a percentage, e.g. 15% of 80")
        return value

    def primary(self) -> _Num:
        tok = self._next()
        if tok.kind == "num":
            assert tok.value is not None
            return _Num(_check_size(tok.value))
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


def _terminates(value: Fraction) -> bool:
    d = value.denominator
    for p in (2, 5):
        while d % p == 0:
            d //= p
    return d == 1


def _plain(value: Fraction, places: int) -> str:
    """Round to ``places`` decimals (half-even; ties cannot occur for non-terminating values) and strip zeros."""
    scaled = round(value * 10**places)
    sign = "-" if scaled < 0 else ""
    digits = str(abs(scaled)).rjust(places + 1, "0")
    whole, frac = digits[: len(digits) - places], digits[len(digits) - places :]
    frac = frac.rstrip("0")
    text = f"{sign}{whole}.{frac}" if frac else f"{sign}{whole}"
    return "0" if text == "-0" else text


def _scientific(value: Fraction) -> str:
    ctx = Context(prec=DISPLAY_DECIMALS)
    dec = ctx.divide(Decimal(value.numerator), Decimal(value.denominator))
    mantissa, _, exponent = f"{dec:.{DISPLAY_DECIMALS - 1}e}".partition("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent):+d}"


def format_fraction(value: Fraction, exact: bool = True) -> tuple[str, bool]:
    """Decimal text for a value and whether that text is exact (see the module docstring for the rule)."""
    if exact and _terminates(value):
        twos = fives = 0
        d = value.denominator
        while d % 2 == 0:
            d //= 2
            twos += 1
        while d % 5 == 0:
            d //= 5
            fives += 1
        return _plain(value, max(twos, fives)), True
    if value == 0:
        return "0", False
    magnitude = abs(value)
    if not exact and (magnitude >= 10**15 or magnitude < Fraction(1, 10**6)):
        return _scientific(value), False
    places = DISPLAY_DECIMALS
    if magnitude < 1:
        # Leading zeros after the point do not count towards the 12 significant digits.
        places += -math.floor(math.log10(magnitude.numerator) - math.log10(magnitude.denominator)) - 1
    return _plain(value, places), False


def evaluate(expression: str) -> CalcResult:
    """Evaluate an arithmetic expression exactly; raise ToolInputError with a clear message on bad input."""
    if not isinstance(expression, str):
        raise _error("the expression must be a string")
    if len(expression) > MAX_INPUT_CHARS:
        raise _error(
            f"expression too long ({len(expression):,} characters; the limit is {MAX_INPUT_CHARS:,})"
        )
    tokens = _tokenize(expression)
    result = _Parser(tokens).parse()
    text, exact = format_fraction(result.value, result.exact)
    return CalcResult(value=result.value, text=text, exact=exact)
