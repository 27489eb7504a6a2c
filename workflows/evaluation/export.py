"""Export chain-of-abstraction chains as chat-format JSONL for fine-tuning (LoRA and the like).

The paper's models were trained on (question -> abstract chain) pairs. Two sources give them:

* evaluation runs: a run's trace holds every chain the reasoner drafted; the exported one is the last chain that
  validated, for items whose critic (if any) finally accepted it, and, with ``only_correct``, whose answer scored
  as correct;
* GSM8K-format training files: each answer's calculator notes converted to a chain (``workflows.coa.gsm8k``), every
  one checked by recomputing its notes, so no model is involved.

Any form is written: ``text`` (``[48 / 2 = y1]``, what the system message describes), ``json`` (the reasoner's
constrained-decoding form) or ``program`` (Python assignments in a fenced block, the reasoner's program form).
GSM8K files also give ``cot``: the training answer's own rationale, calculator notes removed, ending in the
``Answer: N`` line the ``cot`` method's prompt asks for (and its scorer reads), under that prompt as system message;
only items whose answer also converts to a chain are written, so ``cot`` and the chain forms hold the same questions
(the paper's comparison: tuned on chains vs tuned on chain-of-thought).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conclave import fileio, nesting
from conclave.errors import ConfigError

__all__ = ["ExportReport", "accepted_chain", "export_chains", "export_traces", "gsm8k_chain_lines"]

SYSTEM = (
    "Solve the problem by writing an abstract chain of reasoning: every intermediate value is a placeholder "
    "(y1, y2, ...) filled in by a tool call, e.g. [3 * 12 = y1]. End with: Answer: yN"
)
SYSTEM_JSON = (
    'Solve the problem by writing an abstract chain of reasoning as JSON: {"steps": [{"thought": ..., '
    '"id": "y1", "tool": "calculator", "args": {"expression": "3 * 12"}}, ...], "answer": "yN"}; later '
    "steps use earlier placeholders (y1, y2, ...) and tools fill in the values."
)
SYSTEM_PROGRAM = (
    "Solve the problem by writing a short Python program of assignments in a ```python block: one "
    "quantity per line (name = arithmetic, or name = tool(arguments)), a comment above each line, the "
    "question's numbers written into the expressions; tools fill in every value. End with answer = name."
)
FORMS = ("text", "json", "program", "cot")
_CALCULATOR_NOTE = re.compile(r"<<[^<>]*>>")


def cot_answer(answer: str, gold: str) -> str:
    """A GSM8K answer as a chain-of-thought reply: ``<<48/2=24>>`` notes removed, ``#### 72`` -> ``Answer: 72``."""
    body = _CALCULATOR_NOTE.sub("", answer.rpartition("####")[0])
    lines = [" ".join(line.split()) for line in body.splitlines()]
    return "\n".join([line for line in lines if line] + [f"Answer: {gold}"])


def render_form(chain: Any, form: str) -> str:
    """A chain in one of :data:`FORMS`."""
    from conclave.workflows.coa.program import render_program
    from conclave.workflows.coa.render import render, render_json

    renderers: dict[str, Callable[[Any], str]] = {"json": render_json, "program": render_program}
    return renderers.get(form, render)(chain)


def accepted_chain(trace: Sequence[dict[str, Any]]) -> str | None:
    """The chain the run settled on, or None (no valid chain, or the critic's last word was ``revise``)."""
    rejected = {(e.get("attempt"), e.get("sample")) for e in trace if e.get("kind") == "replan"}
    valid = [e for e in trace if e.get("kind") == "chain" and (e.get("attempt"), e.get("sample")) not in rejected]
    if not valid:
        return None
    critiques = [e for e in trace if e.get("kind") == "critique"]
    if critiques and critiques[-1].get("verdict") != "accept":
        return None
    # A revision re-drafts sample 0 with a higher attempt number: the last valid draft is the one accepted.
    text = str(valid[-1].get("text", "")).strip()
    return text or None


@dataclass(frozen=True)
class ExportReport:
    """How many chains were exported and why the others were not."""

    path: Path
    exported: int
    without_chain: int = 0
    not_correct: int = 0
    not_accepted: int = 0
    converted: int = 0
    """Of ``exported``, chains converted from GSM8K training answers."""
    not_convertible: int = 0
    """Training items whose answer has no usable calculator notes (or a wrong one)."""


def _system(form: str) -> str:
    if form == "cot":
        from conclave.agents.prompting import load_prompt

        return load_prompt("cot")  # what `--method cot` sends (without a user's --system)
    return {"json": SYSTEM_JSON, "program": SYSTEM_PROGRAM}.get(form, SYSTEM)


def _chat_line(question: str, chain: str, metadata: dict[str, Any], *, form: str, with_system: bool) -> str:
    system = _system(form)
    messages = ([{"role": "system", "content": system}] if with_system else []) + [
        {"role": "user", "content": question},
        {"role": "assistant", "content": chain},
    ]
    return json.dumps({"messages": messages, "metadata": metadata}, ensure_ascii=False)


def _check_form(form: str) -> None:
    if form not in FORMS:
        raise ConfigError(f"unknown chain form {form!r}", hint="use text, json, program or cot")


