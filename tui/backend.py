"""What the chat needs from the rest of Conclave, behind two small seams the app factory can replace in tests.

* :data:`RunQuestion` — a function from a :class:`Question` to an async iterator of run events. The default,
  :func:`model_runner`, builds a run context (models per role) and runs the chosen method.
* :class:`Knowledge` — ingest, search and list collections. The default, :class:`StoreKnowledge`, uses the
  ``tools`` package (Chroma store, ingestion), imported lazily so the chat starts fast.

The TUI consumes events only; it never talks to a model itself.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from conclave.errors import ConclaveError
from conclave.events import Event, Passage
from conclave.settings import AGENT_ROLES, Settings

__all__ = [
    "IngestUpdate",
    "Knowledge",
    "Question",
    "RunQuestion",
    "StoreKnowledge",
    "model_runner",
    "resolve_models",
]


@dataclass(frozen=True)
class Question:
    """One question as the chat asks it: the text, the settings in force and the conversation so far."""

    text: str
    settings: Settings
    method: str
    collection: str | None
    history: list[tuple[str, str]] = field(default_factory=list)


RunQuestion = Callable[[Question], AsyncIterator[Event]]


def _warm_imports(method: str) -> None:
    # Heavy imports (chromadb, sentence-transformers) run here, in a thread, so the first answer never freezes the UI.
    modules = ["conclave.workflows.runner", "conclave.workflows.methods"]
    from conclave.workflows.methods import searches_knowledge

    if searches_knowledge(method):
        modules += ["conclave.workflows.team", "conclave.tools.store", "conclave.tools.toolset", "chromadb"]
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            pass  # the run itself reports what is missing, with its fix


def model_runner(clients: dict[str, Any] | None = None) -> RunQuestion:
    """The real runner: resolve each role's model (or use ``clients``) and run the question's method."""

    async def run(question: Question) -> AsyncIterator[Event]:
        await asyncio.to_thread(_warm_imports, question.method)
        from conclave.workflows.runner import build_context, run_question

        ctx = await build_context(
            question.text,
            question.settings,
            method=question.method,
            collection=question.collection,
            history=question.history,
            clients=clients,
        )
        async for event in run_question(ctx):
            yield event

    return run


async def resolve_models(settings: Settings) -> dict[str, str]:
    """The model spec each role will run on (probing Ollama when no model is configured)."""
    registry = await asyncio.to_thread(importlib.import_module, "conclave.models")
    return {role: await registry.role_spec(settings, role) for role in AGENT_ROLES}


ResolveModels = Callable[[Settings], Awaitable[dict[str, str]]]


@dataclass(frozen=True)
class IngestUpdate:
    """Ingestion progress as the chat shows it."""

    files_done: int
    files_total: int
    chunks_added: int
    current: str = ""


class Knowledge(Protocol):
    """Knowledge-store operations the chat offers as slash commands."""

    async def ingest(
        self, paths: Sequence[Path], collection: str, settings: Settings, progress: Callable[[IngestUpdate], None]
    ) -> str:
        """Ingest files/folders into a collection; returns a one-line summary."""
        ...

    async def search(self, query: str, collection: str, settings: Settings) -> list[Passage]:
        """The passages most similar to ``query``."""
        ...

    async def collections(self, settings: Settings) -> list[tuple[str, int]]:
        """Every collection's name and chunk count."""
        ...


def _tools_module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        raise ConclaveError(
            f"the knowledge tools are not available ({exc.name} is missing)",
            hint="reinstall Conclave with its dependencies: pip install -e .",
        ) from exc


class StoreKnowledge:
    """The real knowledge store (``tools.store``) and ingestion (``tools.ingest``)."""

    async def _store(self, settings: Settings) -> Any:
        store_mod = await asyncio.to_thread(_tools_module, "conclave.tools.store")
        return await asyncio.to_thread(store_mod.KnowledgeStore.open, settings)

    async def _with_demo(self, settings: Settings, collection: str) -> Any:
        store = await self._store(settings)
        demo = await asyncio.to_thread(_tools_module, "conclave.tools.demo")
        if collection == demo.DEMO_COLLECTION:
            await demo.ensure_demo_collection(settings, store)
        return store

    async def ingest(
        self, paths: Sequence[Path], collection: str, settings: Settings, progress: Callable[[IngestUpdate], None]
    ) -> str:
        """Ingest in a thread; ``progress`` is called on the event loop."""
        ingest_mod = await asyncio.to_thread(_tools_module, "conclave.tools.ingest")
        loop = asyncio.get_running_loop()

        def on_progress(p: Any) -> None:
            update = IngestUpdate(p.files_done, p.files_total, p.chunks_added, str(p.current))
            loop.call_soon_threadsafe(progress, update)

        report = await asyncio.to_thread(
            ingest_mod.ingest, [str(p) for p in paths], collection, settings, progress=on_progress
        )
        skipped = f", {report.files_skipped} skipped" if report.files_skipped else ""
        return (
            f"{collection}: {report.files_ingested} file(s) ingested, {report.files_unchanged} unchanged{skipped}; "
            f"{report.chunks_added} chunks added, {report.chunks_total} in total ({report.seconds:.1f} s)"
        )

    async def search(self, query: str, collection: str, settings: Settings) -> list[Passage]:
        """Similarity search in ``collection`` (the demo collection is created on first use)."""
        store = await self._with_demo(settings, collection)
        result: list[Passage] = await store.search(query, settings.top_k, collection)
        return result

    async def collections(self, settings: Settings) -> list[tuple[str, int]]:
        """Every collection with its chunk count."""
        store = await self._store(settings)
        return [(info.name, info.count) for info in await store.list_collections()]
