"""Issue 29, item 6: a tool the allow-list hides is listed by ``conclave tools`` as hidden, with the reason and the
exact setting that allows it; ``allow`` takes the name as ``conclave tools`` shows it (``notes_append_note``) as well
as the server's own (``append_note``). Against the real stdio MCP server of tests/servers/mcp_notes.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conclave.cli.main import app
from conclave.tools.toolset import build_tools, run_tool
from typer.testing import CliRunner

from conclave.settings import load_settings
from tests.integration.test_mcp_tools import SERVER, notes_server

pytestmark = pytest.mark.integration


def write_settings(home: Path, notes: Path, allow: list[str] | None = None) -> None:
    lines = ["[mcp_servers.notes]", f"command = {json.dumps([sys.executable, str(SERVER), str(notes)])}"]
    if allow is not None:
        lines.append(f"allow = {json.dumps(allow)}")
    (home / "settings.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_conclave_tools_lists_a_hidden_tool_with_its_reason_and_the_setting_that_allows_it(
    tmp_path: Path, conclave_home: Path
) -> None:
    write_settings(conclave_home, tmp_path / "n.txt", allow=["lookup_unit"])
    listed = CliRunner().invoke(app, ["tools"], env={"COLUMNS": "250"})
    assert listed.exit_code == 0, listed.output
    text = " ".join(listed.output.split())
    assert "notes_append_note" in text and "hidden" in text
    assert "not marked read-only" in text
    assert 'allow = ["lookup_unit", "append_note"]' in text and "[mcp_servers.notes]" in text
    # The JSON listing keeps to the tools a run can call; the hidden ones are listed apart.
    data = json.loads(CliRunner().invoke(app, ["tools", "--json"]).stdout)
    assert "notes_append_note" not in data


def test_calling_a_hidden_tool_says_which_setting_allows_it(tmp_path: Path, conclave_home: Path) -> None:
    write_settings(conclave_home, tmp_path / "n.txt")
    ran = CliRunner().invoke(app, ["tool", "notes_append_note", "--arg", "text=x"])
    assert ran.exit_code != 0
    message = f"{ran.exception.message} {ran.exception.hint}"  # type: ignore[union-attr]
    assert "hidden" in message and 'allow = ["append_note"]' in message
    assert not (tmp_path / "n.txt").exists()


@pytest.mark.parametrize("allowed_as", ["notes_append_note", "append_note"])
def test_allow_accepts_the_name_conclave_tools_shows_or_the_servers_own(tmp_path: Path, allowed_as: str) -> None:
    notes = tmp_path / "notes.txt"
    tools = build_tools(load_settings(mcp_servers=notes_server(notes, allow=[allowed_as])))
    assert run_tool(tools, "notes_append_note", {"text": "remember the milk"}) == "noted"
    assert notes.read_text() == "remember the milk\n"
