"""An evaluation run in the formats other tools read: Inspect AI eval logs and CSV (``conclave eval export``).

* ``inspect``: one Inspect AI eval log per result set (method x model) of the run, the form ``inspect view`` and
  ``inspect_ai.log.read_eval_log`` read: the task is the data set, the solver the method, the model the model spec;
  each item is a sample with its input, target, output, every scorer's score, its model usage (per agent as role
  usage) and, as sample metadata, the chain it rests on and the run's events. The results hold each scorer's
  accuracy (pass rate) and mean.
* ``csv``: one row per item and result set: the answer, the outcome, every score, latency, tokens and calls, and the
  item's labels. A cell that a spreadsheet would run as a formula (``=``, ``@``, or ``+``/``-`` before anything but a
  number) starts with ``'``: questions and answers are untrusted text.

Both are written with :func:`conclave.fileio.atomic_write` (never through a link at the output); the default outputs
live in the run folder (``RUN/inspect/``, ``RUN/results.csv``), checked to stay inside it after links.
"""

from __future__ import annotations

import csv
import io
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from conclave.workflows.evaluation.records import EvalSample

from conclave import fileio
from conclave.errors import ConfigError

__all__ = ["FORMATS", "ExportResult", "csv_text", "export_run", "inspect_log"]

FORMATS = ("inspect", "csv")
INSPECT_SUFFIXES = (".eval", ".json")
_FORMULA = re.compile(r"^[=@\t\r]|^[+-](?![0-9.,]+(?:[eE][+-]?\d+)?%?$)")
CSV_COLUMNS = (
    "run",
    "item_id",
    "method",
    "model",
    "question",
    "gold",
    "answer",
    "value",
    "correct",
    "outcome",
    "error",
    "latency_s",
    "llm_calls",
    "prompt_tokens",
    "completion_tokens",
    "tool_calls",
    "replans",
    "critic_rounds",
    "backend_calls",
    "cached",
)


@dataclass(frozen=True)
class ExportResult:
    paths: list[Path]
    samples: int
    skipped_lines: int
    """Lines of ``items.jsonl`` that were not results (damaged, or not a sample): left out."""


# ------------------------------------------------------------------------------------------------ reading


def _run_samples(run_dir: Path) -> tuple[list[EvalSample], int]:
    """The run's latest sample per unit, and how many lines of ``items.jsonl`` were not samples."""
    from conclave.workflows.evaluation.records import samples_from
    from conclave.workflows.evaluation.runs import JsonlProblem, read_jsonl

    problems: list[JsonlProblem] = []
    records, _ = read_jsonl(run_dir / "items.jsonl", problems=problems)
    samples, invalid = samples_from(records)
    latest = list({s.key: s for s in samples}.values())
    if not latest:
        raise ConfigError(f"run {run_dir.name} has no finished items", hint="run or resume it first")
    return latest, len(problems) + len(invalid)


def _cells(samples: Sequence[EvalSample], selector: str | None, run: str) -> dict[tuple[str, str], list[EvalSample]]:
    from conclave.workflows.evaluation.compare import select_cells

    cells: dict[tuple[str, str], list[EvalSample]] = {}
    for sample in samples:
        cells.setdefault((sample.method, sample.model), []).append(sample)
    return select_cells(cells, selector, run)


def _manifest(run_dir: Path) -> dict[str, Any]:
    from conclave.workflows.evaluation.runs import read_json

    data = read_json(run_dir / "manifest.json")
    return data if isinstance(data, dict) else {}


# ------------------------------------------------------------------------------------------------ inspect


def _iso(unix: float | None) -> str:
    return datetime.fromtimestamp(unix or 0, UTC).isoformat(timespec="seconds")


def _usage(prompt: int, completion: int) -> Any:
    from inspect_ai.model import ModelUsage

    return ModelUsage(input_tokens=prompt, output_tokens=completion, total_tokens=prompt + completion)


def _chain(sample: EvalSample) -> dict[str, str]:
    """The chain an answer rests on: as the reasoner wrote it (the accepted draft) and filled in by the tools."""
    from conclave.workflows.evaluation.export import accepted_chain

    filled = next((str(e.get("chain") or "") for e in reversed(sample.trace) if e.get("kind") == "answer"), "")
    drafted = accepted_chain(sample.trace) or ""
    return {key: text for key, text in (("chain", filled), ("chain_drafted", drafted)) if text}


def _scores(sample: EvalSample) -> dict[str, Any]:
    from inspect_ai.scorer import Score

    scores = {}
    for name, score in sample.scores.items():
        value = score.get("value")
        if value is None:
            value = score.get("passed")
        if value is None:  # not scored (no judge, or nothing to score): Inspect has no "missing" score
            continue
        scores[name] = Score(
            value=value,
            answer=sample.value if sample.value is not None else sample.answer,
            explanation=score.get("detail"),
            metadata={k: v for k, v in score.items() if k not in ("value", "detail")},
        )
    return scores


