"""Knowledge and tool commands: ingest, collections, search, forget, tools, tool.

``register(app)`` adds them to the ``conclave`` app. Heavy imports (Chroma, the embedding model, LangChain) happen
inside the commands so that ``conclave --help`` stays fast.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import typer
from conclave.cli import cli_settings
from rich.console import Console

from conclave.errors import ToolInputError
from conclave.terminal import escape_markup as escape
from conclave.terminal import safe_text

__all__ = ["parse_tool_args", "register"]

_out = Console(highlight=False, soft_wrap=True, emoji=False)
_err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)
_MAX_SKIPPED_SHOWN = 20


def _display_path(source: str) -> str:
    """A source path relative to the working directory when it lies below it."""
    try:
        rel = os.path.relpath(source)
    except ValueError:
        return source
    return source if rel.startswith("..") else rel


def parse_tool_args(pairs: list[str], schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """``key=value`` pairs to a dict; values are JSON when they parse (unless the schema says string)."""
    props = (schema or {}).get("properties", {})
    args: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ToolInputError(f"--arg {pair!r} is not key=value", hint='e.g. --arg expression="2 * 3"')
        if props.get(key, {}).get("type") == "string":
            args[key] = raw
            continue
        try:
            args[key] = json.loads(raw)
        except json.JSONDecodeError:
            args[key] = raw
    return args


def ingest(
    paths: list[Path] = typer.Argument(..., help="Files and folders to ingest."),
    collection: str | None = typer.Option(None, "--collection", "-c", help="Collection to fill (default: settings)."),
    include: list[str] = typer.Option([], "--include", help="Only files matching this glob (repeatable)."),
    exclude: list[str] = typer.Option([], "--exclude", help="Skip files matching this glob (repeatable)."),
    prune: bool = typer.Option(False, "--prune", help="Remove chunks of files under PATHS that are gone."),
    follow_links: bool = typer.Option(
        False,
        "--follow-links",
        help="Also read links in the folders that point at files outside them (skipped and listed otherwise).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Ingest Markdown, text, reST, HTML, PDF and source files; unchanged files are skipped.

    Only regular files are read (after links), each of at most max_file_mb (CONCLAVE_MAX_FILE_MB, default 50);
    a link in a folder whose file lies outside that folder is skipped unless --follow-links. The report lists
    every skipped file with its reason."""
    from conclave.tools.ingest import IngestProgress
    from conclave.tools.ingest import ingest as run_ingest
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    settings = cli_settings()
    name = settings.collection if collection is None else collection
    columns = (
        TextColumn("[bold]ingest[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("files"),
        TextColumn("{task.fields[chunks]} chunks, {task.fields[rate]:.1f} chunks/s"),
        TimeElapsedColumn(),
        TextColumn("[dim]{task.fields[current]}[/]"),
    )
    with Progress(*columns, console=_err, transient=True, disable=as_json) as bar:
        task = bar.add_task("ingest", total=None, chunks=0, rate=0.0, current="")

        def on_progress(p: IngestProgress) -> None:
            rate = p.chunks_added / p.elapsed if p.elapsed > 0 else 0.0
            bar.update(
                task,
                total=p.files_total,
                completed=p.files_done,
                chunks=p.chunks_added,
                rate=rate,
                current=escape(p.current[-50:]),
            )

        report = run_ingest(
            paths,
            name,
            settings,
            include=include,
            exclude=exclude,
            prune=prune,
            follow_links=follow_links,
            progress=on_progress,
            on_warning=lambda message: _err.print(f"[yellow]warning:[/] {escape(message)}"),
        )
    if as_json:
        typer.echo(json.dumps(report.to_dict()))
        return
    _print_report(report)


def collections(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List collections with their chunk counts and embedders."""
    from conclave.tools.store import KnowledgeStore
    from rich.table import Table

    settings = cli_settings()
    infos = KnowledgeStore.open(settings).list_collections_sync()
    if as_json:
        typer.echo(json.dumps([i.__dict__ for i in infos]))
        return
    if not infos:
        _out.print("No collections yet. Create one with `conclave ingest PATH --collection NAME`.")
        return
    table = Table(
        title=f"Collections in {escape(settings.chroma_url or str(settings.chroma_path))}",
        title_justify="left",
    )
    table.add_column("name")
    table.add_column("chunks", justify="right")
    table.add_column("embedder")
    table.add_column("dim", justify="right")
    for info in infos:
        table.add_row(escape(info.name), str(info.count), escape(info.embedder), str(info.dimension or "?"))
    _out.print(table)


def search(
    query: str = typer.Argument(..., help="What to look for."),
    k: int = typer.Option(5, "-k", "--k", min=1, max=100, help="How many passages."),
    collection: str | None = typer.Option(None, "--collection", "-c", help="Collection (default: settings)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show the passages most similar to QUERY, best first, with scores and sources."""
    from conclave.tools.demo import DEMO_COLLECTION, ensure_demo_named
    from conclave.tools.store import KnowledgeStore

    settings = cli_settings()
    name = settings.collection if collection is None else collection
    store = KnowledgeStore.open(settings)
    if name == DEMO_COLLECTION and ensure_demo_named(settings, store):
        _err.print(f"[dim]ingested the demo notes into collection {DEMO_COLLECTION!r} (first use)[/]")
    passages = store.search_sync(query, k, name)
    if as_json:
        typer.echo(json.dumps([p.__dict__ for p in passages], ensure_ascii=False))
        return
    if not passages:
        _out.print(f"No passages in collection {escape(repr(name))}.")
        return
    for rank, p in enumerate(passages, 1):
        text = " ".join(p.text.split())
        if len(text) > 300:
            text = text[:299] + "…"
        title = f" — {escape(p.title)}" if p.title else ""
        chunk_id = escape("[" + p.id[:12] + "]")
        _out.print(
            f"[bold]{rank}.[/] [cyan]{p.score:.3f}[/]  {escape(_display_path(p.source))}{title}  [dim]{chunk_id}[/]"
        )
        _out.print(f"   {escape(text)}")


def forget(
    name: str = typer.Argument(..., help="Collection to delete."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Delete a collection and all its chunks."""
    from conclave.tools.store import KnowledgeStore

    store = KnowledgeStore.open(cli_settings())
    count = store.count_sync(name)
    if not yes and not typer.confirm(f"Delete collection {name!r} with {count} chunks?", default=False):
        _err.print("Nothing deleted.")
        raise typer.Exit(1)
    store.forget_sync(name)
    _out.print(f"Deleted collection {escape(repr(name))} ({count} chunks).")


def list_tools(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List the tools with their argument schemas (and the tools plugins that could not be loaded)."""
    from conclave.tools.mcp import hidden_tools, why_hidden
    from conclave.tools.toolset import TOOL_PLUGINS, build_tools, tool_schemas

    settings = cli_settings()
    schemas = tool_schemas(build_tools(settings))
    if as_json:
        typer.echo(json.dumps(schemas))
        return
    from rich.table import Table

    table = Table(title="Tools (schemas: conclave tools --json)", title_justify="left")
    table.add_column("tool", style="bold")
    table.add_column("arguments")
    table.add_column("what it does", overflow="fold")
    for name, info in schemas.items():
        params = info["parameters"]
        required = set(params.get("required") or [])
        arguments = ", ".join(
            f"{arg}: {spec.get('type', 'any')}" + ("" if arg in required else " (optional)")
            for arg, spec in (params.get("properties") or {}).items()
        )
        table.add_row(escape(name), escape(arguments), escape(info["description"]))
    hidden = hidden_tools(settings)
    for tool in hidden:
        reason, _, _ = why_hidden(settings, tool).partition("; ")
        table.add_row(f"[dim]{escape(tool.conclave_name)}[/]", "", escape(reason))
    _out.print(table)
    for tool in hidden:  # one line each, so the setting can be copied whole
        _, _, fix = why_hidden(settings, tool).partition("; ")
        _out.print(f"[yellow]{escape(tool.conclave_name)}[/]: {escape(fix)}")
    for line in TOOL_PLUGINS.plugin_errors:
        _out.print(f"[yellow]plugin not loaded:[/] {escape(line)}")


def _refuse_hidden(settings: Any, registry: Any, name: str) -> None:
    """A hidden MCP tool is named as such, with the setting that allows it (not as an unknown tool)."""
    if name in registry or not settings.mcp_servers:
        return
    from conclave.tools.mcp import hidden_tools, why_hidden

    for tool in hidden_tools(settings):
        if name in (tool.conclave_name, tool.name):
            reason, _, fix = why_hidden(settings, tool).partition("; ")
            raise ToolInputError(f"{name} is {reason}", hint=fix)


def run_one_tool(
    name: str = typer.Argument(..., help="Tool name (see `conclave tools`)."),
    arg: list[str] = typer.Option([], "--arg", "-a", help="key=value (value parsed as JSON when it parses)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Run one tool directly, e.g. `conclave tool calculator --arg expression="2 * 3"`.

    For search_knowledge, `--arg collection=NAME` and `--arg k=N` choose what a run would bind (a model calling
    the tool can pass only `query`)."""
    from conclave.tools.toolset import build_tools, run_tool, tool_schemas

    bound: dict[str, Any] = {}
    if name == "search_knowledge":
        run_args = [a for a in arg if a.partition("=")[0].strip() in ("collection", "k")]
        arg = [a for a in arg if a not in run_args]
        bound = parse_tool_args(run_args, {"properties": {"collection": {"type": "string"}, "k": {"type": "integer"}}})
        if "k" in bound and (not isinstance(bound["k"], int) or not 1 <= bound["k"] <= 50):
            raise ToolInputError(
                f"search_knowledge: k must be a whole number from 1 to 50, got {bound['k']!r}",
                hint="e.g. --arg k=5",
            )
    settings = cli_settings()
    registry = build_tools(settings, collection=bound.get("collection"), k=bound.get("k"))
    _refuse_hidden(settings, registry, name)
    schema = tool_schemas(registry).get(name, {}).get("parameters")
    args = parse_tool_args(arg, schema)
    result = run_tool(registry, name, args)
    note = None
    exact = None
    if name == "calculator":
        from conclave.tools.calculator import evaluate

        exact = evaluate(str(args["expression"])).exact
        if not exact:
            note = "rounded: the exact value has more digits (12 decimal places, at least 12 significant digits)"
    if as_json:
        payload: dict[str, Any] = {"tool": name, "args": args, "result": result}
        if exact is not None:
            payload["exact"] = exact
        typer.echo(json.dumps(payload, ensure_ascii=False))
        return
    typer.echo(safe_text(result))  # a search_knowledge result holds document text
    if note:
        _err.print(f"[dim]note: {note}[/]")


def register(app: typer.Typer) -> None:
    """Add the knowledge and tool commands to ``app``."""
    app.command()(ingest)
    app.command()(collections)
    app.command()(search)
    app.command()(forget)
    app.command("tools")(list_tools)
    app.command("tool")(run_one_tool)


def _print_report(report: Any) -> None:
    from rich.table import Table

    table = Table(title=f"Ingested into {escape(repr(report.collection))}", title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("count", justify="right")
    rows = [
        ("files seen", report.files_seen),
        ("files ingested (new or changed)", report.files_ingested),
        ("files unchanged", report.files_unchanged),
        ("files skipped", report.files_skipped),
        ("files pruned", report.files_pruned),
        ("chunks added", report.chunks_added),
        ("chunks removed", report.chunks_removed),
        ("chunks in collection", report.chunks_total),
    ]
    for what, count in rows:
        table.add_row(what, str(count))
    table.add_row("seconds", f"{report.seconds:.1f}")
    _out.print(table)
    if report.skipped:
        skipped = Table(title="Skipped files", title_justify="left")
        skipped.add_column("file", overflow="fold")
        skipped.add_column("reason")
        for item in report.skipped[:_MAX_SKIPPED_SHOWN]:
            skipped.add_row(escape(item.path), escape(item.reason))
        if len(report.skipped) > _MAX_SKIPPED_SHOWN:
            skipped.add_row(f"… and {len(report.skipped) - _MAX_SKIPPED_SHOWN} more", "")
        _out.print(skipped)
