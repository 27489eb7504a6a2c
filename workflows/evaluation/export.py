"""Export accepted chain-of-abstraction chains as chat-format JSONL for fine-tuning.

The paper's models were trained on (question -> abstract chain) pairs. A run's trace holds every chain the reasoner
drafted; the exported one is the last chain that validated, for items whose critic (if any) finally accepted it, and,
with ``only_correct``, whose answer scored as correct.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conclave.errors import ConfigError

__all__ = ["ExportReport", "accepted_chain", "export_traces"]

SYSTEM = ("Solve the problem by writing an abstract chain of reasoning: every intermediate value is a placeholder "
          "(y1, y2, ...) filled in by a tool call, e.g. [3 * 12 = y1]. End with: Answer: yN")


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
    without_chain: int
    not_correct: int
    not_accepted: int


def export_traces(run_dir: Path, out: Path, *, only_correct: bool = False, with_system: bool = True) -> ExportReport:
    """Write one ``{"messages": [...], "metadata": {...}}`` line per accepted chain of the run."""
    from workflows.evaluation.runs import read_jsonl

    records, _ = read_jsonl(run_dir / "items.jsonl")
    if not records:
        raise ConfigError(f"run {run_dir.name} has no finished items", hint="run or resume it first")
    latest = {r["key"]: r for r in records if "key" in r}
    lines: list[str] = []
    without_chain = not_correct = not_accepted = 0
    for record in latest.values():
        trace = record.get("trace", [])
        if not any(e.get("kind") == "chain" for e in trace):
            without_chain += 1
            continue
        if only_correct and not record.get("correct"):
            not_correct += 1
            continue
        chain = accepted_chain(trace)
        if chain is None:
            not_accepted += 1
            continue
        value = record.get("value")
        assistant = chain if value in (None, "") or "Answer:" in chain else f"{chain}\nAnswer: {value}"
        messages = ([{"role": "system", "content": SYSTEM}] if with_system else []) + [
            {"role": "user", "content": record["question"]},
            {"role": "assistant", "content": assistant},
        ]
        metadata = {"run": run_dir.name, "item_id": record["item_id"], "method": record["method"],
                    "model": record["model"], "correct": record.get("correct"), "gold": record.get("gold")}
        lines.append(json.dumps({"messages": messages, "metadata": metadata}, ensure_ascii=False))
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write {out}: {exc.strerror or exc}", hint="choose a writable output path") from exc
    return ExportReport(out, len(lines), without_chain, not_correct, not_accepted)
