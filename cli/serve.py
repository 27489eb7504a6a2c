"""``conclave serve`` (an OpenAI-compatible API) and ``conclave mcp`` (an MCP server): thin wrappers over
``conclave.server``, which does the work."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from conclave.terminal import escape_markup

_err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)

MODEL_HELP = "A model requests may choose (repeatable; the first is the default): embedded, ollama/NAME, openai/NAME."
COLLECTION_HELP = "A collection requests may search (repeatable; the first is the default; default: settings)."


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_port_free(host: str, port: int) -> None:
    """A ConfigError now, rather than uvicorn's log lines later, when ``host:port`` cannot be listened on."""
    from conclave.errors import ConfigError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                hint="choose another --port, or stop what is listening there",
            ) from None


def _team(model: list[str], collection: list[str], method: str | None, queue: int) -> Any:
    from conclave.cli import cli_settings
    from conclave.server.service import Team
    from conclave.tools.store import validate_collection_name

    from conclave.models.backends import parse_spec

    for spec in model:
        parse_spec(spec)
    for name in collection:
        validate_collection_name(name)
    settings = cli_settings(method=method)
    settings.register_secrets()
    return Team(settings, models=model, collections=collection, queue=queue)


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on; beyond loopback needs --api-key."),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="Port to listen on."),
    api_key: str | None = typer.Option(
        None,
        "--api-key",
        help="The key clients must send (Authorization: Bearer KEY); default: the serve_api_key setting "
        "(CONCLAVE_SERVE_API_KEY).",
    ),
    model: list[str] = typer.Option([], "--model", "-m", help=MODEL_HELP),
    collection: list[str] = typer.Option([], "--collection", "-c", help=COLLECTION_HELP),
    method: str | None = typer.Option(None, "--method", help="The method of plain `conclave` requests."),
    queue: int = typer.Option(
        8, "--queue", min=0, max=1000, help="Requests that may wait for a busy model (429 past)."
    ),
) -> None:
    """Serve the team behind an OpenAI-compatible API: POST /v1/chat/completions, GET /v1/models.

    Model names choose the method and model: conclave, conclave/rag, conclave/coa:k=3, conclave/rag@embedded
    (GET /v1/models lists them). Listens on 127.0.0.1 unless --host says otherwise, which needs an API key."""
    from conclave.server.openai_api import model_ids, run_server

    from conclave.errors import ConfigError

    team = _team(model, collection, method, queue)
    key = api_key or (
        team.settings.serve_api_key.get_secret_value() if team.settings.serve_api_key is not None else None
    )
    if key is not None:
        from conclave.redact import register_secret

        register_secret(key)
    if not is_loopback(host) and not key:
        raise ConfigError(
            f"--host {host} would let other machines ask this team without a key",
            hint="set a key (CONCLAVE_SERVE_API_KEY=... or --api-key KEY), or keep the default --host 127.0.0.1",
        )
    _check_port_free(host, port)
    names = model_ids(team)
    _err.print(
        f"conclave serve: http://{escape_markup(host)}:{port}/v1 ({len(names)} model names, e.g. "
        f"{escape_markup(', '.join(names[:3]))}; collections: {escape_markup(', '.join(team.collections))}"
        f"{'; API key required' if key else ''}). Loading the model, then serving; Ctrl-C stops."
    )
    run_server(team, host=host, port=port, api_key=key)


def mcp(
    http: bool = typer.Option(False, "--http", help="Serve streamable HTTP at http://HOST:PORT/mcp (default: stdio)."),
    host: str = typer.Option("127.0.0.1", "--host", help="With --http: a loopback address to listen on."),
    port: int = typer.Option(8765, "--port", min=1, max=65535, help="With --http: the port."),
    allow_ingest: Path | None = typer.Option(
        None, "--allow-ingest", help="Offer the ingest tool, for files and folders under this folder only."
    ),
    model: list[str] = typer.Option([], "--model", "-m", help=MODEL_HELP),
    collection: list[str] = typer.Option([], "--collection", "-c", help=COLLECTION_HELP),
    method: str | None = typer.Option(None, "--method", help="The method of ask calls that name none."),
) -> None:
    """Serve the team as an MCP server (tools: ask, search, list_collections; ingest with --allow-ingest) over
    stdio, for Claude Desktop and other MCP clients, or over streamable HTTP with --http."""
    from conclave.server.mcp_server import run_http, run_stdio

    from conclave.errors import ConfigError

    if allow_ingest is not None and not allow_ingest.is_dir():
        raise ConfigError(
            f"--allow-ingest {allow_ingest}: not a folder", hint="give the folder whose files ingest may read"
        )
    team = _team(model, collection, method, 8)
    if not http:
        run_stdio(team, allow_ingest=allow_ingest)
        return
    if not is_loopback(host):
        raise ConfigError(
            f"conclave mcp --http listens on loopback only, not {host}: it has no key of its own",
            hint="keep the default --host 127.0.0.1 (put an authenticating proxy in front to reach it from elsewhere)",
        )
    _check_port_free(host, port)
    _err.print(f"conclave mcp: http://{escape_markup(host)}:{port}/mcp (streamable HTTP); Ctrl-C stops.")
    run_http(team, host=host, port=port, allow_ingest=allow_ingest)


def register(app: typer.Typer) -> None:
    """Add ``serve`` and ``mcp`` to the main app."""
    app.command("serve")(serve)
    app.command("mcp")(mcp)
