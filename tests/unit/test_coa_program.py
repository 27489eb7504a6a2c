"""The program form of a chain (issue 14): parsed with ast, never executed; hostile and drifting input; round trips;
the streaming parser fed one token at a time."""

from __future__ import annotations

import time

import pytest
from conclave.tools.toolset import build_tools
from conclave.workflows.coa.model import Chain, Concat, Lit, Ref
from conclave.workflows.coa.parse import parse_chain
from conclave.workflows.coa.program import (
    ProgramError,
    ProgramStream,
    extract_program,
    looks_like_program,
    parse_program,
    render_program,
    repetition,
)
from conclave.workflows.coa.render import render, render_json
from conclave.workflows.coa.validate import validate

from conclave.settings import load_settings
from tests.conftest import HANG_GUARD_S

TOOLS = build_tools(load_settings())

PENS = """```python
# pens Tom buys cost 3 dollars each
pens_cost = 3 * 12
# change from a 50 dollar bill
change = 50 - pens_cost
answer = change
```"""


def test_a_program_becomes_the_chain_model() -> None:
    chain = parse_program(PENS, TOOLS)
    assert chain.ids == ["y1", "y2"] and chain.answer == "y2"
    assert chain.steps[0].args == {"expression": Lit("3 * 12")}
    assert chain.steps[1].args == {"expression": Lit("50 - y1")}
    assert chain.steps[0].thought == "pens Tom buys cost 3 dollars each"
    assert chain.names == {"y1": "pens_cost", "y2": "change"}
    assert validate(chain, TOOLS) == []
    # The same chain as the text form's: the model and everything after it are shared.
    assert chain == parse_chain(
        "pens Tom buys cost 3 dollars each [3 * 12 = y1] change from a 50 dollar bill [50 - y1 = y2] Answer: y2"
    )


def test_tool_calls_with_literals_names_concatenation_and_keywords() -> None:
    chain = parse_program(
        '```python\nadam = search_knowledge("what Adam combines")\n'
        'rms = search_knowledge(query="RMSprop of " + adam)\n'
        "answer = rms\n```",
        TOOLS,
    )
    assert chain.steps[0].tool == "search_knowledge" and chain.steps[0].positional == (Lit("what Adam combines"),)
    assert chain.steps[1].args == {"query": Concat((Lit("RMSprop of "), Ref("y1")))}
    assert validate(chain, TOOLS) == []


def test_print_calls_are_no_steps() -> None:
    # Qwen2.5-Coder writes a print after a lookup (three re-plans of the README's question did): it is no step.
    printed = (
        '```python\nadam = search_knowledge("what Adam combines")\nprint(adam)\n'
        'print("Adam combines momentum with RMSprop")\nanswer = adam\nprint(answer)\n```'
    )
    chain = parse_program(printed, TOOLS)
    assert [s.tool for s in chain.steps] == ["search_knowledge"] and chain.answer == "y1"
    assert validate(chain, TOOLS) == []
    # Only print: another bare call is still an error that goes back to the model.
    with pytest.raises(ProgramError, match="only assignments are allowed"):
        parse_program("```python\nx = 1\nsearch_knowledge('q')\nanswer = x\n```", TOOLS)


def test_answer_may_be_an_expression_and_placeholders_may_be_names() -> None:
    chain = parse_program("y1 = 48 / 2\nanswer = 48 + y1\n", TOOLS)
    assert chain.ids == ["y1", "y2"] and chain.answer == "y2"
    assert chain.steps[1].args == {"expression": Lit("48 + y1")}


def test_floor_division_unary_minus_and_functions() -> None:
    chain = parse_program("boxes = 50 // 8\nleft = -(3 - 5)\nroot = round(sqrt(boxes) * 2, 2)\nanswer = root", TOOLS)
    assert [s.args["expression"] for s in chain.steps] == [
        Lit("floor(50 / 8)"),
        Lit("-(3 - 5)"),
        Lit("round(sqrt(y1) * 2, 2)"),
    ]