def run_chain_lines(
    run_dir: Path, *, only_correct: bool = False, with_system: bool = True, form: str = "text"
) -> tuple[list[str], dict[str, int]]:
    """Chat lines for the accepted chains of one run, and counts of the items left out (and why)."""
    from conclave.workflows.coa import parse_chain
    from conclave.workflows.evaluation.records import latest_samples

    _check_form(form)
    if form == "cot":
        raise ConfigError(
            "the cot form comes from GSM8K training files only", hint="use --gsm8k TRAIN.jsonl with --form cot"
        )
    samples = latest_samples(run_dir / "items.jsonl")
    if not samples:
        raise ConfigError(f"run {run_dir.name} has no finished items", hint="run or resume it first")
    lines: list[str] = []
    left = {"without_chain": 0, "not_correct": 0, "not_accepted": 0}
    for record in samples:
        trace = record.trace
        if not any(e.get("kind") == "chain" for e in trace):
            left["without_chain"] += 1
            continue
        if only_correct and not record.correct:
            left["not_correct"] += 1
            continue
        chain = accepted_chain(trace)
        if chain is None:
            left["not_accepted"] += 1
            continue
        value = record.value
        if form in ("json", "program"):
            try:
                assistant = render_form(parse_chain(chain), form)
            except Exception:  # an accepted chain parsed once; one that no longer does is left out, not fatal
                left["not_accepted"] += 1
                continue
        else:
            assistant = chain if value in (None, "") or "Answer:" in chain else f"{chain}\nAnswer: {value}"
        metadata = {
            "source": "run",
            "run": run_dir.name,
            "item_id": record.item_id,
            "method": record.method,
            "model": record.model,
            "correct": record.correct,
            "gold": record.gold,
        }
        lines.append(_chat_line(record.question, assistant, metadata, form=form, with_system=with_system))
    return lines, left


def gsm8k_chain_lines(
    path: Path, *, with_system: bool = True, form: str = "text", limit: int | None = None
) -> tuple[list[str], int]:
    """Chat lines for a GSM8K-format training file's answers converted to chains; and how many did not convert."""
    from conclave.workflows.coa.gsm8k import GSM8KConversionError, convert_gsm8k_answer, gsm8k_gold

    _check_form(form)
    if not path.is_file():
        raise ConfigError(f"training file not found: {path}", hint="give a GSM8K-format JSONL file (question, answer)")
    lines: list[str] = []
    skipped = 0
    with path.open(encoding="utf-8") as fh:
        for number, raw in enumerate(fh, 1):
            if limit is not None and len(lines) >= limit:
                break
            if not raw.strip():
                continue
            try:
                item = nesting.loads(raw)
                chain = convert_gsm8k_answer(item["question"], item["answer"])
                gold = gsm8k_gold(item["answer"])
            except (json.JSONDecodeError, KeyError, TypeError, GSM8KConversionError):
                skipped += 1
                continue
            text = cot_answer(item["answer"], gold) if form == "cot" else render_form(chain, form)
            metadata = {"source": "gsm8k", "file": path.name, "line": number, "gold": [gold]}
            lines.append(_chat_line(item["question"], text, metadata, form=form, with_system=with_system))
    return lines, skipped


def _write(out: Path, lines: list[str]) -> None:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        # Atomic, and never through a link planted at the output or at a fixed temporary name.
        fileio.write_text(out, "".join(line + "\n" for line in lines))
    except OSError as exc:
        raise ConfigError(f"cannot write {out}: {exc.strerror or exc}", hint="choose a writable output path") from exc


def export_chains(
    out: Path,
    *,
    runs: Sequence[Path] = (),
    gsm8k: Sequence[Path] = (),
    only_correct: bool = False,
    with_system: bool = True,
    form: str = "text",
    limit: int | None = None,
) -> ExportReport:
    """One JSONL of chat examples from evaluation runs and converted GSM8K training files (``limit`` per file)."""
    if not runs and not gsm8k:
        raise ConfigError("nothing to export", hint="name an evaluation run and/or a GSM8K training file (--gsm8k)")
    lines: list[str] = []
    left = {"without_chain": 0, "not_correct": 0, "not_accepted": 0}
    for run_dir in runs:
        found, counts = run_chain_lines(run_dir, only_correct=only_correct, with_system=with_system, form=form)
        lines.extend(found)
        for key, n in counts.items():
            left[key] += n
    converted = not_convertible = 0
    for path in gsm8k:
        found, skipped = gsm8k_chain_lines(path, with_system=with_system, form=form, limit=limit)
        lines.extend(found)
        converted += len(found)
        not_convertible += skipped
    _write(out, lines)
    return ExportReport(out, len(lines), converted=converted, not_convertible=not_convertible, **left)


def export_traces(run_dir: Path, out: Path, *, only_correct: bool = False, with_system: bool = True) -> ExportReport:
    """Write one ``{"messages": [...], "metadata": {...}}`` line per accepted chain of the run."""
    return export_chains(out, runs=[run_dir], only_correct=only_correct, with_system=with_system)
