"""Synthetic question-answer pairs from a collection's own chunks, filtered so only grounded pairs are kept.

For sampled chunks the model writes questions; a separate call answers each from its chunk alone. A pair is kept
only if (1) it is answerable, (2) question + answer are close to the chunk (embedding cosine at or above
``min_similarity``), (3) the answer shares its key terms with the chunk, and (4) a judge rates it at or above
``min_rating`` (1-5). Output lines carry the gold chunk id, so ``conclave eval --dataset jsonl:qa.jsonl --collection C``
scores retrieval recall too; rejections are counted by reason.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autogen_core.models import SystemMessage, UserMessage
from conclave.workflows.evaluation import prompts
from conclave.workflows.evaluation.cache import CacheSet
from pydantic import BaseModel, Field

from conclave.errors import ConfigError
from conclave.settings import Settings

__all__ = ["SynthConfig", "SynthReport", "key_terms", "synthesize"]

MIN_CHUNK_CHARS = 200
_STOP = set(
    """a an the and or but of to in on at by for with from as is are was were be been being it its this that
these those which who whom whose what when where why how than then so such not no do does did done has have had can
could will would shall should may might must into onto over under about after before between during per via also
each other some any all more most less many much very just only their there they them he she his her we our you your
i me my one two""".split()
)
_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9'’\-.]*[A-Za-z0-9]|[A-Za-z0-9]")


class _Questions(BaseModel):
    questions: list[str] = Field(..., min_length=1, max_length=5)


class _Answer(BaseModel):
    answer: str = Field(..., max_length=300)


class _Rating(BaseModel):
    reasoning: str = Field(..., max_length=600)
    score: int = Field(..., ge=1, le=5)


@dataclass(frozen=True)
class SynthConfig:
    """What to generate and how strict the filters are."""

    collection: str
    n: int = 50
    questions_per_chunk: int = 2
    min_similarity: float = 0.45
    min_rating: int = 4
    seed: int = 0
    model: str | None = None
    judge: str | None = None
    max_attempts: int | None = None
    """Questions to try before giving up (default: 5 per pair asked for, at least 20)."""

    @property
    def attempt_limit(self) -> int:
        return self.max_attempts if self.max_attempts is not None else max(20, 5 * self.n)


@dataclass
class SynthReport:
    """Pairs kept and rejections by reason."""

    path: Path
    wanted: int = 0
    kept: int = 0
    chunks_used: int = 0
    attempts: int = 0
    """Questions generated and checked so far."""
    rejected: Counter[str] = field(default_factory=Counter)
    stopped: str = "running"
    """Why it stopped: done (every pair kept), attempts (the bound), chunks (none left), interrupted."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "output": str(self.path),
            "wanted": self.wanted,
            "kept": self.kept,
            "chunks_used": self.chunks_used,
            "attempts": self.attempts,
            "rejected": dict(self.rejected),
            "rejected_total": sum(self.rejected.values()),
            "stopped": self.stopped,
        }


def key_terms(text: str) -> set[str]:
    """Content words of a text (lower case, no stop words): what an answer must share with its chunk."""
    return {w.lower().strip(".'’") for w in _WORD.findall(text) if w.lower() not in _STOP and len(w) > 1 or w.isdigit()}


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