@pytest.mark.parametrize(
    ("code", "needle"),
    [
        ("import math\nx = 1\nanswer = x", "imports are not allowed"),
        ("from math import sqrt\nx = 1\nanswer = x", "imports are not allowed"),
        ("x = math.sqrt(4)\nanswer = x", "write sqrt(...), not math.sqrt(...)"),
        ("x = a.b\nanswer = x", "attributes"),
        ("x = [1, 2][0]\nanswer = x", "subscripts"),
        ("f = lambda v: v\nanswer = f", "lambdas"),
        ("x = sum([i for i in range(3)])\nanswer = x", "not a tool"),
        ("x = [i for i in (1, 2)]\nanswer = x", "comprehensions"),
        ('x = search_knowledge(f"about {y}")\nanswer = x', "f-strings"),
        ("x = (y := 3)\nanswer = x", "the := operator"),
        ("x = 1\nx += 1\nanswer = x", "changes x in place; give the new quantity its own name instead: x_2 = x + 1"),
        ("x = [1]\nx[0] += 1\nanswer = x", "augmented assignments (x += 1) are not allowed"),
        ('x = search_knowledge("q", top=3)\nanswer = x', "has no parameter 'top'"),
        ('x = search_knowledge("q", collection="secrets")\nanswer = x', "has no parameter 'collection'"),
        ("x = 1 if 2 else 3\nanswer = x", "conditional expressions"),
        ("a = b = 3\nanswer = a", "assign to one plain name"),
        ("x, y = 1, 2\nanswer = x", "assign to one plain name"),
        ("for i in range(3):\n    x = i\nanswer = x", "loops are not allowed"),
        ("def f():\n    return 1\nanswer = 1", "function definitions"),
        ("x = 1 < 2\nanswer = x", "comparisons"),
        ("x = 3\nx = 4\nanswer = x", "'x' is assigned twice"),
        ("x = 3 * z\nanswer = x", "'z' is used but never assigned"),
        ("x = 3 * 4", "no `answer = ...` line"),
        ('x = search_knowledge("a") * 2\nanswer = x', "a tool call must be the whole right-hand side"),
        ('x = "seven" * 2\nanswer = x', "arithmetic takes numbers"),
        ("x = exec('1')\nanswer = x", "'exec' is not a tool"),
        ("x = __import__('os')\nanswer = x", "'__import__' is not a tool"),
        ("len(1)\nanswer = 1", "only assignments are allowed"),
        ("x = 2²\nanswer = x", "not valid Python"),
        ("x = ①\nanswer = x", "not valid Python"),
    ],
)
def test_everything_outside_the_whitelist_is_an_error_for_the_model(code: str, needle: str) -> None:
    with pytest.raises(ProgramError) as info:
        parse_program(code, TOOLS)
    assert needle in info.value.message, info.value.message


def test_several_faults_are_reported_at_once() -> None:
    with pytest.raises(ProgramError) as info:
        parse_program("import os\nx = a.b\ny = 3\ny = 4\n", TOOLS)
    assert len(info.value.errors) == 5, info.value.errors  # four faults, then the layout rule once
    assert info.value.errors[-1].startswith("the rule: ")


def test_a_forward_reference_and_a_cycle_are_left_to_the_validator() -> None:
    chain = parse_program("a = b + 1\nb = a * 2\nanswer = b", TOOLS)
    codes = {e.code for e in validate(chain, TOOLS)}
    assert codes & {"undefined_ref", "used_before_defined", "cycle"}, codes


def test_hostile_sizes_are_refused_fast() -> None:
    started = time.monotonic()
    many = "\n".join(f"v{i} = {i} + 1" for i in range(10_000)) + "\nanswer = v1"
    with pytest.raises(ProgramError, match="characters long|more than 64 statements"):
        parse_program(many, TOOLS)
    with pytest.raises(ProgramError, match="longer than 1000 characters"):
        parse_program("x = " + "1 + " * 25_000 + "1\nanswer = x", TOOLS)
    with pytest.raises(ProgramError, match="nested too deeply|cannot be read|not valid Python"):
        parse_program("x = " + "(" * 300 + "1" + ")" * 300 + "\nanswer = x", TOOLS)
    with pytest.raises(ProgramError, match="nested too deeply"):
        parse_program("x = " + "-" * 60 + "1\nanswer = x", TOOLS)
    with pytest.raises(ProgramError, match="nested too deeply"):
        parse_program("x = " + "+".join(["1"] * 100) + "\nanswer = x", TOOLS)  # a left-deep sum of 100 terms
    assert time.monotonic() - started < HANG_GUARD_S


