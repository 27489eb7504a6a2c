"""``conclave.models.gbnf``: the JSON-schema-to-GBNF converter carried in the package, so that the default engine
(xllamacpp) constrains replies with the same grammar text llama-cpp-python writes, without llama-cpp-python."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conclave.workflows.coa import chain_json_schema

from conclave.models.embedded import grammar_safe, tool_call_schema
from conclave.models.gbnf import json_schema_to_gbnf

ADD_TOOL = {
    "name": "add",
    "description": "Add two integers.",
    "parameters": {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "required": ["a", "b"],
    },
}


def _schemas() -> list[dict[str, Any]]:
    """The shapes the embedded backend compiles: a pydantic-like object, tool calls, a bare object, a chain."""

    def calculator(expression: str) -> str:
        """Evaluate an arithmetic expression."""
        return expression

    from langchain_core.tools import StructuredTool

    chain = chain_json_schema({"calculator": StructuredTool.from_function(calculator)}, max_steps=4)
    return [
        {
            "type": "object",
            "properties": {"answer": {"type": "string"}, "confidence": {"type": "integer"}},
            "required": ["answer", "confidence"],
        },
        tool_call_schema([ADD_TOOL], allow_answer=True),
        {"type": "object"},
        chain,
        grammar_safe(chain),
    ]


def test_an_object_schema_allows_only_its_keys_in_order() -> None:
    """The GBNF for an object lists its properties in schema order and admits no others (an llguidance grammar,
    what xllamacpp writes itself, admits extra keys)."""
    grammar = json_schema_to_gbnf(json.dumps(_schemas()[0]))
    rules = dict(line.split(" ::= ", 1) for line in grammar.splitlines())
    assert rules["root"] == '"{" space answer-kv "," space confidence-kv "}" space', rules["root"]
    assert rules["answer-kv"] == '"\\"answer\\"" space ":" space string'
    assert rules["space"] == '" "?'


def test_a_remote_reference_is_refused_not_fetched() -> None:
    with pytest.raises(ValueError, match="not fetched"):
        json_schema_to_gbnf(json.dumps({"$ref": "https://example.invalid/schema.json"}))


@pytest.mark.parametrize("index", range(5))
def test_the_same_text_as_llama_cpp_python(index: int) -> None:
    """Byte for byte what llama-cpp-python writes (it is the `llama-cpp` extra: skipped where it is absent)."""
    llama_grammar = pytest.importorskip(
        "llama_cpp.llama_grammar", reason="llama-cpp-python (the llama-cpp extra) is not installed"
    )
    text = json.dumps(_schemas()[index])
    assert json_schema_to_gbnf(text) == llama_grammar.json_schema_to_gbnf(text)
