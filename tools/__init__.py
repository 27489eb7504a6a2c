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
    "CalcResult": "conclave.tools.calculator",
    "evaluate": "conclave.tools.calculator",
    "evaluate_vector": "conclave.tools.vector_math",
    "CollectionInfo": "conclave.tools.store",
    "KnowledgeStore": "conclave.tools.store",
    "IngestProgress": "conclave.tools.ingest",
    "IngestReport": "conclave.tools.ingest",
    "SkippedFile": "conclave.tools.ingest",
    "ingest": "conclave.tools.ingest",
    "demo_notes_path": "conclave.tools.demo",
    "ensure_demo_collection": "conclave.tools.demo",
    "arun_tool": "conclave.tools.registry",
    "build_tools": "conclave.tools.registry",
    "format_passages": "conclave.tools.registry",
    "run_tool": "conclave.tools.registry",
    "to_autogen_tools": "conclave.tools.registry",
    "tool_schemas": "conclave.tools.registry",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'conclave.tools' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
