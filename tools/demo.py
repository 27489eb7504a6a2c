"""The demo collection: the team's notes on neural-network fundamentals in ``tools/demo_notes``."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

from conclave.errors import ConfigError

if TYPE_CHECKING:
    from conclave.tools.store import KnowledgeStore

    from conclave.settings import Settings

__all__ = ["DEMO_COLLECTION", "demo_notes_path", "ensure_demo_collection", "ensure_demo_named"]

DEMO_COLLECTION = "demo"


def demo_notes_path() -> Path:
    """The folder of demo notes (``tools/demo_notes``: package data, in a checkout and in a wheel alike)."""
    folder = Path(__file__).resolve().parent / "demo_notes"
    if folder.is_dir() and any(folder.glob("*.md")):
        return folder
    raise ConfigError(
        "the demo notes (tools/demo_notes) are not installed",
        hint="install Conclave from its source checkout (pip install -e .) or ingest your own notes",
    )


async def ensure_demo_collection(settings: Settings, store: KnowledgeStore) -> bool:
    """Ingest the demo notes into collection ``demo`` when the store has no collections; True if it did.

    The check and the ingest hold the collection's writer lock together, so units of a run starting at once wait
    for the first one's ingest instead of searching a half-filled collection (or filling it again)."""
    return await asyncio.to_thread(_ensure_demo_collection, settings, store)


def _ensure_demo_collection(settings: Settings, store: KnowledgeStore) -> bool:
    from conclave.tools.ingest import ingest

    with store.writing(DEMO_COLLECTION):
        if store.list_collections_sync():
            return False
        ingest([demo_notes_path()], DEMO_COLLECTION, settings, store=store)
    return True


def ensure_demo_named(settings: Settings, store: KnowledgeStore) -> bool:
    """Ingest the demo notes into collection ``demo`` when a command names it and it does not exist yet, whatever
    else the store holds (the user asked for it by name); True if it did."""
    from conclave.tools.ingest import ingest

    with store.writing(DEMO_COLLECTION):
        if any(info.name == DEMO_COLLECTION for info in store.list_collections_sync()):
            return False
        ingest([demo_notes_path()], DEMO_COLLECTION, settings, store=store)
    return True