def _inspect_sample(sample: EvalSample) -> Any:
    from inspect_ai.log import EvalError
    from inspect_ai.log import EvalSample as InspectSample
    from inspect_ai.model import ChatCompletionChoice, ChatMessageAssistant, ChatMessageUser, ModelOutput

    usage = _usage(sample.prompt_tokens, sample.completion_tokens)
    reply = ChatMessageAssistant(content=sample.answer, model=sample.model)
    metadata: dict[str, Any] = {
        **_chain(sample),
        "value": sample.value,
        "outcome": sample.status,
        "labels": sample.labels,
        "llm_calls": sample.llm_calls,
        "tool_calls": sample.tool_calls,
        "replans": sample.replans,
        "critic_rounds": sample.critic_rounds,
        "backend_calls": sample.backend_calls,
        "cached": sample.cached,
        "retrieved_ids": sample.retrieved_ids,
        "gold_ids": sample.gold_ids,
        "trace": sample.trace,
    }
    return InspectSample(
        id=sample.item_id,
        epoch=1,
        input=sample.question,
        target=list(sample.gold),
        messages=[ChatMessageUser(content=sample.question), reply],
        output=ModelOutput(
            model=sample.model,
            choices=[ChatCompletionChoice(message=reply, stop_reason="stop")],
            usage=usage,
            time=sample.latency,
            error=sample.error if sample.status == "error" else None,
        ),
        scores=_scores(sample),
        metadata=metadata,
        model_usage={sample.model: usage},
        role_usage={
            agent: _usage(u.get("prompt_tokens", 0), u.get("completion_tokens", 0)) for agent, u in sample.usage.items()
        },
        total_time=sample.latency,
        completed_at=_iso(sample.finished_at),
        error=EvalError(message=sample.error, traceback="", traceback_ansi="") if sample.status == "error" else None,
    )


def _results(samples: Sequence[EvalSample]) -> Any:
    from conclave.workflows.evaluation.report import summarize
    from inspect_ai.log import EvalMetric, EvalResults, EvalScore

    (cell,) = summarize(samples)["cells"]
    scores = []
    for name, stats in cell["scores"].items():
        metrics = {
            key: EvalMetric(name=key, value=value)
            for key, value in (("accuracy", stats["pass_rate"]), ("mean", stats["mean"]))
            if value is not None
        }
        scores.append(
            EvalScore(
                name=name,
                scorer=name,
                scored_samples=stats["n"],
                unscored_samples=len(samples) - stats["n"],
                metrics=metrics,
            )
        )
    return EvalResults(total_samples=len(samples), completed_samples=len(samples), scores=scores)


def inspect_log(run_dir: Path, method: str, model: str, samples: Sequence[EvalSample], manifest: dict[str, Any]) -> Any:
    """The Inspect AI ``EvalLog`` of one result set of a run."""
    from conclave.workflows.runner import parse_method
    from inspect_ai.log import (
        EvalConfig,
        EvalDataset,
        EvalLog,
        EvalPlan,
        EvalPlanStep,
        EvalRevision,
        EvalSpec,
        EvalStats,
    )

    config = manifest.get("config") or {}
    dataset = manifest.get("dataset") or {}
    kind = str(dataset.get("kind") or str(config.get("dataset", "")).partition(":")[0] or "dataset")
    name, options = parse_method(method)
    git = manifest.get("git") or {}
    status = _run_status(run_dir)
    spec = EvalSpec(
        eval_id=f"{run_dir.name}-{method}-{model}",
        run_id=run_dir.name,
        created=str(manifest.get("created") or _iso(min(s.finished_at for s in samples))),
        task=f"conclave/{kind}",
        task_args={"dataset": config.get("dataset"), "collection": config.get("collection")},
        solver=name,
        solver_args=options,
        dataset=EvalDataset(
            name=kind,
            location=str(dataset.get("path") or ""),
            samples=len(samples),
            sample_ids=[s.item_id for s in samples],
        ),
        model=model,
        config=EvalConfig(limit=config.get("limit"), epochs=1),
        revision=EvalRevision(type="git", origin="", commit=str(git["commit"]), dirty=git.get("dirty"))
        if git.get("commit")
        else None,
        packages={k: str(v) for k, v in (manifest.get("packages") or {}).items()},
        metadata={"conclave_run": run_dir.name, "command": manifest.get("command"), "run_status": status},
    )
    totals: dict[str, list[int]] = {}
    for sample in samples:
        for agent, used in sample.usage.items():
            slot = totals.setdefault(agent, [0, 0])
            slot[0] += used.get("prompt_tokens", 0)
            slot[1] += used.get("completion_tokens", 0)
    stats = EvalStats(
        started_at=str(manifest.get("created") or _iso(min(s.finished_at for s in samples))),
        completed_at=_iso(max(s.finished_at for s in samples)),
        model_usage={model: _usage(sum(s.prompt_tokens for s in samples), sum(s.completion_tokens for s in samples))},
        role_usage={agent: _usage(p, c) for agent, (p, c) in totals.items()},
    )
    return EvalLog(
        status="success" if status == "finished" else "cancelled",
        eval=spec,
        plan=EvalPlan(name="conclave", steps=[EvalPlanStep(solver=name, params=options)]),
        results=_results(samples),
        stats=stats,
        samples=[_inspect_sample(s) for s in sorted(samples, key=lambda s: s.item_id)],
    )


