"""The routing table of docs/QUALITY.md: how each kind of question is routed by the reasoner (lookup-only examples,
no passages; or the arithmetic route with every example and the passages), against what the question needs. No model
is run: routing is a function of the question's text (``agents.reasoner.needs_arithmetic``).

    python bench/routing.py

Kinds and what each needs: GSM8K and SVAMP (arithmetic, every item), SQuAD and HotpotQA (lookups, every item),
TAT-QA (arithmetic where ``answer_type`` is ``arithmetic``; spans, multi-spans and counts are read), and our own
notes-qa set (``facts-arithmetic`` and ``arithmetic`` compute; ``lookup``, ``two-hop`` and ``explanation`` read).
The rule before issue 27 ("at most one number in the question is a lookup") is kept here as the baseline.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import common
from conclave.agents.reasoner import is_explanation, needs_arithmetic

NOTES_QA = common.REPO / "examples" / "datasets" / "notes-qa.jsonl"
_DIGITS = re.compile(r"(?<![\w.])\d[\d,]*(?:\.\d+)?")


def digit_count_rule(question: str) -> bool:
    """The rule before issue 27: a question with two or more numbers computes, any other is a lookup."""
    return len(_DIGITS.findall(question)) >= 2


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def labelled() -> dict[str, list[tuple[str, bool]]]:
    """kind -> (question, needs arithmetic) for every item of every set that is here."""
    data = common.SHARED_DATA
    out: dict[str, list[tuple[str, bool]]] = {}
    out["gsm8k"] = [(r["question"], True) for r in _jsonl(common.require(data / "gsm8k" / "dev.jsonl", "GSM8K"))]
    out["svamp"] = [
        (f"{r['Body']} {r['Question']}", True) for r in _jsonl(common.require(data / "svamp" / "dev.jsonl", "SVAMP"))
    ]
    squad = json.loads(common.require(common.SQUAD_DEV, "SQuAD").read_text())
    out["squad"] = [(qa["question"], False) for a in squad["data"] for p in a["paragraphs"] for qa in p["qas"]]
    out["hotpotqa"] = [
        (r["question_text"], False) for r in _jsonl(common.require(data / "hotpotqa" / "dev.jsonl", "HotpotQA"))
    ]
    tatqa = json.loads(common.require(data / "tatqa" / "tatqa_dataset_dev.json", "TAT-QA").read_text())
    out["tatqa"] = [(q["question"], q["answer_type"] == "arithmetic") for r in tatqa for q in r["questions"]]
    out["notes-qa"] = [(r["question"], r["kind"] in ("facts-arithmetic", "arithmetic")) for r in _jsonl(NOTES_QA)]
    return out


def score(rule: Callable[[str], bool], items: list[tuple[str, bool]]) -> tuple[int, int, int, int]:
    """(computing items routed to arithmetic, computing items, lookups routed to lookup, lookups)."""
    compute = [q for q, needs in items if needs]
    lookups = [q for q, needs in items if not needs]
    return (sum(map(rule, compute)), len(compute), sum(not rule(q) for q in lookups), len(lookups))


def no_plan(question: str) -> bool:
    """The route with no chain (``agents.planner.no_plan_needed`` over a collection, with no conversation)."""
    return is_explanation(question) and not needs_arithmetic(question)


def explanations() -> dict[str, tuple[int, int, int, int]]:
    """notes-qa by its own kinds: (explanations routed to no plan, explanations, others routed to no plan, others)."""
    rows = [(r["question"], r["kind"] == "explanation") for r in _jsonl(NOTES_QA)]
    wanted = [q for q, e in rows if e]
    others = [q for q, e in rows if not e]
    return {"notes-qa": (sum(map(no_plan, wanted)), len(wanted), sum(map(no_plan, others)), len(others))}


def _share(right: int, total: int) -> str:
    return "—" if total == 0 else f"{right}/{total} ({100 * right / total:.1f}%)"


def main() -> None:
    args = common.parser(__doc__ or "", repeats=1).parse_args()
    rows, data = [], {}
    for kind, items in labelled().items():
        old, new = score(digit_count_rule, items), score(needs_arithmetic, items)
        skipped = sum(no_plan(q) for q, _ in items)
        data[kind] = {"digit_count_rule": old, "needs_arithmetic": new, "no_plan": skipped}
        rows.append(
            [kind, len(items), _share(old[0], old[1]), _share(new[0], new[1]), _share(old[2], old[3]),
             _share(new[2], new[3]), _share(skipped, len(items))]
        )  # fmt: skip
    table = common.md_table(
        ["kind", "items", "compute → arithmetic (before)", "(after)", "lookup → lookup (before)", "(after)",
         "no plan (explanation)"], rows
    )  # fmt: skip
    wanted, total, stray, others = explanations()["notes-qa"]
    data["notes-qa explanations"] = {"routed": wanted, "of": total, "others_routed": stray, "others": others}
    common.emit(
        "routing",
        "Routing by what the question needs (before: at most one number is a lookup)",
        table,
        notes=[
            "no model is run; every item of each development file is routed",
            "a computing question routed to lookup never sees an arithmetic example (the costly error); a lookup "
            "routed to arithmetic sees every example and the passages, and can still write searches",
            f"no plan: over a collection, an explanation (why / how does / what happens / compare, nothing to "
            f"compute) is answered from its passages without a chain; notes-qa's explanations routed there: "
            f"{_share(wanted, total)}, its other kinds: {_share(stray, others)}",
        ],
        data=data,
        info=common.machine(),
        quick=args.quick,
        out=args.out,
    )


if __name__ == "__main__":
    main()
