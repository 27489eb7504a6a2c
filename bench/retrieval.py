"""Retrieval: ingest throughput vs the raw embedding model, query latency as collections grow, recall on SQuAD.

1. Ingest: the SQuAD dev paragraphs (../shared/data/squad/dev-v1.1-even.json), one text file per paragraph, through
   ``tools.ingest.ingest`` (chunk_size 4000, so one chunk per paragraph, as the recall test does) into a fresh
   persistent store; chunks/s, and how much of it was spent inside the embedding model. Against it: the raw
   throughput of the same model (sentence-transformers ``encode``, batch 64, normalised) on exactly the texts
   ingestion embedded. The ratio is the part Conclave controls.
2. Recall@1/5/10 of the gold paragraph for every question of those articles (``KnowledgeStore.search_many_sync``).
3. Query latency p50/p95 of ``KnowledgeStore.search_sync`` (embedding the query + Chroma) at growing collection
   sizes, for the persistent store and a Chroma server (``chroma run`` on a free loopback port). The collections
   hold the real paragraph embeddings plus precomputed filler vectors inserted through the collection API (embedding
   100k texts is not what is measured here): each filler is a real paragraph's embedding plus Gaussian noise
   (``--noise``, per dimension), renormalised, stored with that paragraph's text and ingest-style metadata. Queries
   are real SQuAD questions through the real search path.

    python bench/retrieval.py                 # all 24 articles; 1k, 10k, 100k chunks; 200 queries x 3 rounds
    python bench/retrieval.py --quick         # 3 articles; 500 and 2000 chunks; 20 queries
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import common

SMALL_ARTICLES = ("Sky_(United_Kingdom)", "Black_Death", "Jacksonville,_Florida")


class TimedEmbedder:
    """Wraps the configured embedder: records the time spent embedding documents, and the texts."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.name = inner.name
        self.seconds = 0.0
        self.texts: list[str] = []

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        started = time.perf_counter()
        vectors = self.inner.embed_documents(texts)
        self.seconds += time.perf_counter() - started
        self.texts.extend(texts)
        return vectors

    def embed_query(self, text: str) -> list[float]:
        return self.inner.embed_query(text)


def corpus(folder: Path, articles: int | None) -> tuple[Path, list[tuple[str, str]], int]:
    """Write the paragraphs as files; returns (root, [(question, gold source)], paragraphs)."""
    data = json.loads(common.require(common.SQUAD_DEV, "SQuAD dev").read_text(encoding="utf-8"))
    chosen = data["data"]
    if articles is not None:
        small = [a for a in chosen if a["title"] in SMALL_ARTICLES]
        rest = sorted((a for a in chosen if a["title"] not in SMALL_ARTICLES), key=lambda a: len(a["paragraphs"]))
        chosen = (small + rest)[:articles]
    root = folder / "squad"
    questions: list[tuple[str, str]] = []
    paragraphs = 0
    for article in chosen:
        sub = root / "".join(c for c in article["title"] if c.isalnum() or c in "_-")
        sub.mkdir(parents=True, exist_ok=True)
        for i, para in enumerate(article["paragraphs"]):
            path = sub / f"p{i:03d}.txt"
            path.write_text(para["context"], encoding="utf-8")
            questions.extend((qa["question"], path.resolve().as_posix()) for qa in para["qas"])
            paragraphs += 1
    return root, questions, paragraphs


def ingest_once(root: Path) -> tuple[dict[str, Any], Any, TimedEmbedder, Path]:
    """One ingest into a fresh home; returns (numbers, store, timed embedder, home)."""
    from conclave.tools.ingest import ingest
    from conclave.tools.store import KnowledgeStore

    from conclave.embeddings import get_embedder
    from conclave.settings import load_settings

    home = Path(tempfile.mkdtemp(prefix="conclave-bench-retrieval-"))
    settings = load_settings(home=home, chunk_size=4000)
    timed = TimedEmbedder(get_embedder(settings.embedder, settings))
    store = KnowledgeStore.open(settings, embedder=timed)
    started = time.perf_counter()
    report = ingest([root], "squad", settings, store=store)
    seconds = time.perf_counter() - started
    numbers = {
        "chunks": report.chunks_added,
        "files": report.files_ingested,
        "seconds": seconds,
        "embed_seconds": timed.seconds,
        "chunks_per_s": report.chunks_added / seconds,
    }
    return numbers, store, timed, home


