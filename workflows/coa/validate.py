"""``validate``: every mechanical fault of a chain, each as a message the model can act on verbatim.

Tools are LangChain tools keyed by name. Tool names match case-insensitively (``Calculator`` is ``calculator``);
positional arguments bind to the tool's schema fields in their declared order (``bind_args``/``bind_chain``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from conclave.workflows.coa.model import PLACEHOLDER_RE, Arg, Chain, Concat, Lit, Ref, Step
from pydantic import BaseModel, ValidationError

__all__ = [
    "ChainError",
    "validate",
    "find_tool",
    "bind_args",
    "bind_chain",
    "tool_fields",
    "tool_schema",
    "format_errors",
]

_ID = re.compile(r"y[0-9]+")
_GLUED = re.compile(r"([0-9.)])(y[0-9]+)\b")


@dataclass(frozen=True)
class ChainError:
    """One fault: a machine ``code``, the step it concerns (None for the whole chain) and a message for the model."""

    code: str
    step_id: str | None
    message: str

    def __str__(self) -> str:
        return self.message


def format_errors(errors: list[ChainError]) -> str:
    """The errors as a bullet list, for a re-plan prompt."""
    return "\n".join(f"- {error.message}" for error in errors)


def find_tool(name: str, tools: Mapping[str, Any]) -> str | None:
    """The registered name for ``name``: exact, else ignoring case, ``-`` vs ``_`` and spaces."""
    if name in tools:
        return name
    folded = _fold(name)
    for registered in tools:
        if _fold(registered) == folded:
            return registered
    return None


def _fold(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip()).casefold()


def tool_schema(tool: Any) -> type[BaseModel] | dict[str, Any] | None:
    """The schema of a tool's call arguments (pydantic model or JSON-schema dict), or None when it has none."""
    try:
        schema = tool.tool_call_schema
    except Exception:  # some tools cannot build it; fall back to the declared schema
        schema = getattr(tool, "args_schema", None)
    if isinstance(schema, dict) or (isinstance(schema, type) and issubclass(schema, BaseModel)):
        return schema
    return None


def tool_fields(tool: Any) -> list[str] | None:
    """Argument names in declaration order (the order positional arguments bind to), or None if unknown."""
    return _fields_of(tool_schema(tool))


@dataclass
class _ToolInfo:
    """A tool's schema, fields and JSON properties, computed once (LangChain rebuilds the schema on each access)."""

    schema: type[BaseModel] | dict[str, Any] | None
    fields: list[str] | None
    properties: dict[str, Any]


def _info(tool: Any, cache: dict[int, _ToolInfo]) -> _ToolInfo:
    key = id(tool)
    if key not in cache:
        schema = tool_schema(tool)
        cache[key] = _ToolInfo(schema, _fields_of(schema), _properties_of(schema))
    return cache[key]


def _fields_of(schema: type[BaseModel] | dict[str, Any] | None) -> list[str] | None:
    if schema is None:
        return None
    if isinstance(schema, dict):
        return list(schema.get("properties", {}))
    return [field.alias or name for name, field in schema.model_fields.items()]


def _properties_of(schema: type[BaseModel] | dict[str, Any] | None) -> dict[str, Any]:
    if schema is None:
        return {}
    if isinstance(schema, dict):
        return dict(schema.get("properties", {}))
    try:
        return dict(schema.model_json_schema().get("properties", {}))
    except Exception:  # a schema pydantic cannot express as JSON schema still validates
        return {}


def bind_args(step: Step, tool: Any, tool_name: str | None = None) -> tuple[dict[str, Arg], list[ChainError]]:
    """The step's arguments by name (positional ones bound in the tool's field order) and any binding errors."""
    return _bind(step, tool_fields(tool), tool_name or step.tool)


def _bind(step: Step, fields: list[str] | None, name: str) -> tuple[dict[str, Arg], list[ChainError]]:
    errors: list[ChainError] = []
    bound: dict[str, Arg] = {}
    if step.positional:
        if fields is None:
            errors.append(
                ChainError(
                    "positional_args",
                    step.id,
                    f"step {step.id}: {name} does not declare its arguments; pass them by name (name=value)",
                )
            )
            return dict(step.args), errors
        if len(step.positional) > len(fields):
            errors.append(
                ChainError(
                    "too_many_args",
                    step.id,
                    f"step {step.id}: {name} takes at most {len(fields)} argument(s) ({', '.join(fields) or 'none'}), "
                    f"got {len(step.positional)}",
                )
            )
            return dict(step.args), errors
        bound.update(zip(fields, step.positional, strict=False))
    for arg_name, arg in step.args.items():
        if arg_name in bound:
            errors.append(
                ChainError(
                    "duplicate_arg",
                    step.id,
                    f"step {step.id}: argument {arg_name!r} of {name} is given both by position and by name; give it once",
                )
            )
            continue
        if fields is not None and arg_name not in fields:
            errors.append(
                ChainError(
                    "unknown_arg",
                    step.id,
                    f"step {step.id}: {name} has no argument {arg_name!r}; its arguments are: "
                    f"{', '.join(fields) or 'none'}",
                )
            )
            continue
        bound[arg_name] = arg
    return bound, errors


