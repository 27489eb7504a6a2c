"""``parse_chain``: text or JSON in, a :class:`Chain` out; pure, with precise errors for the model to act on.

Text form (docs/ARCHITECTURE.md, "The flow of one question")::

    Tom pays [3 * 12 = y1] dollars, so his change is [50 - y1 = y2]. Answer: y2
    The capital is [search_knowledge("capital of Australia") -> y1]. Answer: y1

Tolerated drift: a ``FUNC`` prefix inside the bracket (``[FUNC add(2, 3) = y1]``), ``=``/``->``/``=>`` with or
without spaces, ``Y1`` for ``y1``, single-quoted strings, Python's ``True``/``False``/``None``, ``The answer is y2``.
Brackets with no ``=``/``->`` in them (``[1]``) are prose. A bracket that starts with one of the calculator's
functions (``[max(3, 4) = y1]``, ``[round(y2 / 3, 2) -> y3]``) is arithmetic, not a call of a tool named ``max``,
unless it has the ``FUNC`` prefix.

JSON form: ``{"steps": [{"thought", "id", "tool", "args"}], "answer": "y2"}``, bare or inside a fenced block or
surrounded by prose.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any

from conclave.tools.calculator import FUNCTION_NAMES
from conclave.workflows.coa.model import (
    CALCULATOR,
    Arg,
    Chain,
    Concat,
    Lit,
    Ref,
    Step,
    calculator_step,
    expression_arg,
    is_placeholder,
)

__all__ = ["ChainParseError", "parse_chain", "MATH_FUNCTIONS"]

MATH_FUNCTIONS = FUNCTION_NAMES
"""Names that make ``[name(...) = yN]`` arithmetic rather than a call of a tool called ``name`` (without ``FUNC``):
exactly the calculator's functions, so a chain never writes arithmetic the calculator cannot run."""

_WS = re.compile(r"\s*")
_FUNC = re.compile(r"(?i:func)\s+")
_CALL_START = re.compile(r"([A-Za-z_][\w\-]*)\s*\(")
_KWARG = re.compile(r"([A-Za-z_]\w*)\s*=(?![=>])")
_IDENT = re.compile(r"[A-Za-z_]\w*")
_NUMBER = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_OP = re.compile(r"->|=>|→|=(?!=)")
_PLACEHOLDER = re.compile(r"[yY][0-9]+\b")
_EXPR = re.compile(r"(?s)(?P<expr>.*?)\s*(?P<op>->|=>|→|=)\s*(?P<id>\S*?)\s*")
_ARROW_RESULT = re.compile(r"(?:->|=>|→)\s*[yY][0-9]+")
_EQ_RESULT = re.compile(r"=\s*[yY][0-9]+")
_ANY_RESULT = re.compile(r"(?:->|=>|→|=)\s*[yY][0-9]+\b")
_ANSWER = re.compile(r"(?i)(?:\b(?:the\s+)?(?:final\s+)?answer\s*(?::|\bis\b\s*:?)|####)[ \t]*")
_LITERAL_WORDS: dict[str, Any] = {
    "true": True,
    "false": False,
    "null": None,
    "True": True,
    "False": False,
    "None": None,
}
_DECODER = json.JSONDecoder(strict=False)


class ChainParseError(ValueError):
    """The chain could not be read; ``offset``/``line``/``column`` say where and ``expected`` what was missing."""

    def __init__(self, message: str, *, text: str, offset: int, expected: str):
        offset = max(0, min(offset, len(text)))
        self.offset = offset
        self.line = text.count("\n", 0, offset) + 1
        self.column = offset - (text.rfind("\n", 0, offset) + 1) + 1
        self.expected = expected
        self.reason = message
        near = text[offset : offset + 30].split("\n", 1)[0]
        where = f"at line {self.line}, column {self.column}"
        got = f" (found {near!r})" if near else " (found the end of the text)"
        super().__init__(f"{message} {where}: expected {expected}{got}")

    @property
    def message(self) -> str:
        """The full message, precise enough to send back to the model verbatim."""
        return str(self)


