"""``chain_json_schema``: the schema for constrained decoding, checked against JSON Schema semantics and against
llama.cpp's grammar compiler."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conclave.workflows.coa import chain_json_schema, parse_chain, render_json
from langchain_core.tools import BaseTool, StructuredTool, tool
from pydantic import BaseModel

jsonschema = pytest.importorskip("jsonschema")


def _calculate(expression: str) -> str:
    """Evaluate an arithmetic expression exactly."""
    return expression


@tool
def search_knowledge(query: str, k: int = 4) -> str:
    """Search the knowledge collection.

    Returns passages with their ids."""
    return query


class Range(BaseModel):
    low: float
    high: float


@tool
def clamp(value: float, bounds: Range) -> float:
    """Clamp a value into a range."""
    return min(max(value, bounds.low), bounds.high)


TOOLS: dict[str, BaseTool] = {
    "calculator": StructuredTool.from_function(_calculate, name="calculator"),
    "search_knowledge": search_knowledge,
    "clamp": clamp,
}

VALID = {
    "steps": [
        {"thought": "the capital", "id": "y1", "tool": "search_knowledge", "args": {"query": "capital of Australia"}},
        {"thought": "how many", "id": "y2", "tool": "search_knowledge", "args": {"query": "people in y1", "k": 2}},
        {"thought": "per thousand", "id": "y3", "tool": "calculator", "args": {"expression": "y2 / 1000"}},
        {"thought": "bounded", "id": "y4", "tool": "clamp", "args": {"value": "y3", "bounds": {"low": 0, "high": 10}}},
    ],
    "answer": "y4",
}


def variants(schema: dict[str, Any]) -> list[dict[str, Any]]:
    items = schema["properties"]["steps"]["items"]
    return items.get("anyOf", [items])


def test_shape() -> None:
    schema = chain_json_schema(TOOLS, max_steps=7)
    steps = schema["properties"]["steps"]
    assert (steps["minItems"], steps["maxItems"]) == (1, 7)
    assert schema["required"] == ["steps", "answer"]
    assert [v["properties"]["tool"]["enum"] for v in variants(schema)] == [
        ["calculator"],
        ["search_knowledge"],
        ["clamp"],
    ]
    for variant in variants(schema):
        assert list(variant["properties"]) == ["thought", "id", "tool", "args"]
        assert variant["required"][0] == "thought"
        assert variant["additionalProperties"] is False
    search = variants(schema)[1]
    assert search["description"] == "Search the knowledge collection."
    assert search["properties"]["args"]["required"] == ["query"]
    # A number argument may also be a placeholder, which JSON can only write as a string.
    assert {"type": "string", "pattern": "^y[1-9][0-9]?$"} in search["properties"]["args"]["properties"]["k"]["anyOf"]
    assert "$ref" not in json.dumps(schema) and "$defs" not in json.dumps(schema)


def test_accepts_valid_chains_and_rejects_mechanical_faults() -> None:
    schema = chain_json_schema(TOOLS)
    jsonschema.validate(VALID, schema)
    jsonschema.validate(json.loads(render_json(parse_chain(json.dumps(VALID)))), schema)
    faults = {
        "unknown tool": {**VALID, "steps": [{**VALID["steps"][0], "tool": "serch"}]},
        "wrong args for the tool": {**VALID, "steps": [{**VALID["steps"][2], "args": {"query": "x"}}]},
        "id not a placeholder": {**VALID, "steps": [{**VALID["steps"][0], "id": "step1"}]},
        "looping id": {**VALID, "steps": [{**VALID["steps"][0], "id": "y1234567"}]},
        "two placeholders in the answer": {**VALID, "answer": "y1 y2"},
        "no thought": {**VALID, "steps": [{k: v for k, v in VALID["steps"][0].items() if k != "thought"}]},
        "too many steps": {**VALID, "steps": VALID["steps"] * 4},
        "thought over budget": {**VALID, "steps": [{**VALID["steps"][0], "thought": "x" * 201}]},
        "number that is not a placeholder": {
            **VALID,
            "steps": [{**VALID["steps"][1], "args": {"query": "q", "k": "four"}}],
        },
    }
    for name, chain in faults.items():
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(chain, chain_json_schema(TOOLS, max_steps=12))
            pytest.fail(f"schema accepted: {name}")


def test_generic_form() -> None:
    schema = chain_json_schema(TOOLS, per_tool=False, max_thought_chars=None)
    [variant] = variants(schema)
    assert variant["properties"]["tool"]["enum"] == list(TOOLS)
    assert "maxLength" not in variant["properties"]["thought"]
    jsonschema.validate(VALID, schema)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="at least one tool"):
        chain_json_schema({})
    with pytest.raises(ValueError, match="max_steps"):
        chain_json_schema(TOOLS, max_steps=100)


@pytest.mark.parametrize("per_tool", [True, False])
def test_llama_cpp_grammar_compiler_accepts_it(per_tool: bool) -> None:
    llama_cpp = pytest.importorskip("llama_cpp")
    schema = chain_json_schema(TOOLS, per_tool=per_tool, max_steps=12)
    grammar = llama_cpp.LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
    assert "root ::=" in grammar._grammar


@pytest.mark.integration
@pytest.mark.slow
def test_embedded_model_decodes_a_chain_under_the_grammar(smollm_path: Path) -> None:
    """With the bundled model: constrained output either parses as a chain or is reported as cut off."""
    llama_cpp = pytest.importorskip("llama_cpp")
    from conclave.workflows.coa import ChainParseError

    llm = llama_cpp.Llama(model_path=str(smollm_path), n_ctx=1024, verbose=False, seed=1)
    grammar = llama_cpp.LlamaGrammar.from_json_schema(json.dumps(chain_json_schema(TOOLS, max_steps=3)), verbose=False)
    out = llm.create_chat_completion(
        messages=[{"role": "user", "content": "Tom buys 12 pens at 3 dollars each. Write the chain as JSON."}],
        grammar=grammar,
        max_tokens=160,
        temperature=0,
    )
    choice = out["choices"][0]
    text = choice["message"]["content"]
    if choice["finish_reason"] == "stop":
        chain = parse_chain(text)
        assert 1 <= len(chain.steps) <= 3
        assert all(step.tool in TOOLS for step in chain.steps)
    else:
        with pytest.raises(ChainParseError, match="cut off"):
            parse_chain(text)


def test_registered_tools_schema_compiles() -> None:
    llama_cpp = pytest.importorskip("llama_cpp")
    from conclave.tools.toolset import build_tools

    from conclave.settings import load_settings

    tools = build_tools(load_settings())
    schema = chain_json_schema(tools)
    assert [v["properties"]["tool"]["enum"][0] for v in variants(schema)] == list(tools)
    assert "root ::=" in llama_cpp.LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)._grammar
    jsonschema.validate(
        {
            "steps": [{"thought": "cost", "id": "y1", "tool": "calculator", "args": {"expression": "3 * 12"}}],
            "answer": "y1",
        },
        schema,
    )
