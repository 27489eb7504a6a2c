"""Few-shot chains from data: GSM8K training answers converted to chains, chosen by similarity to the question.

The bank converts a GSM8K-format JSONL file (``question``, ``answer`` with ``<<a*b=c>>`` notes) once, embeds the
questions with the configured embedder, and caches both under ``$CONCLAVE_HOME/cache/examples-<hash>.npz`` so later
runs only embed the new question.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from conclave.workflows.coa.gsm8k import GSM8KConversionError, convert_gsm8k_answer
from conclave.workflows.coa.render import render, render_json

from conclave import nesting
from conclave.errors import ConfigError


@dataclass(frozen=True)
class Example:
    question: str
    chain_json: str
    chain_text: str


def load_examples(path: Path, *, limit: int | None = None) -> list[Example]:
    """Convert every convertible item of a GSM8K-format JSONL file (items that cannot be converted are left out)."""
    if not path.is_file():
        raise ConfigError(f"examples file not found: {path}", hint="set coa.examples_file to a GSM8K-format JSONL file")
    out: list[Example] = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if limit is not None and len(out) >= limit:
                break
            try:
                item = nesting.loads(line)
                chain = convert_gsm8k_answer(item["question"], item["answer"])
            except (json.JSONDecodeError, KeyError, TypeError, GSM8KConversionError):
                continue
            out.append(Example(item["question"], render_json(chain), render(chain)))
    return out


class ExampleBank:
    """Converted chains with embedded questions; ``nearest`` picks the most similar ones."""

    def __init__(self, examples: list[Example], vectors: np.ndarray, embedder: object):
        self.examples = examples
        self.vectors = vectors
        self.embedder = embedder

    @classmethod
    def build(cls, path: Path, embedder: object, cache_dir: Path, *, limit: int = 2000) -> ExampleBank:
        """Load from the cache when the file, limit and embedder are unchanged; else convert and embed."""
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        name = getattr(embedder, "name", type(embedder).__name__)
        key = hashlib.sha256(f"{digest}:{limit}:{name}".encode()).hexdigest()[:16]
        cache = cache_dir / f"examples-{key}.npz"
        examples = load_examples(path, limit=limit)
        if cache.is_file():
            vectors = np.load(cache)["vectors"]
            if len(vectors) == len(examples):
                return cls(examples, vectors, embedder)
        vectors = np.asarray(embedder.embed_documents([e.question for e in examples]), dtype=np.float32)  # type: ignore[attr-defined]
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True) + 1e-12
        cache_dir.mkdir(parents=True, exist_ok=True)
        np.savez(cache, vectors=vectors)
        return cls(examples, vectors, embedder)

    def nearest(self, question: str, k: int = 3) -> list[Example]:
        """The ``k`` examples whose questions are most similar to ``question`` (never the question itself)."""
        query = np.asarray(self.embedder.embed_query(question), dtype=np.float32)  # type: ignore[attr-defined]
        query /= np.linalg.norm(query) + 1e-12
        order = np.argsort(-(self.vectors @ query))
        picked = [self.examples[i] for i in order if self.examples[i].question.strip() != question.strip()]
        return picked[:k]
