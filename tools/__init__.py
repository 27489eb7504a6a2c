"""What Conclave's agents can do: LangChain tools, the Chroma knowledge store and ingestion.

Heavy modules (Chroma, NumPy, LangChain) are imported on first use of their names, so importing ``tools`` is cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "CalcResult",
    "CollectionInfo",
    "IngestProgress",
    "IngestReport",
    "KnowledgeStore",
    "SkippedFile",
    "arun_tool",
    "build_tools",
    "demo_notes_path",
    "ensure_demo_collection",
    "evaluate",
    "evaluate_vector",
    "format_passages",
    "ingest",
    "run_tool",
    "to_autogen_tools",
    "tool_schemas",
]

_WHERE = {
    "CalcResult": "tools.calculator",
    "evaluate": "tools.calculator",
    "evaluate_vector": "tools.vector_math",
    "CollectionInfo": "tools.store",
    "KnowledgeStore": "tools.store",
    "IngestProgress": "tools.ingest",
    "IngestReport": "tools.ingest",
    "SkippedFile": "tools.ingest",
    "ingest": "tools.ingest",
    "demo_notes_path": "tools.demo",
    "ensure_demo_collection": "tools.demo",
    "arun_tool": "tools.registry",
    "build_tools": "tools.registry",
    "format_passages": "tools.registry",
    "run_tool": "tools.registry",
    "to_autogen_tools": "tools.registry",
    "tool_schemas": "tools.registry",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'tools' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