def _chunks(settings: Settings, collection: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(id, text, metadata) of every chunk in the collection."""
    from conclave.tools.store import KnowledgeStore

    store = KnowledgeStore.open(settings)
    col = store.get_collection(collection)
    out: list[tuple[str, str, dict[str, Any]]] = []
    offset, page = 0, 500
    while True:
        batch = store.call(col.get, include=["documents", "metadatas"], limit=page, offset=offset)
        for cid, doc, meta in zip(batch["ids"], batch["documents"] or [], batch["metadatas"] or [], strict=False):
            out.append((cid, doc or "", dict(meta or {})))
        if len(batch["ids"]) < page:
            break
        offset += page
    return sorted(out)


async def synthesize(
    settings: Settings,
    config: SynthConfig,
    out: Path,
    *,
    caches: CacheSet | None = None,
    embedder: Any = None,
    on_progress: Callable[[SynthReport], None] | None = None,
) -> SynthReport:
    """Generate up to ``config.n`` filtered pairs from ``config.collection`` into ``out`` (JSONL).

    Each kept pair is written (and flushed) as it is kept, so an interrupted or failed run leaves the pairs it had;
    ``out.with_suffix(".summary.json")`` (``qa.jsonl`` -> ``qa.summary.json``) says what was kept, what was rejected by which check, and why it stopped, on every exit.
    ``on_progress`` hears after every question checked."""
    from conclave.embeddings import get_embedder
    from conclave.models import StructuredOutputError, complete_structured, role_spec

    chunks = await asyncio.to_thread(_chunks, settings, config.collection)
    usable = [c for c in chunks if len(c[1].strip()) >= MIN_CHUNK_CHARS]
    if not usable:
        raise ConfigError(
            f"collection {config.collection!r} has no chunks of at least {MIN_CHUNK_CHARS} characters",
            hint="ingest some documents first: conclave ingest PATH --collection NAME",
        )
    order = random.Random(config.seed).sample(usable, len(usable))
    own_caches = caches is None
    caches = caches or CacheSet(settings, enabled=settings.cache)
    writer = await caches.client(config.model or await role_spec(settings, "reasoner"))
    judge = await caches.client(config.judge or await role_spec(settings, "judge"))
    embed = embedder or get_embedder(settings.embedder, settings)
    report = SynthReport(out, wanted=config.n)
    seen: set[str] = set()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        sink = out.open("w", encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write {out}: {exc.strerror or exc}", hint="choose a writable output path") from exc

    def checked(reason: str | None = None) -> None:
        report.attempts += 1
        if reason is not None:
            report.rejected[reason] += 1
        if on_progress is not None:
            on_progress(report)

    async def structured(client: Any, system: str, user: str, schema: type[BaseModel]) -> Any:
        for attempt in range(2):
            extra: dict[str, Any] = {"max_tokens": 300}
            if attempt:
                extra.update({"temperature": 0.7, "seed": attempt})
            try:
                return await complete_structured(
                    client,
                    [SystemMessage(content=system), UserMessage(content=user, source="user")],
                    schema,
                    extra=extra,
                )
            except StructuredOutputError:
                continue
        return None

    try:
        for chunk_id, text, meta in order:
            if report.kept >= config.n or report.attempts >= config.attempt_limit:
                break
            report.chunks_used += 1
            asked = await structured(
                writer,
                prompts.load("synth_question"),
                f"Passage:\n{text}\n\nWrite {config.questions_per_chunk} question(s).",
                _Questions,
            )
            if asked is None:
                checked("question model gave invalid output")
                continue
            for question in asked.questions[: config.questions_per_chunk]:
                if report.kept >= config.n or report.attempts >= config.attempt_limit:
                    break
                question = " ".join(question.split())
                if len(question) < 8 or not question.endswith("?"):
                    checked("not a question")
                    continue
                if question.lower() in seen:
                    checked("duplicate question")
                    continue
                seen.add(question.lower())
                answered = await structured(
                    writer, prompts.load("synth_answer"), f"Passage:\n{text}\n\nQuestion: {question}", _Answer
                )
                answer = " ".join((answered.answer if answered else "").split())
                if not answer or "unanswerable" in answer.lower():
                    checked("unanswerable from its chunk")
                    continue
                vectors = await asyncio.to_thread(embed.embed_documents, [f"{question} {answer}", text])
                similarity = _cosine(vectors[0], vectors[1])
                if similarity < config.min_similarity:
                    checked("not close to its chunk")
                    continue
                terms = key_terms(answer)
                chunk_terms = key_terms(text)
                if not terms or len(terms & chunk_terms) / len(terms) < 0.5:
                    checked("answer's key terms not in its chunk")
                    continue
                rating = await structured(
                    judge,
                    prompts.load("synth_judge"),
                    f"Passage:\n{text}\n\nQuestion: {question}\nAnswer: {answer}",
                    _Rating,
                )
                if rating is None:
                    checked("judge gave invalid output")
                    continue
                if rating.score < config.min_rating:
                    checked(f"judge rating below {config.min_rating}")
                    continue
                report.kept += 1
                record = json.dumps(
                    {
                        "id": f"synth-{report.kept}",
                        "question": question,
                        "answer": answer,
                        "gold_ids": [chunk_id],
                        "collection": config.collection,
                        "source": meta.get("source", ""),
                        "similarity": round(similarity, 4),
                        "rating": rating.score,
                    },
                    ensure_ascii=False,
                )
                try:
                    sink.write(record + "\n")
                    sink.flush()
                except OSError as exc:
                    raise ConfigError(
                        f"cannot write {out}: {exc.strerror or exc} ({report.kept - 1} pair(s) written)",
                        hint="free some space or choose another output path",
                    ) from exc
                checked()
        report.stopped = (
            "done" if report.kept >= config.n else "attempts" if report.attempts >= config.attempt_limit else "chunks"
        )
    except (KeyboardInterrupt, asyncio.CancelledError):
        report.stopped = "interrupted"
        raise
    except BaseException:
        report.stopped = "failed"
        raise
    finally:
        sink.close()
        try:
            out.with_suffix(".summary.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
        except OSError:
            pass  # the pairs are written; a summary that cannot be written must not hide the run's own outcome
        if own_caches:
            await caches.close()
    return report
