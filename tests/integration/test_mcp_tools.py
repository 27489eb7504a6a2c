"""Tools from MCP servers (issue 17 §6), against a real stdio server written for the tests
(tests/servers/mcp_notes.py): listed with their schemas, offered only when read-only or allowed, run by
``conclave tool``, used in a scripted team run, a crashing server failing only its call, and settings that cannot
come from a working folder's ``.env`` or a workflow file."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from conclave.tools.toolset import build_tools, run_tool
from typer.testing import CliRunner

from conclave.errors import ConfigError, ToolFailed, WorkflowError
from conclave.settings import load_settings, load_settings_with_origins

SERVER = Path(__file__).resolve().parents[1] / "servers" / "mcp_notes.py"


def notes_server(notes: Path, **extra: Any) -> dict[str, Any]:
    return {"notes": {"command": [sys.executable, str(SERVER), str(notes)], **extra}}


def test_read_only_tools_join_the_registry_and_side_effects_need_allowing(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    tools = build_tools(load_settings(mcp_servers=notes_server(notes)))
    assert {"notes_word_count", "notes_lookup_unit", "notes_crash"} <= set(tools)
    assert "notes_append_note" not in tools, "append_note changes something: offered only when allowed"
    assert run_tool(tools, "notes_word_count", {"text": "one two three"}) == "3"
    assert "(MCP server notes)" in tools["notes_lookup_unit"].description
    with pytest.raises(Exception, match="invalid arguments"):
        run_tool(tools, "notes_word_count", {"words": "x"})
    allowed = build_tools(load_settings(mcp_servers=notes_server(notes, allow=["append_note"])))
    assert run_tool(allowed, "notes_append_note", {"text": "remember the milk"}) == "noted"
    assert notes.read_text() == "remember the milk\n"


def test_a_tool_error_and_a_crashed_server_fail_only_their_call(tmp_path: Path) -> None:
    tools = build_tools(load_settings(mcp_servers=notes_server(tmp_path / "n.txt")))
    with pytest.raises(ToolFailed, match="notes_lookup_unit: Error executing tool lookup_unit"):
        run_tool(tools, "notes_lookup_unit", {"unit": "parsec"})
    with pytest.raises(ToolFailed, match="MCP server 'notes' failed"):
        run_tool(tools, "notes_crash", {"reason": "test"})
    # Each call has its own session: the next one starts the server afresh.
    assert run_tool(tools, "notes_lookup_unit", {"unit": "mile"}) == "1609.344 metres"


def test_a_server_that_cannot_start_is_a_clear_error(tmp_path: Path) -> None:
    broken = {"broken": {"command": [sys.executable, str(tmp_path / "absent.py")], "timeout": 20}}
    with pytest.raises(ConfigError, match="cannot list the tools of MCP server 'broken'") as info:
        build_tools(load_settings(mcp_servers=broken))
    assert "mcp_servers.broken" in (info.value.hint or "")


async def test_a_chain_calls_an_mcp_tool_in_a_scripted_team_run(tmp_path: Path) -> None:
    from conclave.workflows.runner import build_context, run_question

    from tests.unit.test_knowledge_answers import Recording, text_of
    from tests.unit.test_team import answer

    settings = load_settings(
        mcp_servers=notes_server(tmp_path / "n.txt"), coa={"plan": "auto", "form": "program", "use_critic": "auto"}
    )
    program = (
        '```python\n# how many metres a mile is, from the units server\nmile = notes_lookup_unit("mile")\n'
        "answer = mile\n```"
    )
    client = Recording([program])
    tools = build_tools(settings)
    ctx = await build_context(
        "How many metres is a mile?",
        settings,
        method="coa",
        knowledge=False,
        tools=tools,
        clients={role: client for role in ("planner", "reasoner", "critic", "writer")},
    )
    events = [e async for e in run_question(ctx)]
    step = next(e for e in events if e.kind == "step_finished")
    assert step.tool == "notes_lookup_unit" and step.status == "ok"
    assert answer(events).value == "1609.344 metres" and events[-1].ok
    # The reasoner was told about the tool, with its arguments and where it comes from.
    assert "- notes_lookup_unit(unit: string): What one unit is in SI base units" in text_of(client.calls[0])


def test_the_cli_lists_and_runs_mcp_tools(tmp_path: Path, conclave_home: Path) -> None:
    from conclave.cli.main import app

    (conclave_home / "settings.toml").write_text(
        f"[mcp_servers.notes]\ncommand = {json.dumps([sys.executable, str(SERVER), str(tmp_path / 'n.txt')])}\n",
        encoding="utf-8",
    )
    listed = CliRunner().invoke(app, ["tools", "--json"])
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.stdout)["notes_word_count"]["parameters"]["required"] == ["text"]
    ran = CliRunner().invoke(app, ["tool", "notes_word_count", "--arg", "text=a b"])
    assert ran.exit_code == 0 and ran.stdout.strip() == "2"
    failed = CliRunner().invoke(app, ["tool", "notes_crash", "--arg", "reason=x"])
    assert isinstance(failed.exception, ToolFailed)


def test_a_working_folders_env_cannot_name_mcp_servers(tmp_path: Path, conclave_home: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text('CONCLAVE_MCP_SERVERS={"evil": {"command": ["sh", "-c", "echo pwned"]}}\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="MCP servers start programs"):
        load_settings_with_origins(dotenv_path=dotenv, env={"CONCLAVE_HOME": str(conclave_home)})


def test_a_workflow_file_cannot_name_mcp_servers(tmp_path: Path) -> None:
    from conclave.workflows.files.run import workflow_settings
    from conclave.workflows.files.schema import load_workflow

    path = tmp_path / "wf.yaml"
    path.write_text(
        "version: 1\nname: w\nsettings:\n  mcp_servers:\n    evil:\n      command: [sh, -c, 'echo pwned']\n"
        "steps:\n  - ask:\n      question: hi\n",
        encoding="utf-8",
    )
    with pytest.raises(WorkflowError, match="cannot name MCP servers"):
        workflow_settings(load_workflow(path), load_settings(), allow_endpoint_overrides=True)
