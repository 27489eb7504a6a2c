"""The scale of a computed answer (issue 27, item 5): carried from the values read through the chain's arithmetic."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from conclave.workflows.coa.model import Chain, Lit, Ref, Step
from conclave.workflows.coa.scale import answer_scale, expression_scale


@pytest.mark.parametrize(
    ("expression", "scale"),
    [
        ("y1 + y2", "million"),  # a sum of millions
        ("(y1 + y2) / 2", "million"),  # an average
        ("y1 - 5", "million"),
        ("y1 / y2", ""),  # a ratio of two amounts in millions is a plain number
        ("(y1 - y2) / y2 * 100", ""),  # a percentage change, before the question says "percent"
        ("y1 * y2", None),  # millions times millions: no scale to claim
        ("y1 + y3", None),  # millions plus thousands
        ("round(y1, 2)", "million"),
        ("y1 +", None),  # not arithmetic
    ],
)
def test_expression_scale(expression: str, scale: str | None) -> None:
    assert expression_scale(expression, {"y1": "million", "y2": "million", "y3": "thousand"}) == scale


def read(text: str, scale: str = "", unit: str = "") -> SimpleNamespace:
    return SimpleNamespace(ok=True, value=SimpleNamespace(text=text, scale=scale, unit=unit))


def chain(expression: str) -> Chain:
    return Chain(
        steps=(
            Step(id="y1", tool="read_value", args={"query": Lit("revenue 2019")}),
            Step(id="y2", tool="read_value", args={"query": Lit("revenue 2018")}),
            Step(id="y3", tool="calculator", args={"expression": Lit(expression)}),
        ),
        answer="y3",
    )


def test_the_answer_carries_the_scale_of_what_it_read() -> None:
    results = {"y1": read("879", "million"), "y2": read("850", "million")}
    assert answer_scale(chain("y1 + y2"), results, "What is the sum of the revenues?") == "million"
    assert answer_scale(chain("(y1 - y2) / y2 * 100"), results, "What is the percentage change?") == "percent"
    assert answer_scale(chain("y1 / y2"), results, "What is the ratio?") is None  # a plain number: nothing to add


def test_percentages_read_stay_percentages_and_arithmetic_alone_has_no_scale() -> None:
    results = {"y1": read("3.7", unit="%"), "y2": read("3.4", unit="%")}
    assert answer_scale(chain("y1 - y2"), results, "By how much did the rate change?") == "percent"
    # No value read from a document: a GSM8K answer is left as it is, whatever the question's words.
    plain = Chain(steps=(Step(id="y1", tool="calculator", args={"expression": Lit("3 * 12")}),), answer="y1")
    assert answer_scale(plain, {}, "What percentage of pens did he buy?") is None
    passthrough = Chain(
        steps=(*chain("y1 + y2").steps[:1], Step(id="y2", tool="calculator", args={"expression": Ref("y1")})),
        answer="y2",
    )
    assert answer_scale(passthrough, {"y1": read("5", "thousand")}, "How much?") == "thousand"