def parse_chain(text: str) -> Chain:
    """Parse a chain in the text form or the JSON form (detected); raise ChainParseError if it cannot be read."""
    start = _json_start(text)
    if start is not None:
        return _parse_json(text, start)
    return _TextParser(text).parse()


# ---------------------------------------------------------------- JSON form


def _json_start(text: str) -> int | None:
    stripped = text.lstrip()
    if stripped.startswith("{"):
        return len(text) - len(stripped)
    for match in (re.search(r"```[A-Za-z]*[ \t]*\n?\s*(\{)", text), re.search(r"(\{)\s*\"steps\"\s*:", text)):
        # Outside any bracket: a JSON literal inside a text-form call is an argument, not the chain.
        if match and text.count("[", 0, match.start()) == text.count("]", 0, match.start()):
            return match.start(1)
    return None


def _parse_json(text: str, start: int) -> Chain:
    try:
        obj, _ = _DECODER.raw_decode(text, start)
    except json.JSONDecodeError as exc:
        fence_end = text.find("```", start)
        content_end = len((text[:fence_end] if fence_end >= 0 else text).rstrip())
        # An unterminated string is reported where it starts, but it too means the text stopped early.
        if exc.pos >= content_end or exc.msg.startswith("Unterminated string"):
            raise ChainParseError(
                "the JSON chain is cut off before it is complete",
                text=text,
                offset=exc.pos,
                expected="the rest of the JSON object: keep the chain short and close every string, list and object",
            ) from None
        raise ChainParseError(f"invalid JSON ({exc.msg})", text=text, offset=exc.pos, expected="valid JSON") from None
    except (RecursionError, ValueError) as exc:  # nesting a looping model produced; numbers too long to read
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc).split(";")[0]
        raise ChainParseError(
            f"the JSON chain cannot be read ({reason})", text=text, offset=start, expected="a short, flat JSON chain"
        ) from None
    return _chain_from_json(obj, text, start)


def _chain_from_json(obj: Any, text: str, offset: int) -> Chain:
    def fail(message: str, expected: str) -> ChainParseError:
        return ChainParseError(message, text=text, offset=offset, expected=expected)

    if not isinstance(obj, dict):
        raise fail("the JSON chain is not an object", 'an object {"steps": [...], "answer": "yN"}')
    raw_steps = obj.get("steps")
    if not isinstance(raw_steps, list):
        raise fail('the JSON chain has no "steps" list', '"steps": a list of step objects')
    steps = [_step_from_json(item, i, fail) for i, item in enumerate(raw_steps)]
    if "answer" not in obj or obj["answer"] is None:
        raise fail('the JSON chain has no "answer"', '"answer": the placeholder that holds the answer, e.g. "y2"')
    answer = obj["answer"]
    if isinstance(answer, (list, dict)):
        raise fail('"answer" is not a string', '"answer": one placeholder such as "y2"')
    return Chain(steps=tuple(steps), answer=_normalize_answer(str(answer)))


