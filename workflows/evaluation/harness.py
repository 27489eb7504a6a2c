"""The evaluation harness: a matrix of methods x models over the same items, scored, cached, resumable.

The harness knows nothing about how a method works: it runs each (item, method, model) unit through
``workflows.runner.run_question`` and reads the typed events — usage per agent, chains and re-plans, tool calls,
critic rounds, retrieved passages, the answer. Results are appended to ``items.jsonl`` (fsynced) as units finish;
``--resume`` skips finished units; the report is rebuilt from that file at the end.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conclave.workflows.evaluation import runs
from conclave.workflows.evaluation.cache import CacheSet, ClientFactory
from conclave.workflows.evaluation.datasets import Dataset, Item, load_dataset, select_items
from conclave.workflows.evaluation.options import EvalOptions
from conclave.workflows.evaluation.records import EvalSample, samples_from
from conclave.workflows.evaluation.scorers import (
    default_scorers,
    needs_judge,
    resolve_scorers,
)
from conclave.workflows.evaluation.units import (
    LocalUnits,
    UnitPlan,
    UnitRunner,
    model_parallel,
    unit_key,
)
from pydantic import Field, ValidationError

from conclave.errors import ConclaveError, ConfigError
from conclave.models.backends import capabilities_for
from conclave.settings import ROLES, Settings

__all__ = ["EvalConfig", "EvalProgress", "EvalResult", "run_eval"]


class EvalConfig(EvalOptions):
    """What an evaluation run does (the options, ``options.py``, and what the harness resolves); stored as
    ``config.json`` so ``--resume`` repeats it exactly."""

    use_roles: bool = Field(False, description="no model given: each role runs on its configured model")


@dataclass(frozen=True)
class EvalProgress:
    """Where a run is: units done (including ones finished before a resume), passes so far, time."""

    done: int
    total: int
    correct: int
    scored: int
    resumed: int
    elapsed: float
    last: EvalSample | None = None
    eta: float | None = None
    """Seconds left, estimated per method and model from the items this session ran (None until one has)."""

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.scored if self.scored else None


class Eta:
    """Time left in a run. Units run method by method, and methods differ in cost by 10x or more (``direct`` against
    ``coa``), so one overall rate is wrong for most of a run: each (method, model) cell is timed on its own items,
    a cell not started yet is assumed to cost the mean of those timed, and a model serves ``parallel`` units at
    once. Cached units count as done and are not timed."""

    def __init__(self, remaining: Counter[tuple[str, str]], parallel: Callable[[str], int]):
        self.remaining = remaining
        self.parallel = parallel
        self.spent: dict[tuple[str, str], list[float]] = {}

    def finished(self, method: str, model: str, seconds: float | None, cached: bool) -> None:
        self.remaining[(method, model)] -= 1
        if seconds is not None and not cached:
            self.spent.setdefault((method, model), []).append(seconds)

    def seconds(self) -> float | None:
        timed = {cell: sum(v) / len(v) for cell, v in self.spent.items() if v}
        if not timed:
            return None
        fallback = sum(timed.values()) / len(timed)
        return sum(
            left * timed.get(cell, fallback) / max(1, self.parallel(cell[1]))
            for cell, left in self.remaining.items()
            if left > 0
        )


@dataclass
class EvalResult:
    """A finished (or interrupted) run."""

    run_id: str
    run_dir: Path
    records: list[EvalSample]
    summary: dict[str, Any]
    backend_calls: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


class _Matrix:
    """Everything a run needs once its configuration is resolved."""

    def __init__(self, config: EvalConfig, dataset: Dataset, items: list[Item], plan: UnitPlan):
        self.config = config
        self.dataset = dataset
        self.items = items
        self.plan = plan


def _validate(config: EvalConfig) -> None:
    from conclave.workflows.runner import parse_method

    from conclave.models import parse_spec

    for method in config.methods:
        parse_method(method)
    for spec in [*config.models, *([config.judge] if config.judge else [])]:
        parse_spec(spec)
    resolve_scorers(config.scorers)


def _scoped(config: EvalConfig, dataset: Dataset) -> bool:
    """Whether each question searches only its own document: ``search`` when given, else wherever the items name
    one (TAT-QA). Scoped search over items that name none is refused."""
    names_documents = any(item.scope for item in dataset.items)
    if config.search == "scoped" and not names_documents:
        raise ConfigError(
            f"--search scoped needs items that name their own document, and {dataset.kind} items do not",
            hint="use --search open, or a data set kind such as tatqa",
        )
    return names_documents if config.search is None else config.search == "scoped"


async def _resolve(
    config: EvalConfig, settings: Settings, on_note: Callable[[str], None]
) -> tuple[EvalConfig, _Matrix]:
    from conclave.models import role_spec

    _validate(config)
    dataset = load_dataset(config.dataset, strict=config.strict)
    items = select_items(
        dataset.items, limit=config.limit, seed=config.seed, skip=config.skip, stratify_by=dataset.stratify_by
    )
    scoped = _scoped(config, dataset)
    has_gold = any(i.gold_ids for i in items)
    numeric = all(i.answer_kind == "number" for i in items)
    scorers = resolve_scorers(config.scorers) or default_scorers(dataset.kind, numeric=numeric, has_gold_ids=has_gold)
    use_roles = config.use_roles or not config.models
    # Without --model the cell is named after the reasoner's model and every role keeps its configured one.
    models = list(dict.fromkeys(config.models)) or [await role_spec(settings, "reasoner")]
    collection = config.collection
    if dataset.contexts:
        from conclave.workflows.evaluation.knowledge import ensure_contexts

        on_note(f"checking the {len(dataset.contexts)} contexts of {dataset.name} in the knowledge store")
        collection, added = await ensure_contexts(settings, dataset)
        if added:
            on_note(f"ingested {added} contexts into collection {collection}")
    resolved = config.model_copy(
        update={"models": models, "scorers": scorers, "collection": collection, "use_roles": use_roles}
    )
    plan = UnitPlan(collection, config.k or settings.top_k, tuple(scorers), use_roles, scoped, dataset.answer_style)
    matrix = _Matrix(resolved, dataset, items, plan)
    if resolved.executor == "ray":  # refused here, before the caller writes anything for the run
        from conclave.workflows.evaluation.distributed import preflight

        preflight(plan, settings)
    return resolved, matrix


async def run_eval(
    config: EvalConfig,
    settings: Settings,
    *,
    resume: str | None = None,
    run_dir: Path | None = None,
    on_progress: Callable[[EvalProgress], None] | None = None,
    on_note: Callable[[str], None] | None = None,
    on_start: Callable[[str, Path], None] | None = None,
    client_factory: ClientFactory | None = None,
) -> EvalResult:
    """Run (or resume) an evaluation and write items.jsonl, summary.json, report.md and report.html."""
    from conclave.workflows.evaluation import report

    note = on_note or (lambda _msg: None)
    started = time.perf_counter()
    if resume is not None or (run_dir is not None and (run_dir / "config.json").is_file()):
        run_dir = run_dir if run_dir is not None else runs.find_run(settings, resume or "")
        kind = runs.read_json(run_dir / "manifest.json").get("kind") if (run_dir / "manifest.json").is_file() else None
        if kind not in (None, "eval"):
            raise ConfigError(
                f"run {run_dir.name} is a {kind} run, not an evaluation",
                hint=f"resume it with `conclave run --resume {run_dir.name}`",
            )
        try:
            stored = EvalConfig.model_validate(runs.read_json(run_dir / "config.json"))
        except ValidationError as exc:
            raise ConfigError(
                f"{run_dir / 'config.json'} is not an evaluation config: {exc.errors()[0]['msg']}",
                hint="resume an `eval` run (workflow runs resume with `conclave run --resume`)",
            ) from exc
        # The recorded configuration wins (same items, methods, models); only how fast and where it runs may change.
        config = stored.model_copy(update={"concurrency": config.concurrency, "executor": config.executor})
        resolved, matrix = await _resolve(config, settings, note)
        run_id = run_dir.name
        fresh = False
    else:
        resolved, matrix = await _resolve(config, settings, note)
        if run_dir is None:
            run_id = runs.new_run_id("eval")
            run_dir = runs.create_run_dir(settings, run_id)
        else:
            run_id = run_dir.name
            try:
                run_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise runs.RunFolderError(
                    f"cannot create the run folder {run_dir}: {exc.strerror or exc}", hint="make CONCLAVE_HOME writable"
                ) from exc
        fresh = True

    # One writer per run folder: a second `--resume` of this run stops here instead of repeating its items.
    with runs.writer_lock(run_dir, run_id):
        if on_start is not None:
            on_start(run_id, run_dir)
        run_settings = settings.model_copy(
            update={
                "cache": resolved.cache,
                **({"collection": matrix.plan.collection} if matrix.plan.collection else {}),
            }
        )
        caches = CacheSet(run_settings, enabled=resolved.cache, factory=client_factory)
        try:
            judge_spec = None
            if needs_judge(matrix.plan.scorers):
                from conclave.models import role_spec

                judge_spec = resolved.judge or await role_spec(settings, "judge")
            if fresh:
                runs.write_json(run_dir / "config.json", resolved.model_dump(mode="json"), run_id=run_id)
                models = {
                    "cells": resolved.models,
                    "judge": judge_spec,
                    "roles": {role: settings.role_model(role) for role in ROLES},
                }
                manifest = runs.build_manifest(
                    run_settings, kind="eval", run_id=run_id, config=resolved.model_dump(mode="json"), models=models
                )
                manifest["dataset"] = {
                    "kind": matrix.dataset.kind,
                    "path": str(matrix.dataset.path.resolve()),
                    "items_total": len(matrix.dataset.items),
                    "items_selected": len(matrix.items),
                    "contexts": len(matrix.dataset.contexts),
                    "problems": [str(p) for p in matrix.dataset.problems],
                    "collection": matrix.plan.collection,
                }
                runs.write_json(run_dir / "manifest.json", manifest, run_id=run_id)
            for problem in matrix.dataset.problems[:10]:
                note(f"skipped malformed record: {matrix.dataset.path}: {problem}")
            if len(matrix.dataset.problems) > 10:
                note(f"... and {len(matrix.dataset.problems) - 10} more malformed records")
            records = await _execute(
                matrix, run_settings, caches, run_dir, run_id, judge_spec, on_progress, started, note
            )
        finally:
            await caches.close()
        summary = report.write_reports(run_dir, records, run_id=run_id)
        return EvalResult(run_id, run_dir, records, summary, caches.backend_calls(), time.perf_counter() - started)


async def _execute(
    matrix: _Matrix,
    settings: Settings,
    caches: CacheSet,
    run_dir: Path,
    run_id: str,
    judge_spec: str | None,
    on_progress: Callable[[EvalProgress], None] | None,
    started: float,
    note: Callable[[str], None],
) -> list[EvalSample]:
    log = runs.JsonlLog(
        run_dir / "items.jsonl",
        run_id=run_id,
        on_problem=lambda problem: note(f"skipped a damaged record (kept the rest): {problem}"),
    )
    previous, invalid = samples_from(log.load())
    for problem in invalid:
        note(f"skipped a record that is not a result (its unit runs again): {problem}")
    latest = {r.key: r for r in previous}
    # Failed units (backend down, a crash) run again on resume; answered ones are kept as they are, and so are
    # units that ran through and produced no answer (a failed item, but running it again would repeat it).
    finished = {key for key, r in latest.items() if r.status != "error"}
    units = [
        (item, method, model)
        for model in matrix.config.models
        for method in matrix.config.methods
        for item in matrix.items
    ]
    todo = [u for u in units if unit_key(u[0].id, u[1], u[2]) not in finished]
    wanted = {unit_key(i.id, m, s) for i, m, s in units}
    kept = [r for key, r in latest.items() if key in finished and key in wanted]
    runs.write_json(
        run_dir / "status.json", {"status": "running", "units": len(units), "done": len(kept)}, run_id=run_id
    )

    def parallel(spec: str) -> int:
        return model_parallel(spec, matrix.config.concurrency, settings)

    runner: UnitRunner
    if matrix.config.executor == "ray":
        from conclave.workflows.evaluation.distributed import RayUnits

        in_process = [m for m in matrix.config.models if capabilities_for(m).in_process]
        if in_process:
            note(
                f"{', '.join(in_process)} runs inside each Ray worker (a copy of the model per worker); on one "
                "machine --executor local serves it with less memory"
            )

        runner = await RayUnits.start(matrix.plan, settings, judge_spec, matrix.config.concurrency, note)
    else:
        runner = await LocalUnits.start(matrix.plan, settings, caches, judge_spec, matrix.config.concurrency)
    counts = {
        "done": len(kept),
        "correct": sum(1 for r in kept if r.correct),
        "scored": sum(1 for r in kept if r.correct is not None),
    }
    new_records: list[EvalSample] = []
    queue: asyncio.Queue[tuple[Item, str, str]] = asyncio.Queue()
    for unit in todo:
        queue.put_nowait(unit)

    eta = Eta(Counter((method, model) for _, method, model in todo), parallel)

    def report_progress(last: EvalSample | None) -> None:
        if on_progress is not None:
            on_progress(
                EvalProgress(
                    counts["done"],
                    len(units),
                    counts["correct"],
                    counts["scored"],
                    len(kept),
                    time.perf_counter() - started,
                    last,
                    eta.seconds(),
                )
            )

    report_progress(None)

    async def worker() -> None:
        while True:
            try:
                item, method, model = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            sample = await runner(item, method, model)
            log.append(sample.to_record())
            new_records.append(sample)
            eta.finished(method, model, sample.latency, sample.cached)
            counts["done"] += 1
            if sample.correct is not None:
                counts["scored"] += 1
                counts["correct"] += int(sample.correct)
            report_progress(sample)

    status = "interrupted"
    try:
        workers = [asyncio.create_task(worker()) for _ in range(min(matrix.config.concurrency, max(1, len(todo))))]
        try:
            await asyncio.gather(*workers)
        except BaseException:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            raise
        status = "finished"
    finally:
        await runner.close()
        try:
            runs.write_json(
                run_dir / "status.json", {"status": status, "units": len(units), "done": counts["done"]}, run_id=run_id
            )
        except ConclaveError:
            pass  # the original error (disk full, Ctrl-C) matters more than the status file
    order = {unit_key(i.id, m, s): n for n, (i, m, s) in enumerate(units)}
    records = {r.key: r for r in [*kept, *new_records]}
    return sorted(records.values(), key=lambda r: order.get(r.key, len(order)))
