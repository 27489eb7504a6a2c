"""The toolset of a run: LangChain tools keyed by name (built-ins, plugins, MCP servers), and a validated runner.

Later layers build chain schemas from ``build_tools(...)`` (names, descriptions and pydantic argument schemas) and
run one tool call through :func:`run_tool`, which turns schema violations into ToolInputError (chains validate their
arguments when they are bound, ``workflows/coa/validate.py``, and call the tools' coroutines).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from conclave.tools.calculator import evaluate
from conclave.tools.values import read_value_tool
from conclave.tools.vector_math import evaluate_vector
from langchain_core.tools import BaseTool, StructuredTool, ToolException
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from conclave.errors import ConfigError, ToolFailed, ToolInputError
from conclave.events import Passage
from conclave.registry import Registry

if TYPE_CHECKING:
    from conclave.tools.store import KnowledgeStore

    from conclave.settings import Settings

__all__ = [
    "CalculatorArgs",
    "SearchKnowledgeArgs",
    "VectorMathArgs",
    "build_tools",
    "format_passages",
    "run_tool",
    "source_filter",
    "tool_schemas",
]


class SearchKnowledgeArgs(BaseModel):
    """What the model may choose: the query only. The collection and the number of passages are bound by the run
    (a model that read injected text in one collection must not be able to read another)."""

    model_config = ConfigDict(extra="forbid")
    query: str = Field(min_length=1, max_length=2000, description="what to look for, in words")


class CalculatorArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    expression: str = Field(
        min_length=1,
        max_length=10_000,
        description="arithmetic, e.g. (1,234 + 15% of 80) / 3; functions sqrt log exp round min max abs floor ceil",
    )


class VectorMathArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    expression: str = Field(
        min_length=1,
        max_length=2_000,
        description="e.g. (2 / len(y)) * transpose(X) @ (X @ w - y); functions dot transpose matmul mean sum norm",
    )
    variables: dict[str, Any] = Field(
        default_factory=dict, description="named numbers, vectors (lists) or matrices (lists of lists)"
    )


def format_passages(passages: list[Passage]) -> str:
    """Passages as text a model can read and cite: ``[id] (source, score) text``."""
    if not passages:
        return "No passages found."
    lines = []
    for rank, p in enumerate(passages, 1):
        title = f" {p.title} —" if p.title else ""
        lines.append(f"{rank}. [{p.id}] ({p.source}, score {p.score:.3f}){title} {' '.join(p.text.split())}")
    return "\n".join(lines)


_PASSAGE_LINE = re.compile(r"^\s*\d+\.\s+\[([^\]\n]+)\]\s+\(([^\n]*?), score (-?[\d.]+)\) (.*)$", re.MULTILINE)


def parse_passages(text: str) -> list[Passage]:
    """The passages in a ``search_knowledge`` result (what :func:`format_passages` wrote), in rank order. A title
    stays at the head of the text ("Title — text"): the two cannot be told apart reliably, and a reader wants both."""
    return [
        Passage(id=pid, source=source, text=body, score=float(score))
        for pid, source, score, body in _PASSAGE_LINE.findall(text or "")
    ]


PLUGIN_GROUP = "conclave.tools"
"""The entry-point group of tools plugins: each entry names a function ``settings -> list[BaseTool]``
(``examples/plugin`` is one)."""


def _tools_factory(name: str, loaded: object) -> Callable[[Settings], Iterable[BaseTool]]:
    if not callable(loaded):
        raise TypeError(f"{loaded!r} is not a function settings -> list of LangChain tools")
    return loaded


TOOL_PLUGINS: Registry[Callable[[Settings], Iterable[BaseTool]]] = Registry("tools", PLUGIN_GROUP, _tools_factory)
"""The tools plugins, loaded like every other group's (``conclave.registry``): a plugin that fails is listed in
``TOOL_PLUGINS.plugin_errors`` (``conclave tools`` shows them) and skipped."""


def plugin_tools(settings: Settings, taken: Iterable[str] = ()) -> dict[str, BaseTool]:
    """The tools of every installed plugin (entry-point group :data:`PLUGIN_GROUP`). Plugins are packages you
    installed, so they run as code; one that fails to load or to make its tools (whatever it raises, SystemExit
    included), or gives something that is not a tool, is reported and skipped, and so is a tool whose name is
    ``taken`` (a built-in's) or another plugin's: the built-ins and the other plugins keep working."""
    out: dict[str, BaseTool] = {}
    for name in TOOL_PLUGINS.names():
        try:
            provided = list(TOOL_PLUGINS.get(name)(settings))
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 - a broken plugin must not stop the built-in tools
            TOOL_PLUGINS.report(name, exc)
            continue
        bad = [tool for tool in provided if not isinstance(tool, BaseTool) or not str(tool.name).isidentifier()]
        if bad:
            TOOL_PLUGINS.report(name, f"gave {bad[0]!r}, not a LangChain tool with a name a chain can write")
            continue
        for tool in provided:
            if tool.name in taken or tool.name in out:
                owner = "a built-in tool" if tool.name in taken else "another plugin's tool"
                TOOL_PLUGINS.report(name, f"its tool {tool.name} has the name of {owner}: left out")
                continue
            out[tool.name] = tool
    return out


def source_filter(source: str | None) -> dict[str, Any] | None:
    """The store's metadata filter that limits a search to one document's passages (None: the whole collection)."""
    return {"source": source} if source else None


def build_tools(
    settings: Settings,
    store: KnowledgeStore | None = None,
    *,
    collection: str | None = None,
    k: int | None = None,
    source: str | None = None,
) -> dict[str, BaseTool]:
    """The registered tools, keyed by name; the store is opened on the first knowledge search if not given.

    ``search_knowledge`` searches ``collection`` (default: ``settings.collection``) for ``k`` passages (default:
    ``settings.top_k``), only among the passages of the document ``source`` when one is given; all fixed here by the
    run: its schema offers the model the query alone.
    """
    bound_collection = settings.collection if collection is None else collection
    bound_k = k or settings.top_k
    bound_where = source_filter(source)
    # The filter travels only when a source scopes the search: a store without one keeps working as before.
    scope: dict[str, Any] = {"where": bound_where} if bound_where else {}
    holder: dict[str, KnowledgeStore] = {}
    if store is not None:
        holder["store"] = store

    def get_store() -> KnowledgeStore:
        if "store" not in holder:
            from conclave.tools.store import KnowledgeStore

            holder["store"] = KnowledgeStore.open(settings)
        return holder["store"]

    def search_sync(query: str) -> str:
        return format_passages(get_store().search_sync(query, bound_k, bound_collection, **scope))

    async def search_async(query: str) -> str:
        return format_passages(await get_store().search(query, bound_k, bound_collection, **scope))

    def calculator(expression: str) -> str:
        return evaluate(expression).text

    def vector_math(expression: str, variables: dict[str, Any] | None = None) -> str:
        return evaluate_vector(expression, variables or {})

    tools: list[BaseTool] = [
        StructuredTool.from_function(
            func=search_sync,
            coroutine=search_async,
            name="search_knowledge",
            description=f"Search the knowledge collection for {bound_k} passages; returns them ranked, with ids, "
            "sources and scores.",
            args_schema=SearchKnowledgeArgs,
        ),
        StructuredTool.from_function(
            func=calculator,
            name="calculator",
            description="Exact arithmetic on one expression (+ - * / ** %, 15% of 80, 1,234); returns the number.",
            args_schema=CalculatorArgs,
        ),
        StructuredTool.from_function(
            func=vector_math,
            name="vector_math",
            description="Vector/matrix arithmetic over named arrays (dot, transpose, @, mean, sum, norm); returns JSON.",
            args_schema=VectorMathArgs,
        ),
        read_value_tool(get_store, bound_collection, bound_k, bound_where),
    ]
    registered = {t.name: t for t in tools}
    registered.update(plugin_tools(settings, taken=registered))
    if settings.mcp_servers:
        from conclave.tools.mcp import mcp_tools

        _add(registered, mcp_tools(settings), "MCP", "rename its server in mcp_servers (tools are named SERVER_TOOL)")
    return registered


def _add(registered: dict[str, BaseTool], more: Mapping[str, BaseTool], source: str, hint: str) -> None:
    """Add tools from another source; a name already taken (a built-in's, say) is an error, never a silent swap."""
    for name, tool in more.items():
        if name in registered:
            raise ConfigError(f"the {source} tool {name} has the name of a built-in tool", hint=hint)
        registered[name] = tool


def tool_schemas(tools: Mapping[str, BaseTool]) -> dict[str, dict[str, Any]]:
    """name -> {"description", "parameters" (JSON schema)} for every tool."""
    out = {}
    for name, tool in tools.items():
        schema = tool.args_schema
        params = schema.model_json_schema() if isinstance(schema, type) and issubclass(schema, BaseModel) else {}
        out[name] = {"description": tool.description, "parameters": params}
    return out


def _validated(tools: Mapping[str, BaseTool], name: str, args: Mapping[str, Any]) -> tuple[BaseTool, dict[str, Any]]:
    tool = tools.get(name)
    if tool is None:
        raise ToolInputError(f"unknown tool {name!r}", hint=f"available tools: {', '.join(sorted(tools))}")
    if not isinstance(args, Mapping):
        raise ToolInputError(f"{name}: arguments must be an object, got {type(args).__name__}", hint=_usage(tool))
    schema = tool.args_schema
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        try:
            model = schema.model_validate(dict(args))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'arguments'}: {err['msg']}" for err in exc.errors()
            )
            raise ToolInputError(f"{name}: invalid arguments: {problems}", hint=_usage(tool)) from None
        return tool, model.model_dump()
    return tool, dict(args)


def _usage(tool: BaseTool) -> str:
    schema = tool.args_schema
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        fields = schema.model_json_schema().get("properties", {})
        required = set(schema.model_json_schema().get("required", []))
        parts = [f"{k}{'' if k in required else '?'}: {v.get('type', 'any')}" for k, v in fields.items()]
        return f"{tool.name} takes {{{', '.join(parts)}}}"
    return f"see `conclave tools` for {tool.name}'s arguments"


def run_tool(tools: Mapping[str, BaseTool], name: str, args: Mapping[str, Any]) -> str:
    """Validate ``args`` against the tool's schema and run it; bad arguments raise ToolInputError."""
    tool, clean = _validated(tools, name, args)
    try:
        return _as_text(tool.invoke(clean))
    except ToolException as exc:
        raise ToolFailed(
            str(exc), hint=f"the tool {name} itself failed; see `conclave tools` for what it does"
        ) from None


def _as_text(result: Any) -> str:
    if isinstance(result, BaseModel):  # a structured result (read_value's value with its source)
        return result.model_dump_json(exclude_none=True)
    return result if isinstance(result, str) else json.dumps(result)
