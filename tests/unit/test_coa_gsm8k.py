"""GSM8K training answers converted into chains (issue 8, item 3): the converter alone, then on real data."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from conclave.tools.calculator import evaluate
from conclave.workflows.coa import (
    Chain,
    GSM8KConversionError,
    calculator_step,
    convert_gsm8k_answer,
    gsm8k_gold,
    parse_chain,
    reify,
    render,
    render_json,
    validate,
)
from langchain_core.tools import StructuredTool


def _calculate(expression: str) -> str:
    """Evaluate an arithmetic expression exactly."""
    return evaluate(expression).text


TOOLS = {"calculator": StructuredTool.from_function(_calculate, name="calculator")}

NATALIA_Q = (
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May?"
)
NATALIA_A = (
    "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
    "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72"
)

CASES = [
    pytest.param(
        NATALIA_Q,
        NATALIA_A,
        Chain(
            steps=(
                calculator_step("y1", "48 / 2", "Natalia sold y1 clips in May."),
                calculator_step("y2", "48 + y1", "Natalia sold y2 clips altogether in April and May."),
            ),
            answer="y2",
        ),
        id="natalia",
    ),
    pytest.param(
        "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting.",
        "Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute.\n"
        "Working 50 minutes, she earned 0.2 x 50 = $<<0.2*50=10>>10.\n#### 10",
        Chain(
            steps=(
                calculator_step("y1", "12 / 60", "Weng earns $y1 per minute."),
                calculator_step("y2", "y1 * 50", "Working 50 minutes, she earned $y2."),
            ),
            answer="y2",
        ),
        id="dollars-and-x-for-times",
    ),
    pytest.param(
        "Two friends.",
        "First 2+2=<<2+2=4>>4 cakes.\nThen 8/2=<<8/2=4>>4 pies.\nSo 4*3=<<4*3=12>>12 and 40+14=<<40+14=54>>54.\n"
        "#### 54",
        Chain(
            steps=(
                calculator_step("y1", "2 + 2", "First y1 cakes."),
                calculator_step("y2", "8 / 2", "Then y2 pies."),
                calculator_step("y3", "y2 * 3", "So y3 and"),
                calculator_step("y4", "40 + 14", "y4."),
            ),
            answer="y4",
        ),
        id="most-recent-result-whole-numbers-only-two-notes-in-a-line",
    ),
    pytest.param(
        "He has 4 apples and buys 2 bags.",
        "He buys 2*2=<<2*2=4>>4 more.\nIn all 4+4=<<4+4=8>>8 apples.\n#### 8",
        Chain(
            steps=(
                calculator_step("y1", "2 * 2", "He buys y1 more."),
                calculator_step("y2", "4 + 4", "In all y2 apples."),
            ),
            answer="y2",
        ),
        id="numbers-the-question-states-stay-literal",
    ),
    pytest.param(
        "Split 10 dollars three ways.",
        "Each gets 10/3 = $<<10/3=3.33>>3.33.\nTwo get 3.33*2=<<3.33*2=6.66>>6.66.\n#### 6.66",
        Chain(
            steps=(
                calculator_step("y1", "round(10 / 3, 2)", "Each gets $y1."),
                calculator_step("y2", "y1 * 2", "Two get y2."),
            ),
            answer="y2",
        ),
        id="rounded-note-is-rounded-in-the-chain",
    ),
    pytest.param(
        "Shopping.",
        "She spent 5*7=$<<5*7=35>>35 on shorts.\nShe had 55-35 = $<<55-35=20>>20 left.\n"
        "She bought 4 tops for $20 so 20/4 = $5\n#### 5",
        Chain(
            steps=(
                calculator_step("y1", "5 * 7", "She spent $y1 on shorts."),
                calculator_step("y2", "55 - y1", "She had $y2 left."),
                calculator_step("y3", "y2 / 4", "She bought 4 tops for $20 so $y3"),
            ),
            answer="y3",
        ),
        id="arithmetic-written-without-a-note",
    ),
]


@pytest.mark.parametrize(("question", "answer", "expected"), CASES)
async def test_convert(question: str, answer: str, expected: Chain) -> None:
    chain = convert_gsm8k_answer(question, answer)
    assert chain == expected
    assert validate(chain, TOOLS) == []
    reified = await reify(chain, TOOLS)
    assert Fraction(Decimal(reified.answer_value or "nan")) == Fraction(Decimal(gsm8k_gold(answer)))


def test_both_forms_read_back() -> None:
    chain = convert_gsm8k_answer(NATALIA_Q, NATALIA_A)
    assert render(chain) == (
        "Natalia sold y1 clips in May. [48 / 2 = y1] Natalia sold y2 clips altogether in April and May. "
        "[48 + y1 = y2]\nAnswer: y2"
    )
    assert parse_chain(render(chain)) == Chain(
        steps=(
            calculator_step("y1", "48 / 2", "Natalia sold y1 clips in May."),
            calculator_step("y2", "48 + y1", "Natalia sold y2 clips altogether in April and May."),
        ),
        answer="y2",
    )
    assert parse_chain(render_json(chain)) == chain


ERRORS = [
    pytest.param("He has 3 apples.", "no final '#### <number>' line", id="no-final-line"),
    pytest.param("He has 3 apples.\n#### three", "is not a number", id="final-not-a-number"),
    pytest.param("He has 3 apples.\n#### 3", "has no calculator notes", id="no-notes"),
    pytest.param("So <<a+b=3>>3.\n#### 3", "is not plain arithmetic", id="note-not-arithmetic"),
    pytest.param("So <<2+2>>4.\n#### 4", "is not of the form", id="note-without-value"),
    pytest.param("So 2+2=<<2+2=5>>5.\n#### 5", "is wrong: 2+2 is 4", id="wrong-note"),
    pytest.param(
        "So 2+2=<<2+2=4>>4, and 4 less 1 is 3.\n#### 3",
        "no calculator note yields the final answer 3",
        id="answer-from-prose",
    ),
]


@pytest.mark.parametrize(("answer", "message"), ERRORS)
def test_unconvertible_answers_raise_clear_errors(answer: str, message: str) -> None:
    with pytest.raises(GSM8KConversionError, match=message.replace("+", r"\+")):
        convert_gsm8k_answer("A question.", answer)


def test_unchecked_conversion_keeps_wrong_notes() -> None:
    chain = convert_gsm8k_answer("Q.", "So 2+2=<<2+2=5>>5.\n#### 5", check=False)
    assert chain.steps[0] == calculator_step("y1", "2 + 2", "So y1.")


def converted_items(lines: list[str]) -> Iterator[tuple[int, dict[str, Any], Chain]]:
    """(index, item, chain) of every training line whose answer converts."""
    for index, line in enumerate(lines):
        item = json.loads(line)
        try:
            yield index, item, convert_gsm8k_answer(item["question"], item["answer"])
        except GSM8KConversionError:
            continue


async def test_first_200_training_items(shared_data: Path) -> None:
    """Most training answers convert, and every converted chain reifies to the gold answer with the calculator."""
    lines = (shared_data / "gsm8k" / "train.jsonl").read_text(encoding="utf-8").splitlines()[:200]
    converted = correct = 0
    wrong: list[int] = []
    for index, item, chain in converted_items(lines):
        converted += 1
        assert parse_chain(render(chain)) == chain
        assert parse_chain(render_json(chain)) == chain
        reified = await reify(chain, TOOLS)
        gold = Fraction(Decimal(gsm8k_gold(item["answer"])))
        if reified.answer_value is not None and Fraction(Decimal(reified.answer_value)) == gold:
            correct += 1
        else:
            wrong.append(index)
    assert converted >= 185, f"only {converted} of 200 converted"
    assert correct == converted, f"items {wrong} converted but reified to a different answer"


@pytest.mark.slow
async def test_every_training_chain_in_program_form_reifies_to_gold(shared_data: Path) -> None:
    """Issue 14: the converted training chains written as programs parse back to the same chains, and every one of
    them reifies to its gold answer (7,202 of the 7,473 items on the full train split)."""
    from conclave.workflows.coa.program import parse_program, render_program

    lines = (shared_data / "gsm8k" / "train.jsonl").read_text(encoding="utf-8").splitlines()
    converted = 0
    wrong: list[int] = []
    for index, item, chain in converted_items(lines):
        converted += 1
        program = parse_program(render_program(chain), TOOLS)
        # The same steps (expressions re-spaced by Python's unparser), and a stable round trip from then on.
        assert (program.ids, program.answer, [s.tool for s in program.steps]) == (
            chain.ids,
            chain.answer,
            [s.tool for s in chain.steps],
        ), index
        assert parse_program(render_program(program), TOOLS) == program, index
        reified = await reify(program, TOOLS)
        gold = Fraction(Decimal(gsm8k_gold(item["answer"])))
        if reified.answer_value is None or Fraction(Decimal(reified.answer_value)) != gold:
            wrong.append(index)
    assert converted >= 0.96 * len(lines), f"only {converted} of {len(lines)} converted"
    assert not wrong, f"{len(wrong)} program-form chains reified to a different answer, e.g. items {wrong[:10]}"
