"""``validate``: every mechanical fault of a chain is caught with a message the model can act on verbatim."""

from __future__ import annotations

import json

import pytest
from conclave.tools.calculator import evaluate
from conclave.workflows.coa import (
    Chain,
    ChainError,
    Lit,
    Ref,
    Step,
    bind_chain,
    calculator_step,
    find_tool,
    format_errors,
    parse_chain,
    validate,
)
from langchain_core.tools import BaseTool, StructuredTool, tool


def _calculate(expression: str) -> str:
    """Evaluate an arithmetic expression exactly."""
    return evaluate(expression).text


@tool
def search_knowledge(query: str, k: int = 4) -> str:
    """Search the knowledge collection."""
    return f"passages for {query} ({k})"


@tool
def convert(value: float, unit: str, precise: bool = False) -> str:
    """Convert a value to a unit."""
    return f"{value} {unit}"


TOOLS: dict[str, BaseTool] = {
    "calculator": StructuredTool.from_function(_calculate, name="calculator"),
    "search_knowledge": search_knowledge,
    "convert": convert,
}


def codes(errors: list[ChainError]) -> list[str]:
    return [e.code for e in errors]


CASES = [
    pytest.param("[3 * 12 = y1] [50 - y1 = y2] Answer: y2", [], None, id="valid"),
    pytest.param(
        "Nothing to compute. Answer: 14",
        ["empty_chain", "answer_no_placeholder"],
        "the chain has no steps",
        id="empty-chain",
    ),
    pytest.param(
        "[3 * 12 = y1] [50 - y3 = y2] Answer: y2",
        ["undefined_placeholder"],
        "step y2 uses y3, which no step defines; compute y3 in an earlier step or use a defined placeholder "
        "(defined: y1, y2)",
        id="undefined-placeholder",
    ),
    pytest.param(
        "[y2 * 3 = y1] [4 + 1 = y2] Answer: y1",
        ["used_before_defined"],
        "step y1 uses y2 before it is defined; define y2 in an earlier step or reorder",
        id="used-before-defined",
    ),
    pytest.param(
        "[y2 * 3 = y1] [y1 + 1 = y2] Answer: y2",
        ["cycle"],
        "steps y1, y2 form a cycle (y1 uses y2; y2 uses y1)",
        id="cycle-of-two",
    ),
    pytest.param(
        "[y3 + 1 = y1] [y1 + 1 = y2] [y2 + 1 = y3] [2 = y4] Answer: y4",
        ["cycle"],
        "steps y1, y2, y3 form a cycle",
        id="cycle-of-three",
    ),
    pytest.param("[y1 + 1 = y1] Answer: y1", ["cycle"], "step y1 uses its own result y1", id="self-reference"),
    pytest.param(
        "[3 * 12 = y1] [y1 + 2 = y1] Answer: y1",
        ["cycle", "duplicate_id"],
        "y1 is defined twice (steps 1 and 2); give each step its own placeholder (the next free one is y2)",
        id="duplicate-id",
    ),
    pytest.param(
        '[serch("capital") -> y1] Answer: y1',
        ["unknown_tool"],
        "step y1 calls unknown tool 'serch'; available tools: calculator, search_knowledge, convert",
        id="unknown-tool",
    ),
    pytest.param(
        '[search_knowledge("capital", k="many") -> y1] Answer: y1',
        ["invalid_arg"],
        "step y1: argument 'k' of search_knowledge is invalid",
        id="wrong-type",
    ),
    pytest.param(
        "[search_knowledge(k=2) -> y1] Answer: y1",
        ["missing_arg"],
        "step y1: search_knowledge needs argument 'query'",
        id="missing-required",
    ),
    pytest.param(
        '[search_knowledge("q", top=2) -> y1] Answer: y1',
        ["unknown_arg"],
        "search_knowledge has no argument 'top'; its arguments are: query, k",
        id="unknown-kwarg",
    ),
    pytest.param(
        '[search_knowledge("q", 2, 3) -> y1] Answer: y1',
        ["too_many_args"],
        "takes at most 2 argument(s) (query, k), got 3",
        id="too-many-positional",
    ),
    pytest.param(
        '[search_knowledge("q", query="r") -> y1] Answer: y1',
        ["duplicate_arg"],
        "given both by position and by name",
        id="positional-and-keyword",
    ),
    pytest.param(
        "[3 * 12 = y1] [2 * 5 = y2] Answer: y1 + y2",
        ["answer_several"],
        "the answer names 2 placeholders (y1, y2)",
        id="answer-names-two-placeholders",
    ),
    pytest.param(
        "[3 * 12 = y1] Answer: 36",
        ["answer_no_placeholder"],
        "the answer '36' names no placeholder; answer with the placeholder of the step that computes it (e.g. y1)",
        id="answer-is-a-value",
    ),
    pytest.param(
        "[3 * 12 = y1] Answer: y7",
        ["answer_undefined"],
        "the answer uses y7, which no step defines",
        id="answer-undefined",
    ),
    pytest.param(
        "[3 * 12 = y1] [2y1 + 1 = y2] Answer: y2",
        ["placeholder_glued"],
        "step y2 writes '2y1'; write the multiplication explicitly: 2 * y1",
        id="implicit-multiplication",
    ),
    pytest.param(
        '[3 * 12 = y1] [convert(y1, "cm") -> y2] [convert(y2, unit="m", precise=true) -> y3] Answer: y3',
        [],
        None,
        id="placeholders-fit-typed-arguments",
    ),
    pytest.param(
        '[convert([1, 2], "cm") -> y1] Answer: y1',
        ["invalid_arg"],
        "argument 'value' of convert",
        id="literal-of-wrong-type",
    ),
    pytest.param(
        '[Search_Knowledge("q") -> y1] [FUNC CALCULATOR("y1 * 2") = y2] Answer: y2',
        [],
        None,
        id="tool-names-match-ignoring-case",
    ),
    pytest.param("[3 * 12 = y1] [y1 + 1 = y10] [y10 - y1 = y11] Answer: y11", [], None, id="y1-next-to-y10"),
    pytest.param("So y9 is what we want: [3 * 12 = y1]. Answer: y1", [], None, id="placeholder-in-prose-is-prose"),
]


