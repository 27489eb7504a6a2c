"""One ingested document as the scope of a search (``conclave ask --source FILE``, a workflow step's ``source:``).

Every chunk carries its document's ``source`` in the store (an ingested file's resolved path, a TAT-QA report's
id); a scoped search filters on it (``tools.toolset.source_filter``). This module finds the stored source a user
means: the name as stored, or a path resolved the way ``conclave ingest`` resolved it.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING

from conclave.errors import ConfigError

if TYPE_CHECKING:
    from conclave.tools.store import KnowledgeStore

    from conclave.settings import Settings

__all__ = ["find_source"]

_SHOWN = 5


def _candidates(given: str, base: Path | None) -> list[str]:
    """The stored forms ``given`` may have: itself, and as a path resolved (relative to ``base`` when given)."""
    out = [given]
    path = Path(given).expanduser()
    if base is not None and not path.is_absolute():
        path = base / path
    try:
        out.append(path.resolve().as_posix())
    except (OSError, RuntimeError):  # a link loop: only the name as given can match
        pass
    return list(dict.fromkeys(out))


def find_source(
    settings: Settings,
    collection: str,
    given: str,
    *,
    base: Path | None = None,
    store: KnowledgeStore | None = None,
) -> str:
    """The ``source`` stored for the document ``given`` names in ``collection``; a ConfigError that says how to
    ingest it (and which documents the collection holds) when it names none."""
    from conclave.tools.store import KnowledgeStore

    if not given or not given.strip():
        raise ConfigError("--source is empty", hint="name an ingested file, e.g. --source docs/guide.md")
    store = store if store is not None else KnowledgeStore.open(settings)
    col = store.get_collection(collection)
    for candidate in _candidates(given.strip(), base):
        found = store.call(col.get, where={"source": candidate}, limit=1, include=[])
        if found["ids"]:
            return candidate
    sources = sorted({str(m.get("source", "")) for m in store.all_metadata(col).values()} - {""})
    name = Path(given).name
    alike = [s for s in sources if Path(s).name == name] or sources
    shown = ", ".join(alike[:_SHOWN]) + (f" (and {len(alike) - _SHOWN} more)" if len(alike) > _SHOWN else "")
    held = f"; it holds: {shown}" if sources else "; it is empty"
    raise ConfigError(
        f"no ingested document {given!r} in collection {collection!r}",
        hint=f"ingest it first (conclave ingest {shlex.quote(given)} --collection {collection}), "
        f"or name one the collection holds{held}",
    )