def bind_chain(chain: Chain, tools: Mapping[str, Any]) -> Chain:
    """The chain with registered tool names and positional arguments bound to names, where that succeeds."""
    steps = []
    cache: dict[int, _ToolInfo] = {}
    for step in chain.steps:
        registered = find_tool(step.tool, tools)
        if registered is None:
            steps.append(step)
            continue
        bound, errors = _bind(step, _info(tools[registered], cache).fields, registered)
        if errors:
            steps.append(replace(step, tool=registered))
        else:
            steps.append(replace(step, tool=registered, args=bound, positional=()))
    return replace(chain, steps=tuple(steps))


def validate(
    chain: Chain,
    tools: Mapping[str, Any],
    *,
    max_steps: int | None = None,
    single_answer: bool = True,
) -> list[ChainError]:
    """All faults of the chain against these tools; an empty list means it can be reified."""
    errors: list[ChainError] = []
    steps = chain.steps
    if not steps:
        errors.append(
            ChainError(
                "empty_chain",
                None,
                "the chain has no steps; write at least one step (e.g. [3 * 12 = y1], or in JSON "
                '{"thought": "...", "id": "y1", "tool": "calculator", "args": {"expression": "3 * 12"}}) '
                "and answer with its placeholder",
            )
        )
    if max_steps is not None and len(steps) > max_steps:
        errors.append(
            ChainError(
                "too_many_steps",
                None,
                f"the chain has {len(steps)} steps; the limit is {max_steps}: combine arithmetic into fewer steps "
                "(one expression may use several numbers and placeholders)",
            )
        )
    first: dict[str, int] = {}
    for index, step in enumerate(steps):
        if not _ID.fullmatch(step.id):
            errors.append(
                ChainError(
                    "bad_id",
                    step.id,
                    f"step id {step.id!r} is not a placeholder; name results y1, y2, y3, ... in order",
                )
            )
        if step.id in first:
            errors.append(
                ChainError(
                    "duplicate_id",
                    step.id,
                    f"{step.id} is defined twice (steps {first[step.id] + 1} and {index + 1}); "
                    f"give each step its own placeholder (the next free one is {_next_free(steps)})",
                )
            )
        else:
            first[step.id] = index
    errors.extend(_dependency_errors(chain, first))
    cache: dict[int, _ToolInfo] = {}
    for step in steps:
        errors.extend(_step_tool_errors(step, tools, cache))
    errors.extend(_answer_errors(chain, first, single_answer))
    return errors


def _next_free(steps: tuple[Step, ...]) -> str:
    numbers = [int(s.id[1:]) for s in steps if _ID.fullmatch(s.id)]
    return f"y{max(numbers, default=0) + 1}"


def _defined_list(first: Mapping[str, int]) -> str:
    return ", ".join(first) if first else "none"


def _dependency_errors(chain: Chain, first: Mapping[str, int]) -> list[ChainError]:
    errors: list[ChainError] = []
    graph = {step.id: [r for r in step.refs() if r in first] for step in chain.steps}
    cyclic = _cycles(graph, order=list(first))
    in_cycle = {member: component for component in cyclic for member in component}
    reported: set[int] = set()
    for index, step in enumerate(chain.steps):
        for ref in step.refs():
            if ref == step.id:
                errors.append(
                    ChainError(
                        "cycle",
                        step.id,
                        f"step {step.id} uses its own result {ref}; a step can only use results of earlier steps",
                    )
                )
            elif ref not in first:
                errors.append(
                    ChainError(
                        "undefined_placeholder",
                        step.id,
                        f"step {step.id} uses {ref}, which no step defines; compute {ref} in an earlier step or use a "
                        f"defined placeholder (defined: {_defined_list(first)})",
                    )
                )
            elif step.id in in_cycle and ref in in_cycle[step.id]:
                component = in_cycle[step.id]
                if id(component) not in reported:
                    reported.add(id(component))
                    uses = "; ".join(
                        f"{member} uses {', '.join(r for r in graph[member] if r in component)}" for member in component
                    )
                    errors.append(
                        ChainError(
                            "cycle",
                            component[0],
                            f"steps {', '.join(component)} form a cycle ({uses}); no order can compute them: "
                            "compute one of them from the given numbers first",
                        )
                    )
            elif first[ref] > index:
                errors.append(
                    ChainError(
                        "used_before_defined",
                        step.id,
                        f"step {step.id} uses {ref} before it is defined; define {ref} in an earlier step or reorder",
                    )
                )
    return errors


def _cycles(graph: Mapping[str, list[str]], order: list[str]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan), members in chain order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    position = {node: i for i, node in enumerate(order)}

    def visit(root: str) -> None:
        nonlocal counter
        # Iterative, so a long chain cannot hit the recursion limit.
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, child = work.pop()
            if child == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            edges = graph.get(node, [])
            if child < len(edges):
                work.append((node, child + 1))
                nxt = edges[child]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component, key=position.__getitem__))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])

    for node in order:
        if node not in index:
            visit(node)
    return found