@pytest.mark.parametrize(
    "text",
    [
        PENS.replace("\n", "\r\n"),
        PENS.replace("pens_cost = 3", "pens_cost\t= 3"),
        PENS.replace("```python\n", "```python\n```python\n"),  # a doubled opening fence
        PENS.rsplit("```", 1)[0],  # the closing fence missing (stopped at it, or cut off)
        "Here is the program:\n\n" + PENS + "\n\nThe answer is the change.",  # prose before and after
        PENS.replace("```python", "```py"),
        PENS.replace("```python\n", "").replace("\n```", ""),  # no fences at all
        "Let me think.\n" + PENS.replace("```python\n", "").replace("\n```", "") + "\nSo that is it.",
        "\n".join("    " + line for line in PENS.split("\n")),  # indented as a whole
    ],
)
def test_drifting_layout_reads_the_same(text: str) -> None:
    assert parse_program(text, TOOLS) == parse_program(PENS, TOOLS)


def test_a_stray_indent_is_read_flush_left_but_a_block_is_still_refused() -> None:
    # Qwen2.5-Coder wrote this for a SQuAD question: one assignment indented by a space after a comment.
    stray = (
        '```python\n# find the AFC champion from the passage\n AFC_champion = search_knowledge("AFC champion")\n'
        "answer = AFC_champion\n```"
    )
    chain = parse_program(stray, TOOLS)
    assert [s.tool for s in chain.steps] == ["search_knowledge"] and chain.answer == "y1"
    assert chain.steps[0].thought == "find the AFC champion from the passage"
    with pytest.raises(ProgramError, match="loops are not allowed"):
        parse_program("for i in range(3):\n  x = i\nanswer = x", TOOLS)
    with pytest.raises(ProgramError, match="not valid Python at line 2"):
        parse_program("x = 1\n  y = (2\nanswer = x", TOOLS)


def test_an_answer_written_as_a_sentence_answers_with_its_quantity() -> None:
    # Qwen2.5-Coder wrote this for a HotpotQA question, three times over, when it was an error.
    sentence = (
        '```python\nname = search_knowledge("Aladin stage name")\nrole = search_knowledge("Aladin consultant")\n'
        'answer = name + " was known by his stage name Aladin"\n```'
    )
    chain = parse_program(sentence, TOOLS)
    assert chain.answer == "y1" and [s.tool for s in chain.steps] == ["search_knowledge"] * 2
    assert validate(chain, TOOLS) == []
    # Text alone, or arithmetic, is no sentence around a quantity.
    with pytest.raises(ProgramError, match="arithmetic takes numbers"):
        parse_program('x = 3\nanswer = "x is " + "three"', TOOLS)
    assert parse_program("x = 3\nanswer = x + 2", TOOLS).steps[-1].args == {"expression": Lit("y1 + 2")}


def test_a_quantity_formatted_for_display_is_the_quantity() -> None:
    """Qwen2.5-Coder ends a right TAT-QA computation with a display format (``x = f"{x:.2f}%"`` or ``answer =
    f"{x:.2f}%"``): the quantity is the answer; the format is the answer's to write, and no second assignment."""
    base = "a = 3\nb = 4\nchange = (b - a) / a * 100\n"
    for tail in (
        'change = f"{change:.2f}%"\nanswer = change',
        'answer = f"{change:.2f}%"',
        "answer = f'${change} million'",
    ):
        chain = parse_program(base + tail, TOOLS)
        assert chain.answer == "y3" and len(chain.steps) == 3 and validate(chain, TOOLS) == []
    # The stream's loop check does not take the display format for a loop.
    assert repetition(base + 'change = f"{change:.2f}%"\n') is None
    assert repetition(base + "change = change * 2\n") == "'change' is assigned again"
    # Anything more than one plain quantity in the string is still refused.
    with pytest.raises(ProgramError, match="f-strings"):
        parse_program(base + 'answer = f"{a} to {b}"', TOOLS)
    with pytest.raises(ProgramError, match="f-strings"):
        parse_program(base + 'answer = f"{change * 2}"', TOOLS)