def _step_from_json(item: Any, index: int, fail: Any) -> Step:
    where = f"steps[{index}]"
    if not isinstance(item, dict):
        raise fail(f"{where} is not an object", '{"thought": ..., "id": "yN", "tool": ..., "args": {...}}')
    raw_id = item.get("id")
    if isinstance(raw_id, int) and not isinstance(raw_id, bool):
        raw_id = f"y{raw_id}"
    if not isinstance(raw_id, str) or not raw_id.strip():
        raise fail(f'{where} has no "id"', '"id": a placeholder such as "y1"')
    step_id = raw_id.strip()
    step_id = step_id.lower() if is_placeholder(step_id) else step_id
    tool = item.get("tool")
    if not isinstance(tool, str) or not tool.strip():
        raise fail(f'{where} ({step_id}) has no "tool"', '"tool": the name of a registered tool')
    tool = tool.strip()
    raw_args = item.get("args", item.get("arguments"))
    if raw_args is None and "expression" in item:
        raw_args = {"expression": item["expression"]}
    args: dict[str, Arg] = {}
    positional: tuple[Arg, ...] = ()
    if raw_args is None:
        pass
    elif isinstance(raw_args, dict):
        args = {str(k): _json_arg(v, tool, str(k)) for k, v in raw_args.items()}
    elif isinstance(raw_args, list):
        positional = tuple(_json_arg(v, tool, "") for v in raw_args)
    elif isinstance(raw_args, str) and tool.casefold() == CALCULATOR:
        args = {"expression": expression_arg(raw_args)}
    else:
        raise fail(f'{where} ({step_id}) has "args" that are not an object', '"args": {"name": value, ...}')
    expression = args.get("expression")
    if tool.casefold() == CALCULATOR and isinstance(expression, Lit):
        args["expression"] = _without_own_result(expression, step_id)
    thought = item.get("thought", "")
    thought = thought if isinstance(thought, str) else json.dumps(thought)
    return Step(id=step_id, tool=tool, args=args, positional=positional, thought=thought.strip())


def _without_own_result(arg: Lit, step_id: str) -> Arg:
    """``y3 = y1 + y2`` or ``y1 + y2 = y3`` as step y3's expression: the equation names the step's own result (the
    text form's notation leaking into JSON); the expression is the other side. Any other ``=`` is left for the
    calculator to reject."""
    text = str(arg.value)
    left, eq, right = text.partition("=")
    if not eq or "=" in right:
        return arg
    if left.strip().lower() == step_id and right.strip():
        return expression_arg(right)
    if right.strip().lower() == step_id and left.strip():
        return expression_arg(left)
    return arg


def _json_arg(value: Any, tool: str, key: str) -> Arg:
    if isinstance(value, str):
        if tool.casefold() == CALCULATOR and key in ("expression", ""):
            return expression_arg(value)
        if is_placeholder(value):
            return Ref(value.lower())
    return Lit(value)


def _normalize_answer(text: str) -> str:
    text = text.strip().strip("*`\"'").strip()
    bare = text.rstrip(".").strip()
    if is_placeholder(bare):
        return bare.lower()
    return re.sub(r"\bY([0-9]+)\b", r"y\1", text)


# ---------------------------------------------------------------- text form


