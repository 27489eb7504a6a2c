"""Few-shot chains converted from GSM8K training answers, picked by similarity."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from conclave.workflows.coa import parse_chain
from conclave.workflows.coa.examples import ExampleBank, load_examples


class BagOfWords:
    """A deterministic stand-in embedder for the selection logic (the real one is tested with the store)."""

    name = "test:bag-of-words"
    vocab = ["clips", "sold", "babysitting", "hour", "wallet", "money", "pages", "book", "read"]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self.embed_query(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        words = text.lower().split()
        return [float(sum(w.startswith(v) for w in words)) + 1e-3 for v in self.vocab]


def test_training_answers_become_parseable_chains(shared_data: Path) -> None:
    examples = load_examples(shared_data / "gsm8k" / "train.jsonl", limit=20)
    assert len(examples) >= 18
    first = examples[0]
    assert first.question.startswith("Natalia sold clips")
    chain = parse_chain(first.chain_json)
    assert [s.tool for s in chain.steps] == ["calculator", "calculator"]
    assert parse_chain(first.chain_text) == chain
    assert json.loads(first.chain_json)["steps"][0]["thought"]


def test_nearest_examples_are_the_similar_ones(shared_data: Path, tmp_path: Path) -> None:
    bank = ExampleBank.build(shared_data / "gsm8k" / "train.jsonl", BagOfWords(), tmp_path, limit=10)
    picked = bank.nearest("How many pages of the book did Julie read?", k=1)
    assert "book" in picked[0].question
    again = ExampleBank.build(shared_data / "gsm8k" / "train.jsonl", BagOfWords(), tmp_path, limit=10)
    assert np.allclose(again.vectors, bank.vectors) and len(list(tmp_path.glob("examples-*.npz"))) == 1
    assert all(e.question != bank.examples[0].question for e in bank.nearest(bank.examples[0].question, k=3))
