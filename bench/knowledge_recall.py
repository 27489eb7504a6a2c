"""Retrieval on the knowledge-answer data sets, as the evaluation harness sets them up: recall@1/5/10 of the gold
paragraphs for the questions that ``conclave eval -d squad:...`` / ``-d hotpotqa:...`` score.

The harness ingests every context of the data file into a collection of its own (``workflows.evaluation.knowledge``),
one passage per context, title and text embedded together; this script does exactly that in a temporary
``CONCLAVE_HOME`` and searches each selected question once (``KnowledgeStore.search_many_sync``). Recall@k is the
harness's own ``recall_at_k``: the share of an item's gold paragraphs among the first k (HotpotQA has two per
question). No model is involved.

    python bench/knowledge_recall.py                 # SQuAD and HotpotQA, first 100 questions each
    python bench/knowledge_recall.py --quick         # first 20 questions each
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import common

SETS = {"squad": common.SQUAD_DEV, "hotpotqa": common.SHARED_DATA / "hotpotqa" / "dev.jsonl"}
KS = (1, 5, 10)


def measure(kind: str, limit: int) -> dict[str, Any]:
    from conclave.tools.store import KnowledgeStore
    from conclave.workflows.evaluation.datasets import load_dataset, select_items
    from conclave.workflows.evaluation.knowledge import ensure_contexts
    from conclave.workflows.evaluation.scorers import recall_at_k

    from conclave.settings import load_settings

    settings = load_settings()
    dataset = load_dataset(f"{kind}:{SETS[kind]}")
    items = select_items(dataset.items, limit=limit)
    started = time.perf_counter()
    collection, added = asyncio.run(ensure_contexts(settings, dataset))
    ingest_s = time.perf_counter() - started
    store = KnowledgeStore.open(settings)
    found = store.search_many_sync([i.question for i in items], max(KS), collection)
    recall = {
        k: statistics.fmean(
            recall_at_k([p.id for p in hits], i.gold_ids, k) or 0.0 for i, hits in zip(items, found, strict=True)
        )
        for k in KS
    }
    every = {
        k: sum(1 for i, hits in zip(items, found, strict=True) if set(i.gold_ids) <= {p.id for p in hits[:k]})
        / len(items)
        for k in KS
    }
    return {
        "questions": len(items),
        "contexts": added,
        "ingest_s": round(ingest_s, 1),
        "recall": {str(k): round(v, 3) for k, v in recall.items()},
        "all_gold": {str(k): round(v, 3) for k, v in every.items()},
    }


def main() -> None:
    p = common.parser(__doc__ or "", repeats=1)
    args = p.parse_args()
    limit = 20 if args.quick else 100
    info = common.machine()
    data: dict[str, Any] = {}
    rows = []
    with common.temp_home("knowledge-recall", keep=args.keep_home):
        for kind in SETS:
            result = measure(kind, limit)
            data[kind] = result
            rows.append(
                [
                    kind,
                    result["questions"],
                    result["contexts"],
                    *(f"{result['recall'][str(k)]:.3f}" for k in KS),
                    f"{result['all_gold']['5']:.3f}",
                ]
            )
    table = common.md_table(
        ["data set", "questions", "contexts ingested", "recall@1", "recall@5", "recall@10", "all gold in top 5"],
        rows,
        align="lrrrrrr",
    )
    common.emit(
        "knowledge_recall",
        "Recall of the gold paragraphs (knowledge-answer sets)",
        table,
        data=data,
        info=info,
        quick=args.quick,
        notes=[
            "every context of the data file is ingested, as `conclave eval` does (SQuAD: all 24 articles of "
            "dev-v1.1-even.json; HotpotQA: the contexts of all 200 questions, deduplicated by title)",
            "recall@k: the share of an item's gold paragraphs among the first k passages of one search for "
            "the question (the harness's recall_at_k), averaged over the questions",
        ],
        out=args.out,
    )


if __name__ == "__main__":
    main()