def raw_throughput(texts: list[str]) -> dict[str, float]:
    """The same model on the same texts, straight through sentence-transformers (no Conclave, no Chroma)."""
    from conclave.embeddings import LocalEmbedder

    model = LocalEmbedder().model
    started = time.perf_counter()
    model.encode(texts, batch_size=64, normalize_embeddings=True, show_progress_bar=False)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "chunks_per_s": len(texts) / seconds}


def recall(store: Any, questions: list[tuple[str, str]]) -> dict[str, Any]:
    started = time.perf_counter()
    results = store.search_many_sync([q for q, _ in questions], k=10, collection="squad")
    seconds = time.perf_counter() - started
    hits = {1: 0, 5: 0, 10: 0}
    for passages, (_, gold) in zip(results, questions, strict=True):
        sources = [p.source for p in passages]
        for k in hits:
            hits[k] += gold in sources[:k]
    return {
        "questions": len(questions),
        **{f"recall@{k}": hits[k] / len(questions) for k in hits},
        "batched_search_seconds": seconds,
    }


def fill(
    col: Any,
    store: Any,
    start: int,
    end: int,
    base: list[tuple[str, list[float], str]],
    noise: float,
    rng: Any,
    batch: int,
) -> float:
    """Insert chunks ``start .. end-1``: the real ones first, then noisy copies; returns the seconds spent adding."""
    import numpy as np

    vecs = np.asarray([v for _, v, _ in base], dtype=np.float32)
    spent = 0.0
    for lo in range(start, end, batch):
        hi = min(end, lo + batch)
        idx = np.arange(lo, hi) % len(base)
        chunk = vecs[idx].copy()
        synthetic = np.arange(lo, hi) >= len(base)
        if synthetic.any():
            chunk[synthetic] += rng.normal(0.0, noise, size=(int(synthetic.sum()), vecs.shape[1])).astype(np.float32)
            chunk /= np.linalg.norm(chunk, axis=1, keepdims=True)
        ids = [f"bench-{i}" for i in range(lo, hi)]
        docs = [base[j][0] for j in idx]
        metas = [
            {
                "source": base[j][2] if i < len(base) else f"synthetic/{i}",
                "name": f"p{i}.txt",
                "title": "",
                "chunk_index": 0,
                "kind": "text",
                "ingested_at": "2026-01-01T00:00:00+00:00",
            }
            for i, j in zip(range(lo, hi), idx, strict=False)
        ]
        started = time.perf_counter()
        store.call(col.add, ids=ids, embeddings=chunk.tolist(), documents=docs, metadatas=metas)
        spent += time.perf_counter() - started
    return spent


