"""GSM8K training answers to chains: each calculator note (``48/2 = <<48/2=24>>24``) becomes a step.

The step's thought is its line of the solution with the visible arithmetic and the note replaced by the step's
placeholder ("Natalia sold y1 clips in May."). In later notes a number equal to an earlier result becomes that
result's placeholder (whole numbers only, the most recent result first), unless the question itself states the
number. ``#### N`` becomes the answer: the latest step whose value is N.
"""

from __future__ import annotations

import re
from decimal import Decimal
from fractions import Fraction

from conclave.workflows.coa.model import Chain, Step, calculator_step

__all__ = ["convert_gsm8k_answer", "gsm8k_gold", "GSM8KConversionError"]

_NOTE = re.compile(r"<<([^<>]*)>>")
_NUMBER_TOKEN = re.compile(r"(?<![\w.])(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)(?![\w])")
_ARITHMETIC = re.compile(r"[0-9.,+\-*/()%\s]+")
_VISIBLE = set("0123456789.,+-*/x×÷()% $")


class GSM8KConversionError(ValueError):
    """The answer cannot be converted into a chain (no notes, a note that is not arithmetic, a wrong note, ...)."""


def gsm8k_gold(answer: str) -> str:
    """The final answer of a GSM8K answer text (after ``####``), commas removed."""
    head, sep, final = answer.rpartition("####")
    if not sep or not final.strip():
        raise GSM8KConversionError("the answer has no final '#### <number>' line")
    return final.strip().replace(",", "")


def convert_gsm8k_answer(question: str, answer: str, *, check: bool = True) -> Chain:
    """The chain for a GSM8K answer; with ``check`` every note is recomputed exactly and must match its value."""
    gold_text = gsm8k_gold(answer)
    gold = _number(gold_text)
    if gold is None:
        raise GSM8KConversionError(f"the final answer {gold_text!r} is not a number")
    body = answer.rpartition("####")[0]
    given = {v for token in _NUMBER_TOKEN.findall(question) if (v := _number(token)) is not None}
    results: list[tuple[str, Fraction]] = []
    steps: list[Step] = []
    for line in body.splitlines():
        found = _notes(line) or (_plain_equations(line) if check else [])
        seg_start = 0
        for k, (start, end, expression, value, prefix, note) in enumerate(found):
            step_id = f"y{len(steps) + 1}"
            places = _checked(expression, value, note) if check else None
            seg_end = len(line) if k == len(found) - 1 else found[k + 1][0]
            thought = line[seg_start:start] + prefix + step_id + line[end:seg_end]
            linked = _link(expression, results, given)
            if places is not None:
                linked = f"round({linked}, {places})"
            steps.append(calculator_step(step_id, linked, thought=" ".join(thought.split())))
            results.append((step_id, value))
            seg_start = seg_end
    if not steps:
        raise GSM8KConversionError("the answer has no calculator notes (<<expression=value>>)")
    for step_id, value in reversed(results):
        if value == gold:
            return Chain(steps=tuple(steps), answer=step_id)
    raise GSM8KConversionError(f"no calculator note yields the final answer {gold_text}")


_Occurrence = tuple[int, int, str, Fraction, str, str]
"""(start, end, expression, value, "$" to keep before the placeholder, the text as written) of one calculation."""


def _notes(line: str) -> list[_Occurrence]:
    found: list[_Occurrence] = []
    floor = 0
    for note in _NOTE.finditer(line):
        expression, value = _read_note(note.group(1))
        start, prefix = _visible_start(line, note.start(), floor)
        end = _value_end(line, note.end(), value)
        found.append((start, end, expression, value, prefix, note.group(0)))
        floor = end
    return found


_OPERAND = r"\(?\$?(?:\d[\d,]*(?:\.\d+)?|\.\d+)\)?"
_PLAIN = re.compile(
    rf"(?<![\w.$])(?P<expr>{_OPERAND}(?:\s*[-+*/x×÷−–]\s*{_OPERAND})+)\s*=\s*(?P<dollar>\$?)"
    r"(?P<value>-?(?:\d[\d,]*(?:\.\d+)?|\.\d+))(?![\w])"
)


