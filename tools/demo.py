"""The demo collection: the team's notes on neural-network fundamentals in ``examples/knowledge``."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

from conclave.errors import ConfigError

if TYPE_CHECKING:
    from conclave.settings import Settings
    from tools.store import KnowledgeStore

__all__ = ["DEMO_COLLECTION", "demo_notes_path", "ensure_demo_collection"]

DEMO_COLLECTION = "demo"


def demo_notes_path() -> Path:
    """The folder of demo notes (``examples/knowledge`` of the checkout; ``tools/demo`` in a wheel)."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "examples" / "knowledge", here / "demo"):
        if candidate.is_dir() and any(candidate.glob("*.md")):
            return candidate
    raise ConfigError(
        "the demo notes (examples/knowledge) are not installed",
        hint="install Conclave from its source checkout (pip install -e .) or ingest your own notes",
    )


async def ensure_demo_collection(settings: Settings, store: KnowledgeStore) -> bool:
    """Ingest the demo notes into collection ``demo`` when the store has no collections; True if it did."""
    if await store.list_collections():
        return False
    from tools.ingest import ingest

    await asyncio.to_thread(ingest, [demo_notes_path()], DEMO_COLLECTION, settings, store=store)
    return True
