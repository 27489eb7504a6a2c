"""The tool registry: LangChain tools, schema validation, AutoGen adapters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from autogen_core import CancellationToken
from conclave.tools.toolset import build_tools, format_passages, run_tool, tool_schemas
from conclave.workflows.react import to_autogen_tools
from langchain_core.tools import BaseTool

from conclave.errors import StoreError, ToolInputError
from conclave.events import Passage
from conclave.settings import load_settings


@pytest.fixture
def tools() -> dict[str, BaseTool]:
    return build_tools(load_settings())


def test_registry_names_descriptions_and_schemas(tools: dict[str, BaseTool]) -> None:
    assert list(tools) == ["search_knowledge", "calculator", "vector_math", "read_value"]
    schemas = tool_schemas(tools)
    for name, info in schemas.items():
        assert info["description"] and "\n" not in info["description"], name
        assert info["parameters"]["type"] == "object"
    assert schemas["search_knowledge"]["parameters"]["required"] == ["query"]
    # The collection and k are the run's: the model chooses only what to look for (prompt-injection scope).
    assert set(schemas["search_knowledge"]["parameters"]["properties"]) == {"query"}
    assert set(schemas["vector_math"]["parameters"]["properties"]) == {"expression", "variables"}


def test_run_tool_returns_bare_results(tools: dict[str, BaseTool]) -> None:
    assert run_tool(tools, "calculator", {"expression": "(1,234 + 15% of 80) / 3"}) == "415.333333333333"
    assert json.loads(run_tool(tools, "vector_math", {"expression": "dot(a, a)", "variables": {"a": [3, 4]}})) == 25


async def test_tools_run_async_as_reification_calls_them(tools: dict[str, BaseTool]) -> None:
    assert await tools["calculator"].ainvoke({"expression": "2 ** 10"}) == "1024"


@pytest.mark.parametrize(
    ("name", "args", "message"),
    [
        ("calculator", {}, "expression: Field required"),
        ("calculator", {"expression": 5}, "expression: Input should be a valid string"),
        ("calculator", {"expression": "1", "x": 1}, "x: Extra inputs are not permitted"),
        ("search_knowledge", {"query": "q", "k": 0}, "k: Extra inputs are not permitted"),
        ("search_knowledge", {"query": "q", "collection": "secrets"}, "collection: Extra inputs are not permitted"),
        ("search_knowledge", {"query": ""}, "query: String should have at least 1 character"),
        (
            "vector_math",
            {"expression": "a", "variables": [1]},
            "variables: Input should be a valid dictionary",
        ),
        ("nope", {}, "unknown tool 'nope'"),
    ],
)
def test_schema_violations_raise_tool_input_error(
    tools: dict[str, BaseTool], name: str, args: dict[str, object], message: str
) -> None:
    with pytest.raises(ToolInputError) as info:
        run_tool(tools, name, args)
    assert message in info.value.message
    assert "Traceback" not in info.value.message
    assert info.value.hint


def test_format_passages() -> None:
    passages = [Passage("abc123", "/notes/adam.md", "Adam  combines\nmomentum.", 0.91234, "Optimisers > Adam")]
    assert (
        format_passages(passages)
        == "1. [abc123] (/notes/adam.md, score 0.912) Optimisers > Adam — Adam combines momentum."
    )
    assert format_passages([]) == "No passages found."


async def test_autogen_adapters_run_the_tools(tools: dict[str, BaseTool]) -> None:
    adapters = to_autogen_tools(tools)
    by_name = {a.name: a for a in adapters}
    assert set(by_name) == set(tools)
    assert by_name["calculator"].schema["parameters"]["required"] == ["expression"]
    result = await by_name["calculator"].run_json({"expression": "(1,234 + 15% of 80) / 3"}, CancellationToken())
    assert result == "415.333333333333"
    assert len(to_autogen_tools(list(tools.values()))) == len(tools)


@pytest.mark.integration
async def test_search_tool_goes_through_the_store(conclave_home: Path, tmp_path: Path) -> None:
    from conclave.tools.ingest import ingest
    from conclave.tools.store import KnowledgeStore

    from tests.integration.test_store import FakeEmbedder

    settings = load_settings()
    store = KnowledgeStore.open(settings, embedder=FakeEmbedder())
    (tmp_path / "n.md").write_text("# Note\n\nexact text")
    ingest([tmp_path / "n.md"], "demo", settings, store=store)
    registry = build_tools(settings, store)
    # The hash embedder puts identical texts at distance 0, so the exact embedded text is found first.
    sync = run_tool(registry, "search_knowledge", {"query": "Note\n\n# Note\n\nexact text"})
    assert sync.startswith("1. [") and "n.md, score 1.000) Note — # Note exact text" in sync
    found = await registry["search_knowledge"].ainvoke({"query": "anything"})  # the path reification takes
    assert found.startswith("1. [")
    with pytest.raises(StoreError, match="no collection named 'other'"):
        run_tool(build_tools(settings, store, collection="other"), "search_knowledge", {"query": "x"})


@pytest.mark.integration
async def test_search_is_bound_to_the_runs_collection_and_k(conclave_home: Path, tmp_path: Path) -> None:
    """Text injected into one collection cannot make the model read another: the run fixes collection and k."""
    from conclave.tools.ingest import ingest
    from conclave.tools.store import KnowledgeStore

    from tests.integration.test_store import FakeEmbedder

    settings = load_settings(top_k=2)
    store = KnowledgeStore.open(settings, embedder=FakeEmbedder())
    for name in ("public", "private"):
        folder = tmp_path / name
        folder.mkdir()
        for i in range(4):
            (folder / f"{name}{i}.md").write_text(f"# {name} {i}\n\n{name} note number {i}")
        ingest([folder], name, settings, store=store)
    registry = build_tools(settings, store, collection="public")
    found = await registry["search_knowledge"].ainvoke({"query": "note"})
    assert found.count("\n") == 1 and "private" not in found  # k=2 passages, both from the run's collection
    with pytest.raises(ToolInputError, match="collection: Extra inputs are not permitted"):
        run_tool(registry, "search_knowledge", {"query": "note", "collection": "private"})
    with pytest.raises(ToolInputError, match="k: Extra inputs are not permitted"):
        run_tool(registry, "search_knowledge", {"query": "note", "k": 50})
