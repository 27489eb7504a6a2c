"""``conclave trust``: allow a working folder's ``.env`` to set endpoints, keys, the home and model paths
(conclave/trust.py keeps the allowances; conclave/settings.py applies them)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from conclave.terminal import escape_markup

if TYPE_CHECKING:
    from conclave.trust import TrustEntry

_out = Console(highlight=False, soft_wrap=True, emoji=False)


def trust(
    path: Path = typer.Argument(Path(".env"), help="The .env file (default: ./.env)."),
    revoke: bool = typer.Option(False, "--revoke", help="Withdraw the allowance of PATH."),
    list_all: bool = typer.Option(False, "--list", help="List the allowed files and whether each still holds."),
    as_json: bool = typer.Option(False, "--json", help="With --list: print JSON."),
) -> None:
    """Allow the .env file PATH, as it is now, to set endpoints, keys, CONCLAVE_HOME, model paths and the Ray
    cluster; until then Conclave withholds those values and says so. Any edit to the file withdraws the allowance.
    MCP servers are never read from a .env, allowed or not (a server is a program to start)."""
    from conclave import trust as allowances
    from conclave.errors import ConfigError
    from conclave.settings import trusted_home

    store = allowances.store_path(trusted_home())
    if list_all:
        if revoke:
            raise ConfigError("--list and --revoke cannot be used together", hint="run them one at a time")
        _list(allowances.entries(store), store, as_json)
        return
    if revoke:
        held = allowances.revoke(store, path)
        state = "withdrawn" if held else "there was none"
        _out.print(f"allowance of {escape_markup(path.expanduser().resolve())}: {state}")
        return
    entry = allowances.allow(store, path)
    _out.print(
        f"allowed {escape_markup(entry.path)} (sha256 {entry.sha256[:12]}…): its endpoints, keys, home, model paths "
        "and Ray cluster now apply; any edit to it withdraws this (`conclave trust --revoke` does too)"
    )


def _list(found: list[TrustEntry], store: Path, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps([e.__dict__ for e in found]))
        return
    if not found:
        _out.print(f"no .env file is allowed ({escape_markup(store)} lists none)")
        return
    words = {"allowed": "allowed", "changed": "changed since: not trusted", "missing": "gone"}
    for e in found:
        _out.print(f"{escape_markup(e.path)}  {words[e.state]}  (allowed {escape_markup(e.allowed_at)})")


def register(app: typer.Typer) -> None:
    """Add ``trust`` to the main app."""
    app.command("trust")(trust)