def _plain_equations(line: str) -> list[_Occurrence]:
    """Arithmetic written without a note ("so 20/4 = $5"); kept only when the calculator agrees with it."""
    from conclave.tools.calculator import evaluate

    found: list[_Occurrence] = []
    for match in _PLAIN.finditer(line):
        expression = re.sub(r"(?<=[\d)])\s*x\s*(?=[\d($])", " * ", match.group("expr"))
        expression = expression.replace("$", "").translate(str.maketrans("×÷−–", "*/--"))
        value = _number(match.group("value"))
        try:
            computed = evaluate(expression).value
        except Exception:  # prose that only looks like arithmetic
            continue
        if value is None or computed != value or not _ARITHMETIC.fullmatch(expression):
            continue
        found.append((match.start(), match.end(), expression.strip(), value, match.group("dollar"), match.group(0)))
    return found


def _number(text: str) -> Fraction | None:
    cleaned = text.strip().replace(",", "").replace("$", "").rstrip(".")
    try:
        return Fraction(Decimal(cleaned))
    except (ArithmeticError, ValueError):
        return None


def _read_note(body: str) -> tuple[str, Fraction]:
    expression, sep, value_text = body.rpartition("=")
    expression = expression.strip().replace("×", "*").replace("÷", "/")
    value = _number(value_text)
    if not sep or not expression or value is None:
        raise GSM8KConversionError(f"note <<{body}>> is not of the form <<expression=value>>")
    if not _ARITHMETIC.fullmatch(expression):
        raise GSM8KConversionError(f"note <<{body}>> is not plain arithmetic")
    return expression, value


def _checked(expression: str, value: Fraction, note: str) -> int | None:
    """None when the expression computes the note's value; the decimal places when the note rounded it."""
    from conclave.tools.calculator import evaluate  # workflows may use tools; imported here so the model stays pure

    try:
        computed = evaluate(expression).value
    except Exception as exc:  # the calculator's own message says what is wrong
        raise GSM8KConversionError(f"note {note} does not compute: {exc}") from None
    if computed == value:
        return None
    places = _decimals(value)
    if abs(computed - value) <= Fraction(1, 2 * 10**places):
        return places
    raise GSM8KConversionError(f"note {note} is wrong: {expression} is {float(computed):g}")


def _decimals(value: Fraction) -> int:
    places = 0
    while (value * 10**places).denominator != 1 and places < 12:
        places += 1
    return places


def _link(expression: str, results: list[tuple[str, Fraction]], given: set[Fraction]) -> str:
    def replace(match: re.Match[str]) -> str:
        value = _number(match.group(0))
        if value is None or value in given:
            return match.group(0)
        for step_id, result in reversed(results):
            if result == value:
                return step_id
        return match.group(0)

    linked = _NUMBER_TOKEN.sub(replace, expression)
    # Leave room around operators so placeholders read as words: "y1*2" -> "y1 * 2".
    return re.sub(r"\s*([+\-*/])\s*", r" \1 ", linked).replace("*  *", "**").strip()


def _visible_start(line: str, note_start: int, floor: int) -> tuple[int, str]:
    """Where the written arithmetic before a note starts ("48/2 = " in "48/2 = <<...>>"), and a "$" to keep."""
    j = note_start
    prefix = ""
    if j > floor and line[j - 1] == "$":
        prefix = "$"
        j -= 1
    k = j
    while k > floor and line[k - 1] == " ":
        k -= 1
    if k > floor and line[k - 1] == "=":
        m = k - 1
        while m > floor and line[m - 1] in _VISIBLE:
            m -= 1
        start = m
        while start < k - 1 and not (line[start].isdigit() or line[start] in ".($"):
            start += 1
        if any(ch.isdigit() for ch in line[start : k - 1]):
            return start, prefix
    return note_start, ""


def _value_end(line: str, note_end: int, value: Fraction) -> int:
    """The end of the value written right after a note ("24" in "<<48/2=24>>24 clips")."""
    match = re.compile(r"-?(?:\d[\d,]*(?:\.\d+)?|\.\d+)").match(line, note_end)
    if match and _number(match.group(0)) == value:
        return match.end()
    return note_end
