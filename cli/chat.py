"""``conclave chat`` (the Textual chat) and ``conclave sessions`` (list, export, rename, delete saved chats)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer
from conclave.workflows.methods import method_help

from conclave.terminal import escape_markup, safe_text

__all__ = ["register"]

sessions_app = typer.Typer(help="Saved chat sessions: list, export, rename, delete.", no_args_is_help=True)


def chat(
    session: str | None = typer.Option(None, "--session", "-s", help="Resume a session (id or unique prefix)."),
    model: str | None = typer.Option(
        None, "--model", "-m", help="Model spec for every role (embedded, ollama/NAME, openai/NAME)."
    ),
    method: str | None = typer.Option(None, "--method", help=f"{method_help()}."),
    collection: str | None = typer.Option(None, "--collection", "-c", help="Knowledge collection to search."),
) -> None:
    """Chat in the terminal: streamed answers, the live trace, sources, saved sessions (F1 lists the keys)."""
    from conclave.cli.main import settings_from_cli
    from conclave.tui import create_app

    variant = None
    if method is not None:
        from conclave.workflows.runner import parse_method

        if parse_method(method)[1]:
            variant, method = method, None  # a coa variant: applied to the app's settings below
    if model is not None:
        from conclave.models.backends import parse_spec

        parse_spec(model)
    flags: dict[str, Any] = {"model": model, "method": method, "collection": collection}
    settings = settings_from_cli(**flags)
    pinned = {name for name, value in flags.items() if value is not None}
    if variant is not None:
        from conclave.workflows.runner import apply_method

        name, settings = apply_method(settings, variant)
        settings = settings.model_copy(update={"method": name})
        pinned |= {"method", "coa"}
    if model is not None:
        pinned.add("roles")
    app = create_app(settings, session_id=session, pinned=pinned)
    app.run()


def _store() -> Any:
    from conclave.cli.main import settings_from_cli

    from conclave.sessions import SessionStore

    return SessionStore.open(settings_from_cli())


@sessions_app.command("list")
def sessions_list(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List saved sessions, most recent first."""
    from conclave.cli.main import out
    from rich.table import Table

    from conclave.sessions import SessionInfo

    sessions: list[SessionInfo] = _store().list_sessions()
    if as_json:
        typer.echo(
            json.dumps(
                [
                    {"id": s.id, "title": s.title, "created": s.created, "updated": s.updated, "messages": s.messages}
                    for s in sessions
                ]
            )
        )
        return
    if not sessions:
        out.print("no sessions yet: start one with `conclave chat`")
        return
    from datetime import datetime

    table = Table(title="Sessions (resume with `conclave chat --session ID`)", title_justify="left")
    table.add_column("id")
    table.add_column("title", overflow="fold")
    table.add_column("messages", justify="right")
    table.add_column("updated")
    for s in sessions:
        table.add_row(
            escape_markup(s.id),
            escape_markup(s.title) if s.title else "(untitled)",
            str(s.messages),
            datetime.fromtimestamp(s.updated).strftime("%Y-%m-%d %H:%M"),
        )
    out.print(table)


@sessions_app.command("export")
def sessions_export(
    session: str = typer.Argument(..., help="Session id (or unique prefix)."),
    fmt: str = typer.Option("md", "--format", "-f", help="md or json."),
    output: Path | None = typer.Option(None, "--output", "-o", help="File to write (default: print)."),
) -> None:
    """Export a session as Markdown or JSON (with traces)."""
    from conclave.errors import ConfigError
    from conclave.sessions import export_json, export_markdown

    if fmt not in ("md", "json"):
        raise ConfigError(f"unknown format {fmt!r}", hint="use --format md or --format json")
    store = _store()
    if output is not None:
        written = store.export(session, output, fmt)
        typer.echo(f"exported to {safe_text(written)}")
        return
    info = store.get(session)
    messages = store.messages(info.id)
    if fmt == "md":
        text = export_markdown(info, messages)
    else:
        text = json.dumps(export_json(info, messages), indent=2, ensure_ascii=False, default=str) + "\n"
    # Piped or redirected, the export is exact; on a terminal, escape sequences in stored answers are not run.
    typer.echo(safe_text(text) if sys.stdout.isatty() else text, nl=False)


@sessions_app.command("rename")
def sessions_rename(
    session: str = typer.Argument(..., help="Session id (or unique prefix)."),
    title: str = typer.Argument(..., help="The new title."),
) -> None:
    """Rename a session."""
    info = _store().rename(session, title)
    typer.echo(safe_text(f"{info.id}: {info.title}"))


@sessions_app.command("delete")
def sessions_delete(
    session: str = typer.Argument(..., help="Session id (or unique prefix)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Delete a session and its messages."""
    store = _store()
    info = store.get(session)
    if not yes and not typer.confirm(safe_text(f"delete session {info.id} “{info.title}” ({info.messages} messages)?")):
        raise typer.Exit(1)
    store.delete(info.id)
    typer.echo(safe_text(f"deleted {info.id}"))


def register(app: typer.Typer) -> None:
    """Add ``chat`` and ``sessions`` to the ``conclave`` command."""
    app.command("chat")(chat)
    app.add_typer(sessions_app, name="sessions")
