"""Small things of everyday use (issue 17 §7): every command's help reads like a command line (metavars say what a
value is, flags have none); ``config show`` says what an unset model means and where the settings files are."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click
import pytest
import typer.main
from conclave.cli.main import app
from conclave.cli.metavars import metavar_for
from typer.testing import CliRunner


def command_paths() -> list[list[str]]:
    root = typer.main.get_command(app)
    found: list[list[str]] = []

    def walk(command: click.Command, path: list[str]) -> None:
        found.append(path)
        for name, sub in (getattr(command, "commands", None) or {}).items():
            walk(sub, [*path, name])

    walk(root, [])
    return found


PATHS = command_paths()


def test_the_walk_finds_the_commands() -> None:
    names = {" ".join(p) for p in PATHS}
    assert {"", "ask", "eval", "eval compare", "logs", "runs list", "config show"} <= names


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "conclave")
def test_help_shows_no_python_types(path: list[str]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], terminal_width=120)
    assert result.exit_code == 0, result.output
    python_types = re.findall(r"<(?:str|bool|int|float|list|Path|int range|float range)[^>]*>", result.output)
    assert python_types == [], f"{' '.join(path)} --help shows {python_types}"


def test_metavars_by_meaning_then_by_type() -> None:
    eval_command = typer.main.get_command(app).commands["eval"]  # type: ignore[attr-defined]
    by_name = {p.name: p for p in eval_command.params}
    assert metavar_for(by_name["model"]) == "SPEC" and metavar_for(by_name["dataset"]) == "KIND:PATH"
    assert metavar_for(by_name["limit"]) == "N" and metavar_for(by_name["no_cache"]) == ""
    help_text = CliRunner().invoke(app, ["eval", "--help"], terminal_width=120).output
    assert re.search(r"--model\s+-m\s+SPEC", help_text) and re.search(r"--limit\s+-n\s+N \[x>=1\]", help_text)


def test_config_show_says_what_an_unset_model_means_and_where_the_files_are(conclave_home: Path) -> None:
    (conclave_home / "settings.toml").write_text("top_k = 6\n", encoding="utf-8")
    shown = CliRunner().invoke(app, ["config", "show"], terminal_width=200)
    assert shown.exit_code == 0, shown.output
    assert "null (unset: embedded," in shown.output  # the table wraps the rest of the cell
    assert f"settings.toml: {conclave_home / 'settings.toml'} (exists)" in shown.output
    data = json.loads(CliRunner().invoke(app, ["config", "show", "--json"]).output)
    assert data["default_model"] == "embedded" and data["settings"]["top_k"] == 6
    assert data["files"]["settings.toml"] == {"path": str(conclave_home / "settings.toml"), "exists": True}
