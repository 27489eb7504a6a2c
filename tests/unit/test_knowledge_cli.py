"""The knowledge and tool commands through typer's CliRunner, on a local app with register() applied."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from conclave.cli.knowledge import parse_tool_args, register
from conclave.tools.demo import demo_notes_path
from typer.testing import CliRunner

from conclave.errors import ConfigError, StoreError, ToolInputError

runner = CliRunner()


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def test_parse_tool_args() -> None:
    schema = {"properties": {"expression": {"type": "string"}, "k": {"type": "integer"}}}
    assert parse_tool_args(["expression=2", "k=3", "query=what is x", 'variables={"a": [1, 2]}'], schema) == {
        "expression": "2",
        "k": 3,
        "query": "what is x",
        "variables": {"a": [1, 2]},
    }
    assert parse_tool_args(["expression=a=b"], schema) == {"expression": "a=b"}
    with pytest.raises(ToolInputError, match="not key=value"):
        parse_tool_args(["novalue"])


def test_tools_lists_schemas(app: typer.Typer) -> None:
    result = runner.invoke(app, ["tools", "--json"])
    assert result.exit_code == 0, result.output
    schemas = json.loads(result.stdout)
    assert set(schemas) == {"search_knowledge", "calculator", "vector_math", "read_value"}
    assert schemas["calculator"]["parameters"]["required"] == ["expression"]
    assert list(schemas["search_knowledge"]["parameters"]["properties"]) == ["query"]
    text = runner.invoke(app, ["tools"], terminal_width=160).stdout
    # A table, one row per tool with its arguments, not the raw JSON schemas.
    assert "expression: string" in text and "query: string" in text and "variables: object" in text
    # vector_math's variables, and read_value's row, column, table and year (words added to its query).
    assert text.count("(optional)") == 5, "only vector_math's variables and read_value's parts are optional"
    assert '"properties"' not in text and len([line for line in text.splitlines() if "calculator" in line]) == 1


def test_calculator_tool_prints_the_bare_number(app: typer.Typer) -> None:
    result = runner.invoke(app, ["tool", "calculator", "--arg", "expression=(1,234 + 15% of 80) / 3"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "415.333333333333\n"
    assert "rounded" in result.stderr
    exact = runner.invoke(app, ["tool", "calculator", "--arg", "expression=2", "--json"])
    assert json.loads(exact.stdout) == {
        "tool": "calculator",
        "args": {"expression": "2"},
        "result": "2",
        "exact": True,
    }


def test_vector_math_tool_with_json_variables(app: typer.Typer) -> None:
    result = runner.invoke(
        app,
        [
            "tool",
            "vector_math",
            "--arg",
            "expression=(2 / len(y)) * transpose(X) @ (X @ w - y)",
            "--arg",
            'variables={"X": [[1, 1], [1, 2], [1, 3]], "y": [1, 2, 2], "w": [0, 0]}',
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [-3.33333333333, -7.33333333333]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tool", "calculator"], "expression: Field required"),
        (
            ["tool", "calculator", "--arg", "expression=1", "--arg", "extra=2"],
            "extra: Extra inputs are not permitted",
        ),
        (
            ["tool", "search_knowledge", "--arg", "query=x", "--arg", "k=many"],
            "k must be a whole number from 1 to 50",
        ),
        (["tool", "nope"], "unknown tool 'nope'"),
        (["tool", "calculator", "--arg", "expression=__import__('os')"], "unknown name '__import__'"),
    ],
)
def test_bad_tool_arguments_give_the_validation_message(app: typer.Typer, args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert isinstance(result.exception, ToolInputError)
    assert message in result.exception.message
    assert result.exception.hint


@pytest.mark.integration
@pytest.mark.slow
def test_ingest_search_collections_forget(app: typer.Typer, tmp_path: Path) -> None:
    """The issue's demo: ingest the notes, then the optimiser note answers 'what does Adam combine'."""
    result = runner.invoke(app, ["ingest", str(demo_notes_path()), "--collection", "demo"])
    assert result.exit_code == 0, result.output
    assert "files ingested (new or changed)" in result.stdout and "16" in result.stdout

    found = runner.invoke(app, ["search", "what does Adam combine", "--collection", "demo", "-k", "5"])
    assert found.exit_code == 0, found.output
    first = found.stdout.splitlines()[0]
    assert first.startswith("1.") and "09-optimisers-adagrad-rmsprop-adam.md" in first and "Adam" in first

    as_json = json.loads(runner.invoke(app, ["search", "what does Adam combine", "-c", "demo", "--json"]).stdout)
    assert len(as_json) == 5
    assert as_json[0]["source"].endswith("09-optimisers-adagrad-rmsprop-adam.md")
    assert "first moment" in as_json[0]["text"] and "second moment" in as_json[0]["text"]

    tool = runner.invoke(
        app,
        [
            "tool",
            "search_knowledge",
            "--arg",
            "query=what does Adam combine",
            "--arg",
            "collection=demo",
            "--arg",
            "k=2",
        ],
    )
    assert tool.exit_code == 0, tool.output
    assert tool.stdout.startswith("1. [") and "09-optimisers" in tool.stdout.splitlines()[0]

    again = runner.invoke(app, ["ingest", str(demo_notes_path()), "-c", "demo", "--json"])
    report = json.loads(again.stdout)
    assert (report["files_unchanged"], report["chunks_added"]) == (16, 0)

    listing = json.loads(runner.invoke(app, ["collections", "--json"]).stdout)
    assert listing == [
        {
            "name": "demo",
            "count": report["chunks_total"],
            "embedder": "local:all-MiniLM-L6-v2",
            "dimension": 384,
        }
    ]
    assert "demo" in runner.invoke(app, ["collections"]).stdout

    refused = runner.invoke(app, ["forget", "demo"], input="n\n")
    assert refused.exit_code == 1 and "Nothing deleted" in refused.output
    confirmed = runner.invoke(app, ["forget", "demo"], input="y\n")
    assert confirmed.exit_code == 0 and "Deleted collection 'demo'" in confirmed.stdout
    assert json.loads(runner.invoke(app, ["collections", "--json"]).stdout) == []


def test_ingest_summary_lists_skipped_files(app: typer.Typer, tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "empty.md").write_text("")
    (tmp_path / "docs" / "blob.txt").write_bytes(b"\x00\x00")
    result = runner.invoke(app, ["ingest", str(tmp_path / "docs"), "-c", "skips"])
    assert result.exit_code == 0, result.output
    assert "Skipped files" in result.stdout
    assert "empty.md" in result.stdout and "binary file" in result.stdout


def test_forget_yes_and_errors(app: typer.Typer, tmp_path: Path) -> None:
    missing = runner.invoke(app, ["ingest", str(tmp_path / "nope"), "-c", "x-notes"])
    assert isinstance(missing.exception, ConfigError) and "no such file or folder" in missing.exception.message
    bad_name = runner.invoke(app, ["search", "q", "-c", "a"])
    assert isinstance(bad_name.exception, ConfigError) and "3-512 characters" in (bad_name.exception.hint or "")
    absent = runner.invoke(app, ["forget", "ghost-collection", "--yes"])
    assert isinstance(absent.exception, StoreError) and "no collection named" in absent.exception.message
    assert runner.invoke(app, ["collections"]).stdout.startswith("No collections yet")
