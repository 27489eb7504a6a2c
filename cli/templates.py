"""``conclave templates``: the saved ``ask`` set-ups (conclave/templates.py)."""

from __future__ import annotations

import json

import typer
from rich.console import Console

from conclave.terminal import escape_markup

_out = Console(highlight=False, soft_wrap=True, emoji=False)

templates_app = typer.Typer(
    help="Saved ask set-ups: `conclave ask --save NAME ...`, then `conclave ask -t NAME ...`.",
    invoke_without_command=True,
)


def _home() -> object:
    from conclave.settings import load_settings

    return load_settings().home


@templates_app.callback()
def list_all(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List the saved templates."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.table import Table

    from conclave.templates import list_templates

    found = list_templates(_home())  # type: ignore[arg-type]
    if as_json:
        typer.echo(json.dumps({name: t.model_dump(exclude_none=True) if t else None for name, t in found}))
        return
    if not found:
        _out.print('no templates yet: save one with conclave ask --save NAME --system "..." "question"')
        return
    table = Table(title="Templates (conclave ask -t NAME)", title_justify="left")
    for column in ("name", "model", "method", "collection", "options", "system"):
        table.add_column(column, overflow="fold")
    for name, t in found:
        if t is None:
            table.add_row(escape_markup(name), "[red]not a valid template[/]", "", "", "", "")
            continue
        table.add_row(
            escape_markup(name),
            escape_markup(t.model or ""),
            escape_markup(t.method or ""),
            escape_markup(t.collection or ""),
            escape_markup(", ".join(f"{k}={v}" for k, v in t.options.items())),
            escape_markup(t.system or ""),
        )
    _out.print(table)


@templates_app.command("show")
def show(name: str = typer.Argument(..., help="Template name.")) -> None:
    """Print one template as JSON."""
    from conclave.templates import load_template

    typer.echo(load_template(_home(), name).model_dump_json(indent=2, exclude_none=True))  # type: ignore[arg-type]


@templates_app.command("rm")
def remove(name: str = typer.Argument(..., help="Template name.")) -> None:
    """Delete a template."""
    from conclave.templates import delete_template

    delete_template(_home(), name)  # type: ignore[arg-type]
    _out.print(f"deleted template {escape_markup(name)}")


def register(app: typer.Typer) -> None:
    app.add_typer(templates_app, name="templates")
