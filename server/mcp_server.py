"""``conclave mcp``: the team as an MCP server (the ``mcp`` package's ``MCPServer``), over stdio or streamable HTTP.

Tools: ``ask`` (a question, optionally a method and a collection: the answer with its value and sources),
``search`` (a collection's passages for a query), ``list_collections`` (the collections this server offers, with their
sizes) and, only when the server was started with ``--allow-ingest DIR``, ``ingest`` (files or folders under DIR into
a collection). Every choice is checked against what the server was started with (``service.Team``): no call can
name a model, another collection, or a file outside DIR. Arguments are validated by the SDK against each tool's
schema; a call the client cancels stops its run (the model stops at its next token).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

from conclave.server.service import Refused, Request, Team
from pydantic import BaseModel, Field

from conclave import __version__
from conclave.errors import ConclaveError
from conclave.events import Event, collect

__all__ = ["AskResult", "create_server", "run_http", "run_stdio"]

INSTRUCTIONS = (
    "Conclave answers questions with a team of agents (planner, retriever, reasoner, critic) over your local "
    "knowledge collections, and computes numbers with tools instead of guessing them. Use `ask` for a question, "
    "`search` to read passages, `list_collections` to see what can be searched."
)


class Source(BaseModel):
    source: str
    title: str = ""
    text: str
    score: float


class AskResult(BaseModel):
    """What ``ask`` returns: the answer, and what it rests on."""

    answer: str
    ok: bool
    """The team answered (a value from a checked chain, or a written answer); false with ``error`` saying why."""
    value: str | None = None
    error: str | None = None
    method: str
    sources: list[Source] = []


class Collection(BaseModel):
    name: str
    chunks: int
    default: bool = False


class IngestResult(BaseModel):
    collection: str
    files_ingested: int
    files_unchanged: int
    files_skipped: int
    chunks_added: int
    chunks_total: int
    skipped: list[str] = []


def _sources(passages: list[Any]) -> list[Source]:
    return [Source(source=p.source, title=p.title, text=p.text, score=p.score) for p in passages]


def _refused(exc: ConclaveError) -> Exception:
    from mcp.server.mcpserver.exceptions import ToolError

    return ToolError(exc.message + (f" ({exc.hint})" if exc.hint else ""))


def create_server(team: Team, *, allow_ingest: Path | None = None) -> Any:
    """The MCP server for ``team``; ``allow_ingest``: the one folder ``ingest`` may read (no ``ingest`` without)."""
    from mcp.server import MCPServer
    from mcp.types import ToolAnnotations

    server = MCPServer("conclave", instructions=INSTRUCTIONS, version=__version__)
    reads = ToolAnnotations(read_only_hint=True, open_world_hint=False)

    @server.tool(annotations=reads)
    async def ask(
        question: Annotated[str, Field(min_length=1, max_length=32 * 1024, description="The question to answer.")],
        method: Annotated[
            str | None, Field(description="coa (the team, default), rag, cot, react or direct; coa:k=3 for variants.")
        ] = None,
        collection: Annotated[str | None, Field(description="A collection from list_collections.")] = None,
    ) -> AskResult:
        """Answer a question with the Conclave team, citing the passages it used."""
        try:
            request = team.check(Request(question=question, method=method, collection=collection))
            async with team.limiter(None).slot():
                events = [event async for event in _closing(team.run(request))]
        except ConclaveError as exc:
            raise _refused(exc) from None
        run = collect(events)
        started = next((e for e in events if e.kind == "run_started"), None)
        return AskResult(
            answer=run.text,
            ok=run.ok,
            value=run.value,
            error=None if run.ok else run.error,
            method=getattr(started, "method", method or team.settings.method),
            sources=_sources(run.sources),
        )

    @server.tool(annotations=reads)
    async def search(
        query: Annotated[str, Field(min_length=1, max_length=4096, description="What to look for.")],
        collection: Annotated[str | None, Field(description="A collection from list_collections.")] = None,
        k: Annotated[int, Field(ge=1, le=50, description="How many passages.")] = 5,
    ) -> list[Source]:
        """The passages of a collection most similar to the query, best first."""
        try:
            name = _collection(team, collection)
            store = await team.store()
            return _sources(await store.search(query, k=k, collection=name))
        except ConclaveError as exc:
            raise _refused(exc) from None

    @server.tool(annotations=reads)
    async def list_collections() -> list[Collection]:
        """The collections this server searches, with their sizes; the first is the default."""
        store = await team.store()
        counts = {info.name: info.count for info in await store.list_collections()}
        return [
            Collection(name=name, chunks=counts.get(name, 0), default=i == 0) for i, name in enumerate(team.collections)
        ]

    if allow_ingest is not None:
        root = allow_ingest.resolve()

        @server.tool(
            annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True),
            description="Add files (Markdown, text, HTML, PDF, source) under "
            f"{root} to a collection; unchanged files are skipped.",
        )
        async def ingest(
            path: Annotated[
                str, Field(min_length=1, description="A file or folder under the allowed folder (or relative to it).")
            ],
            collection: Annotated[str | None, Field(description="A collection from list_collections.")] = None,
        ) -> IngestResult:
            """Add files (Markdown, text, HTML, PDF, source) to a collection; unchanged files are skipped."""
            try:
                name = _collection(team, collection)
                target = _under(root, path)
                store = await team.store()
                report = await asyncio.to_thread(_ingest, target, name, team, store, root)
            except ConclaveError as exc:
                raise _refused(exc) from None
            return IngestResult(
                collection=name,
                files_ingested=report.files_ingested,
                files_unchanged=report.files_unchanged,
                files_skipped=report.files_skipped,
                chunks_added=report.chunks_added,
                chunks_total=report.chunks_total,
                skipped=[f"{s.path}: {s.reason}" for s in report.skipped],
            )

    return server


async def _closing(events: AsyncIterator[Event]) -> AsyncIterator[Event]:
    """``events``, closed however the caller stops (a cancelled call closes the run, and the model stops)."""
    try:
        async for event in events:
            yield event
    finally:
        import anyio

        with anyio.CancelScope(shield=True):
            await events.aclose()  # type: ignore[attr-defined]


def _collection(team: Team, name: str | None) -> str:
    if name is not None and name not in team.collections:
        raise Refused(f"collection {name!r} is not served here", hint=f"use one of: {', '.join(team.collections)}")
    return name or team.collections[0]


def _under(root: Path, raw: str) -> Path:
    """``raw`` (absolute, or relative to ``root``) resolved, when it lies under ``root``; Refused otherwise."""
    path = Path(raw).expanduser()
    resolved = (path if path.is_absolute() else root / path).resolve()
    if resolved != root and root not in resolved.parents:
        raise Refused(f"{raw!r} is outside the folder this server may ingest", hint=f"give a path under {root}")
    if not resolved.exists():
        raise Refused(f"{raw!r} does not exist", hint=f"give a file or folder under {root}")
    return resolved


def _ingest(target: Path, collection: str, team: Team, store: Any, root: Path) -> Any:
    from conclave.tools.ingest import ingest

    return ingest([target], collection, team.settings, store=store, confine_to=[root])


def run_stdio(team: Team, *, allow_ingest: Path | None = None) -> None:
    """Serve over stdin/stdout until the client closes them."""
    import anyio

    server = create_server(team, allow_ingest=allow_ingest)
    anyio.run(server.run_stdio_async)


def run_http(team: Team, *, host: str, port: int, allow_ingest: Path | None = None) -> None:
    """Serve streamable HTTP at ``http://HOST:PORT/mcp``."""
    import anyio

    server = create_server(team, allow_ingest=allow_ingest)
    anyio.run(lambda: server.run_streamable_http_async(host=host, port=port))
