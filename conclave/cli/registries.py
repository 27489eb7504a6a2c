"""``conclave methods`` and ``conclave scorers``: what the method and scorer registries hold, plugins included."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console

from conclave.terminal import escape_markup as escape

_out = Console(highlight=False)


def _plugin_problems(errors: list[str]) -> None:
    for line in errors:
        _out.print(f"[yellow]plugin not loaded:[/] {escape(line)}")


def register(app: typer.Typer) -> None:
    @app.command("methods")
    def list_methods(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
        """List the methods questions can be answered with (built-in and from plugins)."""
        from conclave.workflows.methods import METHODS

        rows = [
            {"name": m.name, "summary": m.summary, "knowledge": m.knowledge, "value": m.value, "variants": m.options}
            for m in METHODS
        ]
        if as_json:
            typer.echo(json.dumps(rows))
            return
        from rich.table import Table

        table = Table(
            title="Methods (--method NAME; plugins: entry-point group conclave.methods)", title_justify="left"
        )
        table.add_column("method", style="bold")
        table.add_column("searches", justify="center")
        table.add_column("what it does", overflow="fold")
        for row in rows:
            table.add_row(escape(row["name"]), "yes" if row["knowledge"] else "", escape(row["summary"]))
        _out.print(table)
        _plugin_problems(METHODS.plugin_errors)

    @app.command("scorers")
    def list_scorers(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
        """List the evaluation scorers (built-in and from plugins)."""
        from conclave.workflows.evaluation.scorers import SCORERS

        rows: list[dict[str, Any]] = [
            {"name": s.name, "summary": s.summary, "judge": s.judge, "aliases": list(SCORERS.aliases_of(s.name))}
            for s in SCORERS
        ]
        if as_json:
            typer.echo(json.dumps(rows))
            return
        from rich.table import Table

        table = Table(
            title="Scorers (--scorer NAME; plugins: entry-point group conclave.scorers)", title_justify="left"
        )
        table.add_column("scorer", style="bold")
        table.add_column("also", style="dim")
        table.add_column("judge", justify="center")
        table.add_column("what it measures", overflow="fold")
        for row in rows:
            table.add_row(
                escape(row["name"]),
                escape(", ".join(row["aliases"])),
                "yes" if row["judge"] else "",
                escape(row["summary"]),
            )
        _out.print(table)
        _plugin_problems(SCORERS.plugin_errors)