class _TextParser:
    def __init__(self, text: str):
        self.text = _strip_fence(text)

    def error(self, message: str, offset: int, expected: str) -> ChainParseError:
        return ChainParseError(message, text=self.text, offset=offset, expected=expected)

    def parse(self) -> Chain:
        text = self.text
        steps: list[Step] = []
        prose_start = pos = 0
        while (i := text.find("[", pos)) >= 0:
            found = self.bracket(i)
            if found is None:
                pos = i + 1
                continue
            step, end = found
            steps.append(replace(step, thought=text[prose_start:i].strip()))
            prose_start = pos = end
        rest = text[prose_start:]
        markers = list(_ANSWER.finditer(rest))
        marker = markers[-1] if markers else None
        if marker is None:
            if not steps:
                raise self.error(
                    "no chain found",
                    0,
                    "steps such as [3 * 12 = y1] or [tool(\"text\") -> y1], then 'Answer: y1'",
                )
            raise self.error("the chain has no answer", len(text), "'Answer: yN' after the last step")
        answer_at = prose_start + marker.end()
        answer = _normalize_answer(text[answer_at:].split("\n", 1)[0])
        if not answer:
            raise self.error("the answer is empty", answer_at, "the placeholder that holds the answer, e.g. y2")
        tail = rest[: marker.start()].strip()
        return Chain(steps=tuple(steps), answer=answer, tail=tail)

    # A bracket: ``[EXPR = yN]`` or ``[tool(args) -> yN]``; None when it is prose such as ``[1]``.
    def bracket(self, i: int) -> tuple[Step, int] | None:
        text = self.text
        j = self.ws(i + 1)
        func = _FUNC.match(text, j)
        if func:
            j = func.end()
        call_error: ChainParseError | None = None
        call = _CALL_START.match(text, j)
        if call and (func or call.group(1).lower() not in MATH_FUNCTIONS):
            try:
                step, end, _ = self.call(call)
                return step, end
            except ChainParseError as exc:
                call_error = exc
        line = ""
        if call_error is not None:
            # What this bracket holds: up to the first "]" after the point where the call stopped making sense.
            stop = text.find("]", call_error.offset)
            line = text[j : stop + 1 if stop >= 0 else len(text)].split("\n", 1)[0]
            if func or _ARROW_RESULT.search(line):
                raise call_error
        close = text.find("]", j)
        reopen = text.find("[", j)
        if reopen >= 0 and (close < 0 or reopen < close):
            close = -1  # another step starts before this one is closed
        content = text[j : close if close >= 0 else (reopen if reopen >= 0 else len(text))]
        match = _EXPR.fullmatch(content)
        if match is None and close < 0 and (result := _ANY_RESULT.search(content)):
            raise self.error("unclosed '['", j + result.end(), "']' to close the step")
        if match is None:
            if call_error is not None and _EQ_RESULT.search(line):
                raise call_error
            if func:
                raise self.error("malformed step", j, "a call such as [FUNC tool(arg) = y1]")
            return None
        if close < 0:
            raise self.error("unclosed '['", j + len(content), "']' to close the step")
        expr = match.group("expr").strip()
        if not expr:
            raise self.error("the step has no expression", j, "an expression before '=', e.g. [3 * 12 = y1]")
        step_id = match.group("id")
        if not is_placeholder(step_id):
            raise self.error(
                "the step's result is not a placeholder", j + match.start("id"), "a placeholder such as y1 after '='"
            )
        return calculator_step(step_id.lower(), expr), close + 1

    def call(self, start: re.Match[str]) -> tuple[Step, int, str]:
        text = self.text
        tool = start.group(1)
        positional: list[Arg] = []
        kwargs: dict[str, Arg] = {}
        k = self.ws(start.end())
        if text.startswith(")", k):
            k += 1
        else:
            while True:
                k = self.ws(k)
                kwarg = _KWARG.match(text, k)
                name = None
                if kwarg:
                    name = kwarg.group(1)
                    k = self.ws(kwarg.end())
                value_at = k
                value, k = self.concat(k)
                if tool.casefold() == CALCULATOR and isinstance(value, Lit) and isinstance(value.value, str):
                    if name in (None, "expression") and not positional:
                        value = expression_arg(value.value)
                if name is None:
                    if kwargs:
                        raise self.error(
                            "positional argument after a keyword argument",
                            value_at,
                            "keyword arguments (name=value) after all positional ones",
                        )
                    positional.append(value)
                elif name in kwargs:
                    raise self.error(
                        f"argument {name!r} given twice", kwarg.start() if kwarg else k, "each keyword argument once"
                    )
                else:
                    kwargs[name] = value
                k = self.ws(k)
                if text.startswith(",", k):
                    k += 1
                    continue
                if text.startswith(")", k):
                    k += 1
                    break
                raise self.error(f"unexpected text in the arguments of {tool}", k, "',' or ')'")
        k = self.ws(k)
        op = _OP.match(text, k)
        if not op:
            raise self.error(f"the call of {tool} has no result placeholder", k, "'->' and a placeholder, e.g. -> y1")
        k = self.ws(op.end())
        result = _PLACEHOLDER.match(text, k)
        if not result:
            raise self.error(f"the result of {tool} is not a placeholder", k, "a placeholder such as y1")
        k = self.ws(result.end())
        if not text.startswith("]", k):
            raise self.error("the step is not closed", k, "']' after the result placeholder")
        step = Step(id=result.group(0).lower(), tool=tool, args=kwargs, positional=tuple(positional))
        return step, k + 1, "=" if op.group(0) == "=" else "->"

    def concat(self, k: int) -> tuple[Arg, int]:
        parts: list[tuple[int, Arg]] = []
        value, end = self.term(k)
        parts.append((k, value))
        while True:
            plus = self.ws(end)
            if not self.text.startswith("+", plus):
                break
            at = self.ws(plus + 1)
            value, end = self.term(at)
            parts.append((at, value))
        if len(parts) == 1:
            return parts[0][1], end
        pieces: list[Lit | Ref] = []
        for at, part in parts:
            if isinstance(part, Ref) or (isinstance(part, Lit) and isinstance(part.value, str)):
                pieces.append(part)
            else:
                raise self.error(
                    "only strings and placeholders can be joined with '+'",
                    at,
                    "a quoted string or a placeholder (do arithmetic in a calculator step)",
                )
        return Concat(tuple(pieces)), end

    def term(self, k: int) -> tuple[Lit | Ref, int]:
        text = self.text
        if k >= len(text):
            raise self.error("the arguments end too early", k, "an argument and ')'")
        ch = text[k]
        if ch == '"':
            try:
                value, end = _DECODER.raw_decode(text, k)
            except json.JSONDecodeError:
                raise self.error("unterminated or malformed string", k, "a closing '\"'") from None
            return _string_arg(value), end
        if ch == "'":
            return self.single_quoted(k)
        if ch in "[{":
            try:
                value, end = _DECODER.raw_decode(text, k)
            except json.JSONDecodeError as exc:
                raise self.error(f"malformed JSON value ({exc.msg})", exc.pos, "a JSON list or object") from None
            except (RecursionError, ValueError):
                raise self.error("unreadable JSON value (too deep or too long)", k, "a short JSON value") from None
            return Lit(value), end
        number = _NUMBER.match(text, k)
        if number:
            raw = number.group(0)
            after = number.end()
            if after < len(text) and (text[after].isalnum() or text[after] == "_"):
                raise self.error("malformed number", k, "a number, a quoted string or a placeholder")
            try:
                return Lit(int(raw) if re.fullmatch(r"-?\d+", raw) else float(raw)), after
            except ValueError:  # more digits than Python converts
                raise self.error("number too long", k, "a number of at most a few thousand digits") from None
        word = _IDENT.match(text, k)
        if word:
            name = word.group(0)
            if name in _LITERAL_WORDS:
                return Lit(_LITERAL_WORDS[name]), word.end()
            if is_placeholder(name):
                return Ref(name.lower()), word.end()
            raise self.error(f"bare word {name!r}", k, 'a quoted string ("..."), a number, or a placeholder')
        raise self.error("unexpected character in the arguments", k, "a quoted string, a number or a placeholder")

    def single_quoted(self, k: int) -> tuple[Lit | Ref, int]:
        text = self.text
        out: list[str] = []
        i = k + 1
        escapes = {"n": "\n", "t": "\t", "'": "'", "\\": "\\", '"': '"'}
        while i < len(text):
            ch = text[i]
            if ch == "\\" and i + 1 < len(text):
                out.append(escapes.get(text[i + 1], "\\" + text[i + 1]))
                i += 2
                continue
            if ch == "'":
                return _string_arg("".join(out)), i + 1
            out.append(ch)
            i += 1
        raise self.error("unterminated string", k, 'a closing "\'"')

    def ws(self, k: int) -> int:
        match = _WS.match(self.text, k)
        return match.end() if match else k


def _string_arg(value: str) -> Lit | Ref:
    return Ref(value.lower()) if is_placeholder(value) else Lit(value)


def _strip_fence(text: str) -> str:
    stripped = text.strip()
    if stripped.startswith("```") and stripped.endswith("```") and len(stripped) > 6:
        body = stripped[3:-3]
        newline = body.find("\n")
        return body[newline + 1 :] if newline >= 0 else body
    return text


def parse_step_bracket(text: str) -> tuple[Step, int] | None:
    """Parse one bracket at the start of ``text`` (used by ``render`` to check a bracket reads back the same)."""
    return _TextParser(text).bracket(0) if text.startswith("[") else None
