"""Chains back to text: the text form (round-trips with ``parse_chain``) and the JSON form."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from conclave.workflows.coa.model import CALCULATOR, PLACEHOLDER_RE, Arg, Chain, Concat, Lit, Ref, Step
from conclave.workflows.coa.parse import MATH_FUNCTIONS, parse_step_bracket

__all__ = ["render", "render_json", "chain_to_dict"]

_NO_SPACE_BEFORE = tuple(".,;:!?)")


def render(chain: Chain) -> str:
    """The chain in the text form; ``parse_chain(render(c)) == c``."""
    return _render(chain, None)


def render_filled(chain: Chain, values: Mapping[str, str]) -> str:
    """The text form with known placeholder values written in (a reified chain, for people and the critic)."""
    return _render(chain, values)


def _render(chain: Chain, values: Mapping[str, str] | None) -> str:
    pieces: list[str] = []
    for step in chain.steps:
        call = _render_step(step, values)
        thought = _fill(step.thought, values)
        pieces.append(f"{thought} {call}" if thought else call)
    if chain.tail:
        pieces.append(_fill(chain.tail, values))
    out = ""
    for piece in pieces:
        if out and not piece.startswith(_NO_SPACE_BEFORE):
            out += " "
        out += piece
    answer = f"Answer: {_fill(chain.answer, values)}"
    return f"{out}\n{answer}" if out else answer


def _fill(text: str, values: Mapping[str, str] | None) -> str:
    if not values:
        return text
    return PLACEHOLDER_RE.sub(lambda m: values.get(m.group(0), m.group(0)), text)


def _render_step(step: Step, values: Mapping[str, str] | None) -> str:
    result = values.get(step.id, step.id) if values else step.id
    expression = _bracket_expression(step)
    if expression is not None:
        return f"[{_fill(expression, values)} = {result}]"
    args = [_render_arg(arg, values) for arg in step.positional]
    args += [f"{name}={_render_arg(arg, values)}" for name, arg in step.args.items()]
    # "FUNC" keeps a tool that shares a name with a calculator function (max, round) a tool call.
    prefix = "FUNC " if step.tool.lower() in MATH_FUNCTIONS else ""
    return f"[{prefix}{step.tool}({', '.join(args)}) -> {result}]"


def _bracket_expression(step: Step) -> str | None:
    """The expression when the step can be written as ``[EXPR = yN]`` and read back unchanged."""
    if step.tool != CALCULATOR or step.positional or set(step.args) != {"expression"}:
        return None
    arg = step.args["expression"]
    if isinstance(arg, Ref):
        expression = arg.id
    elif isinstance(arg, Lit) and isinstance(arg.value, str):
        expression = arg.value
    else:
        return None
    if "[" in expression or "]" in expression:
        return None
    try:
        parsed = parse_step_bracket(f"[{expression} = {step.id}]")
    except ValueError:
        return None
    if parsed is None or parsed[0] != replace(step, thought=""):
        return None
    return expression


def _render_arg(arg: Arg, values: Mapping[str, str] | None) -> str:
    if isinstance(arg, Ref):
        if values and arg.id in values:
            return _value_literal(values[arg.id])
        return arg.id
    if isinstance(arg, Concat):
        return " + ".join(_render_arg(part, values) for part in arg.parts)
    return json.dumps(_fill_value(arg.value, values), ensure_ascii=False)


def _fill_value(value: Any, values: Mapping[str, str] | None) -> Any:
    if not values:
        return value
    if isinstance(value, str):
        return _fill(value, values)
    if isinstance(value, list):
        return [_fill_value(v, values) for v in value]
    if isinstance(value, dict):
        return {k: _fill_value(v, values) for k, v in value.items()}
    return value


def _value_literal(text: str) -> str:
    if re.fullmatch(r"-?\d+(?:\.\d+)?", text):
        return text
    return json.dumps(text, ensure_ascii=False)


# ---------------------------------------------------------------- JSON form


def chain_to_dict(chain: Chain) -> dict[str, Any]:
    """The JSON form as a dict; raises ValueError for what the JSON form cannot hold (see ``render_json``)."""
    steps = []
    for step in chain.steps:
        if step.positional and step.args:
            raise ValueError(
                f"step {step.id} mixes positional and keyword arguments; bind them to names first "
                "(workflows.coa.bind_chain(chain, tools))"
            )
        args: Any = (
            [_json_value(a, step.id) for a in step.positional]
            if step.positional
            else {name: _json_value(a, step.id) for name, a in step.args.items()}
        )
        steps.append({"thought": step.thought, "id": step.id, "tool": step.tool, "args": args})
    return {"steps": steps, "answer": chain.answer}


def render_json(chain: Chain, *, indent: int | None = None) -> str:
    """The chain in the JSON form. ``+`` concatenations become one string with the placeholders in it."""
    return json.dumps(chain_to_dict(chain), ensure_ascii=False, indent=indent)


def _json_value(arg: Arg, step_id: str) -> Any:
    if isinstance(arg, Ref):
        return arg.id
    if isinstance(arg, Lit):
        return arg.value
    text = ""
    spans: list[tuple[int, int]] = []
    for part in arg.parts:
        piece = part.id if isinstance(part, Ref) else str(part.value)
        if isinstance(part, Ref):
            spans.append((len(text), len(text) + len(piece)))
        text += piece
    for begin, finish in spans:
        # A placeholder glued to a word ("abc" + y1 -> "abcy1") would stop being a reference.
        if _is_word_char(text[begin - 1 : begin]) or _is_word_char(text[finish : finish + 1]):
            raise ValueError(
                f"step {step_id}: {render_arg_text(arg)} cannot be written as one JSON string "
                "(a placeholder would touch a word); put a space or punctuation next to it"
            )
    return text


def _is_word_char(ch: str) -> bool:
    return bool(ch) and (ch.isalnum() or ch == "_")


def render_arg_text(arg: Arg) -> str:
    """One argument as the text form writes it."""
    return _render_arg(arg, None)