def _step_tool_errors(step: Step, tools: Mapping[str, Any], cache: dict[int, _ToolInfo]) -> list[ChainError]:
    registered = find_tool(step.tool, tools)
    if registered is None:
        return [
            ChainError(
                "unknown_tool",
                step.id,
                f"step {step.id} calls unknown tool {step.tool!r}; available tools: {', '.join(tools) or 'none'}",
            )
        ]
    info = _info(tools[registered], cache)
    bound, errors = _bind(step, info.fields, registered)
    if errors:
        return errors
    if registered.casefold() == "calculator":
        for arg in bound.values():
            if isinstance(arg, Lit) and isinstance(arg.value, str) and (glued := _GLUED.search(arg.value)):
                errors.append(
                    ChainError(
                        "placeholder_glued",
                        step.id,
                        f"step {step.id} writes {glued.group(0)!r}; write the multiplication explicitly: "
                        f"{glued.group(1)} * {glued.group(2)}",
                    )
                )
    return errors + _schema_errors(step, registered, info, bound)


def _schema_errors(step: Step, name: str, info: _ToolInfo, bound: Mapping[str, Arg]) -> list[ChainError]:
    schema, props = info.schema, info.properties
    if schema is None:
        return []
    data = {arg_name: _dummy(arg, props.get(arg_name, {})) for arg_name, arg in bound.items()}
    if isinstance(schema, dict):
        missing = [r for r in schema.get("required", []) if r not in data]
        return [
            ChainError("missing_arg", step.id, f"step {step.id}: {name} needs argument {r!r}; add {r}=...")
            for r in missing
        ]
    try:
        schema.model_validate(data)
    except ValidationError as exc:
        errors = []
        for err in exc.errors():
            loc = ".".join(str(part) for part in err["loc"]) or "(arguments)"
            if err["type"] == "missing":
                errors.append(
                    ChainError("missing_arg", step.id, f"step {step.id}: {name} needs argument {loc!r}; add {loc}=...")
                )
            else:
                shown = _shown(bound.get(str(err["loc"][0])) if err["loc"] else None, err.get("input"))
                errors.append(
                    ChainError(
                        "invalid_arg",
                        step.id,
                        f"step {step.id}: argument {loc!r} of {name} is invalid: {err['msg']} (got {shown})",
                    )
                )
        return errors
    return []


def _shown(arg: Arg | None, fallback: Any) -> str:
    if isinstance(arg, Ref):
        return f"the result of {arg.id}"
    if isinstance(arg, Lit):
        return repr(arg.value)
    return repr(fallback)


_DUMMY_BY_TYPE: dict[str, Any] = {
    "string": "1",
    "integer": 1,
    "number": 1,
    "boolean": True,
    "array": [],
    "object": {},
    "null": None,
}


def _types(prop: Mapping[str, Any]) -> list[str]:
    kind = prop.get("type")
    found = [kind] if isinstance(kind, str) else list(kind or [])
    for key in ("anyOf", "oneOf", "allOf"):
        for option in prop.get(key, []):
            if isinstance(option, Mapping):
                found.extend(_types(option))
    return found


def _dummy(arg: Arg, prop: Mapping[str, Any]) -> Any:
    """A stand-in value of a fitting type for validating arguments before any placeholder has a value."""
    if isinstance(arg, Ref):
        types = _types(prop)
        for kind in ("string", "number", "integer", "boolean", "array", "object"):
            if kind in types:
                return _DUMMY_BY_TYPE[kind]
        return "1"
    if isinstance(arg, Concat):
        return "".join("1" if isinstance(p, Ref) else str(p.value) for p in arg.parts)
    return _substitute_dummy(arg.value)


def _substitute_dummy(value: Any) -> Any:
    if isinstance(value, str):
        return PLACEHOLDER_RE.sub("1", value)
    if isinstance(value, list):
        return [_substitute_dummy(v) for v in value]
    if isinstance(value, dict):
        return {k: _substitute_dummy(v) for k, v in value.items()}
    return value


def _answer_errors(chain: Chain, first: Mapping[str, int], single_answer: bool) -> list[ChainError]:
    refs = chain.answer_refs()
    last = chain.steps[-1].id if chain.steps else "y1"
    if not refs:
        return [
            ChainError(
                "answer_no_placeholder",
                None,
                f"the answer {chain.answer!r} names no placeholder; answer with the placeholder of the step that "
                f"computes it (e.g. {last}), not with a value",
            )
        ]
    errors = [
        ChainError(
            "answer_undefined",
            None,
            f"the answer uses {ref}, which no step defines (defined: {_defined_list(first)})",
        )
        for ref in refs
        if ref not in first
    ]
    if single_answer and len(refs) > 1:
        errors.append(
            ChainError(
                "answer_several",
                None,
                f"the answer names {len(refs)} placeholders ({', '.join(refs)}); it must be the one placeholder that "
                f"holds the final value: add a step that combines them and answer with its placeholder",
            )
        )
    return errors
