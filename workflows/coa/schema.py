"""``chain_json_schema``: the JSON schema a constrained decoder (llama.cpp grammar, Ollama ``format``, OpenAI
``response_format``) follows to write a chain. Tool names are enums; ``thought`` comes first in every step."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from conclave.workflows.coa.validate import tool_schema

__all__ = ["chain_json_schema", "SCHEMA_PLACEHOLDER_PATTERN"]

# At most two digits: with an unbounded "[0-9]+" a small model can loop on digits inside an id forever.
SCHEMA_PLACEHOLDER_PATTERN = "^y[1-9][0-9]?$"
_PLACEHOLDER = {"type": "string", "pattern": SCHEMA_PLACEHOLDER_PATTERN}
_DROP = ("title", "default", "examples")


def chain_json_schema(
    tools: Mapping[str, Any],
    *,
    max_steps: int = 12,
    per_tool: bool = True,
    max_thought_chars: int | None = 200,
    max_arg_chars: int | None = 300,
) -> dict[str, Any]:
    """The chain's JSON schema; ``per_tool`` gives each tool its own step shape with its arguments' schema.

    ``max_steps`` bounds the number of steps (and must stay below 100, the largest id the schema allows);
    ``max_thought_chars``/``max_arg_chars`` bound each thought and each string argument.
    """
    if not tools:
        raise ValueError("chain_json_schema needs at least one tool")
    if not 1 <= max_steps <= 99:
        raise ValueError("max_steps must be between 1 and 99")
    thought: dict[str, Any] = {"type": "string"}
    if max_thought_chars is not None:
        # A budget on words per step: a looping model stops at the schema, not at the token limit.
        thought["maxLength"] = max_thought_chars
    if per_tool:
        variants = [
            _step_schema(thought, [name], _args_schema(tool, max_arg_chars), getattr(tool, "description", ""))
            for name, tool in tools.items()
        ]
        items: dict[str, Any] = variants[0] if len(variants) == 1 else {"anyOf": variants}
    else:
        items = _step_schema(thought, list(tools), {"type": "object"}, "")
    return {
        "type": "object",
        "properties": {
            "steps": {"type": "array", "items": items, "minItems": 1, "maxItems": max_steps},
            "answer": dict(_PLACEHOLDER),
        },
        "required": ["steps", "answer"],
        "additionalProperties": False,
    }


def _step_schema(thought: dict[str, Any], names: list[str], args: dict[str, Any], description: str) -> dict[str, Any]:
    step: dict[str, Any] = {
        "type": "object",
        "properties": {
            "thought": dict(thought),
            "id": dict(_PLACEHOLDER),
            "tool": {"type": "string", "enum": names},
            "args": args,
        },
        "required": ["thought", "id", "tool", "args"],
        "additionalProperties": False,
    }
    if description:
        step["description"] = description.strip().split("\n", 1)[0]
    return step


def _args_schema(tool: Any, max_chars: int | None) -> dict[str, Any]:
    schema = tool_schema(tool)
    if schema is None:
        return {"type": "object"}
    raw = copy.deepcopy(schema) if isinstance(schema, dict) else schema.model_json_schema()
    defs = raw.get("$defs") or raw.get("definitions") or {}
    properties = {
        name: _allow_placeholder(_bound_strings(_clean(_inline(prop, defs)), max_chars))
        for name, prop in raw.get("properties", {}).items()
    }
    out: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    required = [name for name in raw.get("required", []) if name in properties]
    if required:
        out["required"] = required
    return out


def _inline(node: Any, defs: Mapping[str, Any], depth: int = 0) -> Any:
    """Replace local ``$ref``s by their definitions (grammar compilers handle plain schemas best)."""
    if depth > 20:
        return {}
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/"):
            target = defs.get(ref.rsplit("/", 1)[-1], {})
            return _inline(target, defs, depth + 1)
        return {k: _inline(v, defs, depth + 1) for k, v in node.items() if k not in ("$defs", "definitions")}
    if isinstance(node, list):
        return [_inline(v, defs, depth + 1) for v in node]
    return node


def _clean(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _clean(v) for k, v in node.items() if k not in _DROP}
    if isinstance(node, list):
        return [_clean(v) for v in node]
    return node


def _bound_strings(node: Any, max_chars: int | None) -> Any:
    if max_chars is None:
        return node
    if isinstance(node, dict):
        out = {k: _bound_strings(v, max_chars) for k, v in node.items()}
        if out.get("type") == "string" and "maxLength" not in out and "enum" not in out and "pattern" not in out:
            out["maxLength"] = max_chars
        return out
    if isinstance(node, list):
        return [_bound_strings(v, max_chars) for v in node]
    return node


def _allow_placeholder(prop: dict[str, Any]) -> dict[str, Any]:
    """A non-string argument may also be a placeholder, which JSON can only write as a string."""
    kinds: list[Any] = [prop.get("type")] + [o.get("type") for o in prop.get("anyOf", []) if isinstance(o, dict)]
    if "string" in kinds or not prop:
        return prop
    return {"anyOf": [prop, dict(_PLACEHOLDER)]}
