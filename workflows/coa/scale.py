"""The scale of a computed answer: what a chain's values were counted in, carried through its arithmetic.

Values read from the documents carry a scale (``thousand``, ``million``, ``billion``, stated once above a table) or
are percentages. A sum, difference or average of values in millions is in millions; a ratio of two of them is a
plain number; a plain ratio times 100 is a percentage when the question asks for one. Without a scale an answer of
"1729" to "operating revenues, in millions" is a thousand-fold wrong number to anyone who reads it, and to TAT-QA's
metric, which compares value and scale together.

Scales: ``""`` (a plain number), a scale word, ``"percent"``; ``None`` where the chain mixes them in a way that has no
scale of its own (millions times millions), so none is claimed.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from typing import Any

from conclave.workflows.coa.model import CALCULATOR, Lit, Ref

__all__ = ["answer_scale", "expression_scale"]

_PERCENT_QUESTION = re.compile(r"\b(percent(age)?|per ?cent)\b|%", re.I)


def expression_scale(expression: str, scales: Mapping[str, str | None]) -> str | None:
    """The scale of a calculator expression whose placeholders (``y1``…) have ``scales``; None when it has none."""
    try:
        tree = ast.parse(expression.replace("^", "**"), mode="eval")
    except SyntaxError:
        return None
    return _scale(tree.body, scales)


def _scale(node: ast.AST, scales: Mapping[str, str | None]) -> str | None:
    if isinstance(node, ast.Constant):
        return ""
    if isinstance(node, ast.Name):
        return scales.get(node.id.lower(), "")
    if isinstance(node, ast.UnaryOp):
        return _scale(node.operand, scales)
    if isinstance(node, ast.Call):
        # round, min, max, abs, ...: the scale of their arguments when those agree.
        found = {_scale(arg, scales) for arg in node.args if not isinstance(arg, ast.Constant)}
        return found.pop() if len(found) == 1 else ("" if not found else None)
    if not isinstance(node, ast.BinOp):
        return None
    left, right = _scale(node.left, scales), _scale(node.right, scales)
    if left is None or right is None:
        return None
    if isinstance(node.op, ast.Add | ast.Sub):
        if left == right or not right:
            return left
        return right if not left else None
    if isinstance(node.op, ast.Mult):
        return left or right if not (left and right) else None
    if isinstance(node.op, ast.Div):
        if not right:
            return left
        return "" if left == right else None
    return None if left or right else ""


def answer_scale(chain: Any, results: Mapping[str, Any], question: str) -> str | None:
    """The scale of the chain's answer, from the scales of the values its ``read_value`` steps read; None when the
    chain read nothing with a scale and the question asks for no percentage (nothing to say), or it cannot tell."""
    scales: dict[str, str | None] = {}
    read_any = False
    for step in chain.steps:
        result = results.get(step.id)
        found = getattr(result, "value", None) if result is not None else None
        if step.tool == "read_value":
            read_any = True
            unit, scale = getattr(found, "unit", ""), getattr(found, "scale", "")
            scales[step.id] = "percent" if unit == "%" else (scale or "")
        elif step.tool == CALCULATOR:
            arg = step.args.get("expression")
            if isinstance(arg, Ref):
                scales[step.id] = scales.get(arg.id)
            elif isinstance(arg, Lit) and isinstance(arg.value, str):
                scales[step.id] = expression_scale(arg.value, scales)
            else:
                scales[step.id] = None
        else:
            scales[step.id] = None
    if not read_any:
        return None
    scale = scales.get(chain.answer)
    if scale == "" and _PERCENT_QUESTION.search(question):
        return "percent"  # a ratio the chain already multiplied by 100, asked for as a percentage
    return scale or None
