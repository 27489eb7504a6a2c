"""``conclave methods`` and ``conclave scorers``: what the method and scorer registries hold, plugins included."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import typer
from rich.console import Console

from conclave.terminal import escape_markup as escape

_out = Console(highlight=False)

Column = tuple[str, Callable[[dict[str, Any]], str], dict[str, Any]]
"""A table column: its header, the cell text of a row, and Rich column options."""


def _yes(key: str) -> Callable[[dict[str, Any]], str]:
    return lambda row: "yes" if row[key] else ""


def _show(
    rows: list[dict[str, Any]], as_json: bool, title: str, columns: Sequence[Column], plugin_errors: list[str]
) -> None:
    """The rows as JSON, or as a table followed by the plugins that could not be loaded."""
    if as_json:
        typer.echo(json.dumps(rows))
        return
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for header, _, options in columns:
        table.add_column(header, **options)
    for row in rows:
        table.add_row(*(escape(cell(row)) for _, cell, _ in columns))
    _out.print(table)
    for line in plugin_errors:
        _out.print(f"[yellow]plugin not loaded:[/] {escape(line)}")


def list_methods(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List the methods questions can be answered with (built-in and from plugins)."""
    from conclave.workflows.methods import METHODS

    rows = [
        {"name": m.name, "summary": m.summary, "knowledge": m.knowledge, "value": m.value, "variants": m.options}
        for m in METHODS
    ]
    columns: list[Column] = [
        ("method", lambda r: r["name"], {"style": "bold"}),
        ("searches", _yes("knowledge"), {"justify": "center"}),
        ("what it does", lambda r: r["summary"], {"overflow": "fold"}),
    ]
    title = "Methods (--method NAME; plugins: entry-point group conclave.methods)"
    _show(rows, as_json, title, columns, METHODS.plugin_errors)


def list_scorers(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List the evaluation scorers (built-in and from plugins)."""
    from conclave.workflows.evaluation.scorers import SCORERS

    rows = [
        {"name": s.name, "summary": s.summary, "judge": s.judge, "aliases": list(SCORERS.aliases_of(s.name))}
        for s in SCORERS
    ]
    columns: list[Column] = [
        ("scorer", lambda r: r["name"], {"style": "bold"}),
        ("also", lambda r: ", ".join(r["aliases"]), {"style": "dim"}),
        ("judge", _yes("judge"), {"justify": "center"}),
        ("what it measures", lambda r: r["summary"], {"overflow": "fold"}),
    ]
    title = "Scorers (--scorer NAME; plugins: entry-point group conclave.scorers)"
    _show(rows, as_json, title, columns, SCORERS.plugin_errors)


def register(app: typer.Typer) -> None:
    app.command("methods")(list_methods)
    app.command("scorers")(list_scorers)