def latency_sweep(
    backend: str,
    sizes: list[int],
    base: list[tuple[str, list[float], str]],
    queries: list[str],
    rounds: int,
    k: int,
    noise: float,
    keep: bool,
) -> list[dict[str, Any]]:
    import numpy as np
    from conclave.tools.store import KnowledgeStore

    from conclave.settings import load_settings

    home = Path(tempfile.mkdtemp(prefix=f"conclave-bench-latency-{backend}-"))
    server = None
    try:
        overrides: dict[str, Any] = {"home": home}
        if backend == "server":
            server = common.start_chroma_server(home / "server")
            url = server.url
            overrides["chroma_url"] = url
        settings = load_settings(**overrides)
        store = KnowledgeStore.open(settings)
        col = store.get_or_create_collection("latency")
        try:
            max_batch = int(store.client.get_max_batch_size())
        except Exception:
            max_batch = 1000
        batch = max(1, min(1000, max_batch))
        rng = np.random.default_rng(0)
        query_vectors = store.embedder.embed_documents(queries)
        out = []
        have = 0
        for size in sizes:
            insert_s = fill(col, store, have, size, base, noise, rng, batch)
            inserted = size - have
            have = size
            count = store.count_sync("latency")
            for q in queries[:5]:  # warm caches (index pages, HTTP connection)
                store.search_sync(q, k=k, collection="latency")
            p50s, p95s, raw50, raw95, emb50 = [], [], [], [], []
            for _ in range(rounds):
                search, raw, emb = [], [], []
                for q, qv in zip(queries, query_vectors, strict=True):
                    t0 = time.perf_counter()
                    passages = store.search_sync(q, k=k, collection="latency")
                    t1 = time.perf_counter()
                    store.call(
                        col.query, query_embeddings=[qv], n_results=k, include=["documents", "metadatas", "distances"]
                    )
                    t2 = time.perf_counter()
                    store.embedder.embed_query(q)
                    t3 = time.perf_counter()
                    if len(passages) != min(k, count):
                        raise SystemExit(f"search returned {len(passages)} passages at {size} chunks")
                    search.append(t1 - t0)
                    raw.append(t2 - t1)
                    emb.append(t3 - t2)
                p50s.append(common.percentile(search, 50))
                p95s.append(common.percentile(search, 95))
                raw50.append(common.percentile(raw, 50))
                raw95.append(common.percentile(raw, 95))
                emb50.append(common.percentile(emb, 50))
            row = {
                "backend": backend,
                "size": size,
                "count": count,
                "inserted": inserted,
                "insert_per_s": inserted / insert_s if insert_s else None,
                "p50": p50s,
                "p95": p95s,
                "chroma_p50": raw50,
                "chroma_p95": raw95,
                "embed_p50": emb50,
            }
            print(
                f"  {backend} {count} chunks: search p50 {1000 * p50s[0]:.1f} ms p95 {1000 * p95s[0]:.1f} ms",
                flush=True,
            )
            out.append(row)
        return out
    finally:
        if server is not None:
            server.stop()
        if keep:
            print(f"(kept {home})")
        else:
            shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    p = common.parser(__doc__.split("\n\n")[0], repeats=3)
    p.add_argument("--articles", type=int, help="SQuAD dev articles (default all 24; 3 with --quick)")
    p.add_argument("--sizes", type=int, nargs="+", help="collection sizes (default 1000 10000 100000)")
    p.add_argument("--queries", type=int, help="queries per round (default 200; 20 with --quick)")
    p.add_argument("--k", type=int, default=5, help="passages per search in the latency part (default 5)")
    p.add_argument(
        "--noise",
        type=float,
        default=0.03,
        help="per-dimension Gaussian noise of the filler vectors (default 0.03: cosine ~0.86 to the paragraph copied)",
    )
    p.add_argument("--no-server", action="store_true", help="skip the Chroma server backend")
    args = p.parse_args()
    repeats = args.repeats or (1 if args.quick else 3)
    articles = args.articles or (3 if args.quick else None)
    sizes = sorted(args.sizes or ([500, 2000] if args.quick else [1000, 10000, 100000]))
    n_queries = args.queries or (20 if args.quick else 200)
    info = common.machine()

    from conclave.embeddings import LocalEmbedder

    work = Path(tempfile.mkdtemp(prefix="conclave-bench-squad-"))
    homes: list[Path] = []
    try:
        root, questions, paragraphs = corpus(work, articles)
        LocalEmbedder().embed_documents(["warm-up"])  # load the model once, untimed
        print(f"corpus: {paragraphs} paragraphs, {len(questions)} questions", flush=True)
        ingests, raws = [], []
        store = timed = None
        for r in range(repeats):
            numbers, store, timed, home = ingest_once(root)
            homes.append(home)
            ingests.append(numbers)
            raws.append(raw_throughput(timed.texts))
            print(
                f"  ingest {r + 1}: {numbers['chunks_per_s']:.1f} chunks/s (raw model "
                f"{raws[-1]['chunks_per_s']:.1f} chunks/s)",
                flush=True,
            )
        assert store is not None and timed is not None
        rec = recall(store, questions)
        print(f"  recall@5 {rec['recall@5']:.3f}", flush=True)
        # The real chunks as ingested (text, embedding, source), read back from the store: the latency collections
        # start with exactly these.
        got = store.get_collection("squad").get(include=["documents", "embeddings", "metadatas"])
        base = [
            (doc, list(map(float, emb)), str((m or {}).get("source", "")))
            for doc, emb, m in zip(got["documents"], got["embeddings"], got["metadatas"], strict=True)
        ]
        rng = random.Random(0)
        queries = [q for q, _ in rng.sample(questions, min(n_queries, len(questions)))]
        while len(queries) < n_queries:
            queries.append(questions[len(queries) % len(questions)][0])
        lat: list[dict[str, Any]] = []
        for backend in ("persistent", *(() if args.no_server else ("server",))):
            lat += latency_sweep(backend, sizes, base, queries, repeats, args.k, args.noise, args.keep_home)
    finally:
        if not args.keep_home:
            shutil.rmtree(work, ignore_errors=True)
            for home in homes:
                shutil.rmtree(home, ignore_errors=True)

    chunks = ingests[0]["chunks"]
    ing_rate = [x["chunks_per_s"] for x in ingests]
    raw_rate = [x["chunks_per_s"] for x in raws]
    embed_share = [x["embed_seconds"] / x["seconds"] for x in ingests]
    ratio = [a / b for a, b in zip(ing_rate, raw_rate, strict=True)]
    t1 = common.md_table(
        ["ingest (SQuAD paragraphs)", "chunks", "chunks/s", "raw model chunks/s", "ingest / raw", "time in the model"],
        [
            [
                "`tools.ingest.ingest`, persistent store",
                chunks,
                common.med_range(ing_rate, 1),
                common.med_range(raw_rate, 1),
                common.med_range(ratio, 2),
                common.med_range(embed_share, 0, 100) + " %",
            ]
        ],
    )
    t2 = common.md_table(
        ["recall (SQuAD dev)", "questions", "paragraphs", "recall@1", "recall@5", "recall@10"],
        [
            [
                f"{len({s for _, s in questions})} gold paragraphs' questions, {articles or 24} articles",
                rec["questions"],
                paragraphs,
                f"{rec['recall@1']:.3f}",
                f"{rec['recall@5']:.3f}",
                f"{rec['recall@10']:.3f}",
            ]
        ],
    )
    rows = []
    for row in lat:
        rows.append(
            [
                row["backend"],
                f"{row['count']:,}",
                common.med_range(row["p50"], 1, 1000),
                common.med_range(row["p95"], 1, 1000),
                common.med_range(row["chroma_p50"], 1, 1000),
                common.med_range(row["chroma_p95"], 1, 1000),
                common.med_range(row["embed_p50"], 1, 1000),
                common.num(row["insert_per_s"], 0),
            ]
        )
    t3 = common.md_table(
        [
            "store",
            "chunks",
            "search p50 ms",
            "search p95 ms",
            "Chroma query p50 ms",
            "Chroma query p95 ms",
            "query embedding p50 ms",
            "insert chunks/s",
        ],
        rows,
    )
    table = "\n\n".join([t1, t2, t3])
    notes = [
        f"Ingest: {paragraphs} SQuAD dev paragraphs as text files, chunk_size 4000 (one chunk each), embedder `local` "
        "(all-MiniLM-L6-v2, CPU), fresh persistent store per run; median (min–max) over "
        f"{repeats} runs. Raw model = sentence-transformers `encode` (batch 64, normalised) on the same texts; "
        "time in the model = share of the ingest spent inside `embed_documents`.",
        "Recall: a question counts as a hit at k when a passage of its gold paragraph is among the top k of "
        "`search_many_sync` (one batched query embedding call).",
        f"Latency: the first {len(base)} chunks are the real paragraphs with their real embeddings; the rest are "
        f"precomputed filler vectors (a real embedding + N(0, {args.noise}) per dimension, renormalised, cosine "
        "≈ 0.86 to the original), inserted with `collection.add` — not 100k embedded texts. Search = "
        f"`KnowledgeStore.search_sync(question, k={args.k})` (collection lookup, embedder check, count, query "
        "embedding, Chroma query); Chroma query = `collection.query` with a precomputed vector; "
        f"{len(queries)} real SQuAD questions per round, p50/p95 per round, median (min–max) over {repeats} rounds.",
        "Chroma server: `chroma run` on a free 127.0.0.1 port (HTTP client); persistent: the in-process client.",
    ]
    data = {
        "ingest": ingests,
        "raw": raws,
        "recall": rec,
        "latency": lat,
        "sizes": sizes,
        "queries": len(queries),
        "rounds": repeats,
        "articles": articles or 24,
        "paragraphs": paragraphs,
        "noise": args.noise,
    }
    common.emit("retrieval", "Retrieval", table, notes=notes, data=data, info=info, quick=args.quick, out=args.out)


if __name__ == "__main__":
    main()