@pytest.mark.parametrize(("text", "expected", "message"), CASES)
def test_validate(text: str, expected: list[str], message: str | None) -> None:
    errors = validate(parse_chain(text), TOOLS)
    assert sorted(codes(errors)) == sorted(expected), format_errors(errors)
    if message is not None:
        assert any(message in e.message for e in errors), format_errors(errors)


def test_error_names_its_step() -> None:
    errors = validate(parse_chain("[3 * 12 = y1] [50 - y3 = y2] [unknown() -> y3] Answer: y2"), TOOLS)
    assert {(e.code, e.step_id) for e in errors} == {("used_before_defined", "y2"), ("unknown_tool", "y3")}


def test_cycles_are_reported_not_crashed_even_when_long() -> None:
    n = 3000
    steps = [calculator_step(f"y{i}", f"y{i % n + 1} + 1") for i in range(1, n + 1)]
    errors = validate(Chain(steps=tuple(steps), answer="y1"), TOOLS)
    assert codes(errors) == ["cycle"]
    assert errors[0].step_id == "y1"


def test_step_budget() -> None:
    chain = Chain(steps=tuple(calculator_step(f"y{i}", "1 + 1") for i in range(1, 6)), answer="y5")
    assert validate(chain, TOOLS, max_steps=5) == []
    [error] = validate(chain, TOOLS, max_steps=4)
    assert error.code == "too_many_steps"
    assert "the chain has 5 steps; the limit is 4" in error.message


def test_template_answer_allowed_when_not_single() -> None:
    chain = parse_chain("[3 * 12 = y1] [2 * 5 = y2] Answer: y1 pens and y2 pencils")
    assert codes(validate(chain, TOOLS)) == ["answer_several"]
    assert validate(chain, TOOLS, single_answer=False) == []


def test_bad_ids_from_json() -> None:
    text = json.dumps(
        {
            "steps": [{"thought": "t", "id": "step1", "tool": "calculator", "args": {"expression": "1 + 1"}}],
            "answer": "step1",
        }
    )
    errors = validate(parse_chain(text), TOOLS)
    assert "bad_id" in codes(errors)
    assert "step id 'step1' is not a placeholder; name results y1, y2, y3, ... in order" in format_errors(errors)


def test_bind_chain_uses_registered_names_and_field_order() -> None:
    chain = parse_chain('[Search-Knowledge("q", 2) -> y1] [FUNC calculator("y1 + 1") = y2] Answer: y2')
    bound = bind_chain(chain, TOOLS)
    assert bound.steps[0] == Step("y1", "search_knowledge", args={"query": Lit("q"), "k": Lit(2)})
    assert bound.steps[1].args == {"expression": Lit("y1 + 1")}
    assert bound.steps[1].positional == ()
    assert find_tool("SEARCH_KNOWLEDGE", TOOLS) == "search_knowledge"
    assert find_tool("nope", TOOLS) is None


def test_dict_schema_tools() -> None:
    """Tools may declare a JSON-schema dict instead of a pydantic model."""

    class Echo(BaseTool):
        name: str = "echo"
        description: str = "Echo."
        args_schema: dict = {  # type: ignore[assignment]
            "type": "object",
            "properties": {"text": {"type": "string"}, "n": {"type": "integer"}},
            "required": ["text"],
        }

        def _run(self, text: str, n: int = 1) -> str:
            return text * n

    tools = {"echo": Echo()}
    assert validate(parse_chain('[echo("a", 2) -> y1] Answer: y1'), tools) == []
    assert codes(validate(parse_chain("[echo(n=2) -> y1] Answer: y1"), tools)) == ["missing_arg"]
    assert codes(validate(parse_chain('[echo("a", m=2) -> y1] Answer: y1'), tools)) == ["unknown_arg"]
    assert bind_chain(parse_chain('[echo("a", 2) -> y1] Answer: y1'), tools).steps[0].args == {
        "text": Lit("a"),
        "n": Lit(2),
    }


def test_ref_argument_is_checked_with_a_dummy_of_the_fields_type() -> None:
    chain = Chain(
        steps=(
            calculator_step("y1", "2"),
            Step("y2", "convert", args={"value": Ref("y1"), "unit": Lit("m"), "precise": Ref("y1")}),
        ),
        answer="y2",
    )
    assert validate(chain, TOOLS) == []
