"""Text piped into ``conclave ask`` as the context of its question (``cat notes.md | conclave ask "Summarise"``).

The text becomes a one-document collection, ``stdin``, in an in-memory Chroma that lives as long as the process: it is
chunked like an ingested Markdown file and embedded with the configured embedder, and the run searches it in place of
the configured collection. Every method that reads documents (``rag``, ``react``, ``coa``) then reads it the way it
reads an ingested file: the passages a question finds, cited as ``stdin``. Nothing is written to the knowledge store
on disk. Like an ingested document, the text is data: it is only ever read by the models, never run.
"""

from __future__ import annotations

from typing import Any

from conclave.tools.chunking import Document, chunk_id, split_document

from conclave.errors import ConfigError
from conclave.settings import Settings

__all__ = ["PIPED_COLLECTION", "PIPED_SOURCE", "piped_store"]

PIPED_COLLECTION = "stdin"
"""The collection the piped text is searched in (shown in the run's header)."""
PIPED_SOURCE = "stdin"
"""The source its passages are cited by."""


def piped_store(text: str, settings: Settings) -> Any:
    """A knowledge store holding ``text`` alone, as the collection :data:`PIPED_COLLECTION` (what ``RunContext.store``
    takes); ConfigError when the text holds nothing to read."""
    import chromadb
    from conclave.tools.store import KnowledgeStore

    chunks = split_document(
        Document(text=text, kind="markdown"), settings.chunk_size, settings.chunk_overlap, name=PIPED_SOURCE
    )
    if not chunks:
        raise ConfigError(
            "the piped text holds nothing to read", hint="pipe a text with words in it, or ask without piping"
        )
    client = chromadb.EphemeralClient(settings=chromadb.Settings(anonymized_telemetry=False, allow_reset=False))
    store = KnowledgeStore(
        settings.model_copy(update={"collection": PIPED_COLLECTION}), client, location="the piped text (in memory)"
    )
    # In-memory clients of one process share their collections: start from an empty one.
    if store.exists_sync(PIPED_COLLECTION):
        store.call(client.delete_collection, PIPED_COLLECTION)
    collection = store.get_or_create_collection(PIPED_COLLECTION)
    store.add_passages(
        collection,
        ids=[chunk_id(PIPED_SOURCE, c.index, c.text) for c in chunks],
        embed_texts=[c.embed_text for c in chunks],
        documents=[c.text for c in chunks],
        metadatas=[
            {"source": PIPED_SOURCE, "name": PIPED_SOURCE, "title": c.title, "chunk_index": c.index, "kind": "markdown"}
            for c in chunks
        ],
    )
    return store