def test_salvage_keeps_a_programs_own_searches_only_when_they_stand_alone() -> None:
    from conclave.workflows.coa.program import salvage_lookups

    twice = (
        '```python\nrfsi = search_knowledge("Roud index")\nrhyme = search_knowledge("Little Girls")\n'
        "rfsi = rfsi * rhyme\nanswer = rfsi\n```"
    )
    chain = salvage_lookups(twice, TOOLS)
    assert (
        chain is not None
        and chain.answer == "y2"
        and [s.positional for s in chain.steps] == [(Lit("Roud index"),), (Lit("Little Girls"),)]
    )
    assert validate(chain, TOOLS) == []
    # A search that needs a dropped line, or no search at all: nothing to keep.
    assert (
        salvage_lookups(
            'x = search_knowledge("a")\nz = x.split()[0]\ny = search_knowledge("b " + z)\nanswer = y', TOOLS
        )
        is None
    )
    assert salvage_lookups("x = 3\nanswer = x", TOOLS) is None


def test_detection_of_the_form() -> None:
    assert looks_like_program(PENS) and looks_like_program("x = 3 * 4\nanswer = x")
    assert not looks_like_program('{"steps": [], "answer": "y1"}')
    assert not looks_like_program("Tom pays [3 * 12 = y1]. Answer: y1")
    assert extract_program("no code here") == "no code here"


def test_round_trips_program_chain_json_text() -> None:
    chain = parse_program(PENS, TOOLS)
    again = parse_program(render_program(chain), TOOLS)
    assert again == chain and again.names == chain.names
    assert parse_chain(render_json(chain)) == chain
    assert parse_chain(render(chain)) == chain
    from_text = parse_chain(
        '[search_knowledge("capital of " + "Australia") -> y1] [3 * 12 = y2] [y2 - 1 = y3] Answer: y3'
    )
    assert parse_program(render_program(from_text), TOOLS) == from_text  # names default to the placeholders
    assert "y1 = search_knowledge('capital of ' + 'Australia')" in render_program(from_text)


def test_the_stream_fed_a_token_at_a_time_gives_the_same_chain() -> None:
    text = PENS.replace("answer = change", 'fact = search_knowledge("pens and " + change)\nanswer = fact')
    stream = ProgramStream(TOOLS)
    seen: list[tuple[int, str]] = []
    for i in range(len(text)):
        for step in stream.feed(text[i]):
            seen.append((i, step.id))
    whole = parse_program(text, TOOLS)
    assert stream.finish() == whole
    assert [sid for _, sid in seen] == whole.ids
    # Each step is handed over as soon as its line is complete, long before the end of the text.
    assert seen[0][0] < text.index("change = 50")
    assert stream.closed


def test_the_stream_stops_at_the_closing_fence() -> None:
    stream = ProgramStream(TOOLS)
    stream.feed(PENS)
    assert stream.closed
    assert stream.feed("\nextra = 1\n") == []
    assert stream.finish().ids == ["y1", "y2"]


def test_nothing_is_ever_executed(tmp_path: pytest.TempPathFactory) -> None:  # type: ignore[name-defined]
    marker = tmp_path / "pwned"  # type: ignore[operator]
    for code in (
        f"x = __import__('pathlib').Path({str(marker)!r}).touch()\nanswer = x",
        f"x = open({str(marker)!r}, 'w')\nanswer = x",
    ):
        with pytest.raises(ProgramError):
            parse_program(code, TOOLS)
    assert not marker.exists()  # type: ignore[union-attr]


def test_chain_names_do_not_change_equality() -> None:
    plain = Chain(steps=(), answer="y1")
    named = Chain(steps=(), answer="y1", names={"y1": "total"})
    assert plain == named