def _run_status(run_dir: Path) -> str:
    from conclave.workflows.evaluation.runs import read_json

    try:
        data = read_json(run_dir / "status.json")
    except ConfigError:
        return "unknown"
    return str(data.get("status", "unknown")) if isinstance(data, dict) else "unknown"


def _log_bytes(log: Any, suffix: str) -> bytes:
    """The log as Inspect writes it (``.eval``: its zip format; ``.json``), made in a private folder and read back,
    so the file at the output is written by our atomic writer, never by a library following a link there."""
    from inspect_ai.log import write_eval_log

    with tempfile.TemporaryDirectory(prefix="conclave-inspect-") as folder:
        path = Path(folder) / f"log{suffix}"
        write_eval_log(log, str(path), format="eval" if suffix == ".eval" else "json")
        return path.read_bytes()


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "x"


# ------------------------------------------------------------------------------------------------ csv


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return "'" + text if _FORMULA.match(text) else text


def csv_text(run: str, samples: Sequence[EvalSample]) -> str:
    """One row per sample (item x method x model): the columns of :data:`CSV_COLUMNS`, then ``SCORER`` and
    ``SCORER_passed`` per scorer, then ``label_NAME`` per item label."""
    scorers = list(dict.fromkeys(name for s in samples for name in s.scores))
    labels = list(dict.fromkeys(name for s in samples for name in s.labels))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*CSV_COLUMNS, *(c for n in scorers for c in (n, f"{n}_passed")), *(f"label_{n}" for n in labels)])
    for s in sorted(samples, key=lambda s: (s.item_id, s.method, s.model)):
        row = [
            run, s.item_id, s.method, s.model, s.question, " | ".join(s.gold), s.answer, s.value, s.correct,
            s.status, s.error, s.latency, s.llm_calls, s.prompt_tokens, s.completion_tokens, s.tool_calls,
            s.replans, s.critic_rounds, s.backend_calls, s.cached,
        ]  # fmt: skip
        for name in scorers:
            score = s.score_of(name)
            row += [score.get("value"), score.get("passed")]
        row += [s.labels.get(name) for name in labels]
        writer.writerow([_cell(v) for v in row])
    return buffer.getvalue()


# ------------------------------------------------------------------------------------------------ export


def _write(path: Path, data: bytes | str, within: Path | None) -> Path:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return fileio.atomic_write(path, data, within=within)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}", hint="choose a writable output path") from exc


def export_run(run_dir: Path, fmt: str, out: Path | None = None, *, selector: str | None = None) -> ExportResult:
    """Write the run (or the result sets ``selector`` picks: ``METHOD[@MODEL]``) as ``fmt``. ``out``: a file (csv,
    or inspect with one result set: ``.eval`` or ``.json``) or, for inspect, a folder for one log per result set;
    default: in the run folder."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}", hint=f"use {' or '.join(FORMATS)}")
    samples, skipped = _run_samples(run_dir)
    cells = _cells(samples, selector, run_dir.name)
    chosen = [s for cell in cells.values() for s in cell]
    within = run_dir if out is None else None
    if fmt == "csv":
        path = out if out is not None else run_dir / "results.csv"
        return ExportResult([_write(path, csv_text(run_dir.name, chosen), within)], len(chosen), skipped)
    try:
        import inspect_ai  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            "writing Inspect AI logs needs the inspect-ai package", hint="pip install 'conclave[inspect]'"
        ) from exc
    manifest = _manifest(run_dir)
    if out is not None and out.suffix in INSPECT_SUFFIXES:
        if len(cells) > 1:
            have = ", ".join(f"{m}@{s}" for m, s in sorted(cells))
            raise ConfigError(
                f"run {run_dir.name} has {len(cells)} result sets ({have}) and {out.name} is one file",
                hint=f"give a folder with -o, or pick one: {run_dir.name}:METHOD@MODEL",
            )
        targets = {next(iter(cells)): out}
    else:
        folder = out if out is not None else run_dir / "inspect"
        targets = {key: folder / f"{_slug(run_dir.name)}_{_slug(key[0])}_{_slug(key[1])}.eval" for key in cells}
    paths = []
    for (method, model), path in targets.items():
        log = inspect_log(run_dir, method, model, cells[(method, model)], manifest)
        paths.append(_write(path, _log_bytes(log, path.suffix if path.suffix in INSPECT_SUFFIXES else ".eval"), within))
    return ExportResult(paths, len(chosen), skipped)
