"""Put a data set's contexts into a collection of its own, once, so retrieval is part of what is scored.

``tools.ingest`` ingests files; evaluation needs raw paragraphs whose ids are the data set's own context ids (what
gold ids name), so this small adapter writes them through the store's ``add_passages``: one passage per
context, id = context id, or, for a context that is a whole document (a TAT-QA report), its chunks as
``tools.chunking`` cuts a Markdown file, ids ``CONTEXT#N``. Every passage carries its context id and a source (a
TAT-QA report's own, so a scoped search can keep to it). Adding only the missing ids makes it idempotent and cheap
to re-check.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from conclave.workflows.evaluation.datasets import Dataset

from conclave.settings import Settings

__all__ = ["Passage", "collection_for", "ensure_contexts", "passages_of"]

_BATCH = 64


@dataclass(frozen=True)
class Passage:
    """One passage to add: its id, what is embedded, what a search returns, and its metadata."""

    id: str
    embed_text: str
    text: str
    metadata: dict[str, Any]


def passages_of(dataset: Dataset, settings: Settings) -> list[Passage]:
    """Every passage the data set's contexts become: one per context, or a chunked context's chunks (ids
    ``CONTEXT#N``); each carries its context id and its source (the context's own, else the data set's name)."""
    from conclave.tools.chunking import Document, split_document

    default_source = f"{dataset.kind}:{dataset.path.name}"
    out: list[Passage] = []
    for ctx in dataset.contexts:
        meta = {"source": ctx.source or default_source, "title": ctx.title, "context_id": ctx.id}
        if not ctx.chunked:
            embed = f"{ctx.title}\n\n{ctx.text}" if ctx.title else ctx.text
            out.append(Passage(ctx.id, embed, ctx.text, meta))
            continue
        chunks = split_document(
            Document(ctx.text, "markdown", ctx.title), settings.chunk_size, settings.chunk_overlap, name=ctx.title
        )
        # A table chunk's rows travel in its metadata (tools.tables): read_value finds cells through them.
        out += [Passage(f"{ctx.id}#{c.index}", c.embed_text, c.text, {**meta, **c.meta}) for c in chunks]
    return out


def collection_for(dataset: Dataset, passages: Sequence[Passage] | None = None) -> str:
    """A stable collection name for a data set's contexts (changes when the contexts change, and with
    ``passages`` when how they are cut into passages changes)."""
    digest = hashlib.sha256()
    for ctx in dataset.contexts:
        digest.update(ctx.id.encode())
        digest.update(b"\0")
        digest.update(ctx.text.encode())
    for passage in passages or ():
        if passage.id != passage.metadata.get("context_id"):
            digest.update(f"\0{passage.id}\0{passage.text}".encode())
            if passage.metadata.get("is_table"):
                digest.update(str(passage.metadata.get("table_rows", "")).encode())
    return f"eval-{dataset.kind}-{digest.hexdigest()[:10]}"


def _ensure_sync(
    settings: Settings, name: str, passages: Sequence[Passage], progress: Callable[[int, int], None] | None
) -> int:
    from conclave.tools.store import KnowledgeStore

    store = KnowledgeStore.open(settings)
    collection = store.get_or_create_collection(name)
    have = set(store.all_metadata(collection))
    missing = [p for p in passages if p.id not in have]
    for start in range(0, len(missing), _BATCH):
        batch = missing[start : start + _BATCH]
        store.add_passages(
            collection,
            ids=[p.id for p in batch],
            embed_texts=[p.embed_text for p in batch],
            documents=[p.text for p in batch],
            metadatas=[dict(p.metadata) for p in batch],
        )
        if progress is not None:
            progress(start + len(batch), len(missing))
    return len(missing)


async def ensure_contexts(
    settings: Settings, dataset: Dataset, progress: Callable[[int, int], None] | None = None
) -> tuple[str, int]:
    """The collection holding every context of ``dataset`` (created or completed now); returns (name, added)."""
    passages = passages_of(dataset, settings)
    name = collection_for(dataset, passages)
    added = await asyncio.to_thread(_ensure_sync, settings, name, passages, progress)
    return name, added
