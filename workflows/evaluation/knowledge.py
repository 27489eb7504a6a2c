"""Put a data set's contexts into a collection of its own, once, so retrieval is part of what is scored.

``tools.ingest`` ingests files; evaluation needs raw paragraphs whose ids are the data set's own context ids (what
gold ids name), so this small adapter writes them through the store's ``add_passages``: one passage per
context, id = context id. Adding only the missing ids makes it idempotent and cheap to re-check.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Sequence

from conclave.workflows.evaluation.datasets import Context, Dataset

from conclave.settings import Settings

__all__ = ["collection_for", "ensure_contexts"]

_BATCH = 64


def collection_for(dataset: Dataset) -> str:
    """A stable collection name for a data set's contexts (changes when the contexts change)."""
    digest = hashlib.sha256()
    for ctx in dataset.contexts:
        digest.update(ctx.id.encode())
        digest.update(b"\0")
        digest.update(ctx.text.encode())
    return f"eval-{dataset.kind}-{digest.hexdigest()[:10]}"


def _ensure_sync(
    settings: Settings, name: str, contexts: Sequence[Context], source: str, progress: Callable[[int, int], None] | None
) -> int:
    from conclave.tools.store import KnowledgeStore

    store = KnowledgeStore.open(settings)
    collection = store.get_or_create_collection(name)
    have = set(store.all_metadata(collection))
    missing = [c for c in contexts if c.id not in have]
    for start in range(0, len(missing), _BATCH):
        batch = missing[start : start + _BATCH]
        store.add_passages(
            collection,
            ids=[c.id for c in batch],
            embed_texts=[f"{c.title}\n\n{c.text}" if c.title else c.text for c in batch],
            documents=[c.text for c in batch],
            metadatas=[{"source": source, "title": c.title, "context_id": c.id} for c in batch],
        )
        if progress is not None:
            progress(start + len(batch), len(missing))
    return len(missing)


async def ensure_contexts(
    settings: Settings, dataset: Dataset, progress: Callable[[int, int], None] | None = None
) -> tuple[str, int]:
    """The collection holding every context of ``dataset`` (created or completed now); returns (name, added)."""
    name = collection_for(dataset)
    added = await asyncio.to_thread(
        _ensure_sync, settings, name, dataset.contexts, f"{dataset.kind}:{dataset.path.name}", progress
    )
    return name, added
