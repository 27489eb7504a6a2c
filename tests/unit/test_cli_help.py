"""Every command's help reads like a command line (issue 17 §7): metavars say what a value is, flags have none."""

from __future__ import annotations

import re

import click
import pytest
import typer.main
from typer.testing import CliRunner

from conclave.cli.main import app
from conclave.cli.metavars import metavar_for


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
