"""Why chain-of-abstraction items fail: classify every wrong coa item of an evaluation run from its trace.

    python bench/coa_failures.py RUN_DIR [--against cot] [--cached-from coa:k=1] [--show 3]

RUN_DIR is an eval run folder (or a workflow run's ``steps/<id>`` folder) holding ``items.jsonl``. For every method
the script prints accuracy with its 95% Wilson interval, mean completion tokens and wall time per item, then the
failure classes of each coa method (first matching rule wins):

* no valid chain — every draft was rejected (by the parser/validator, or stopped looping at the step budget);
* tool failure — a step of the chosen chain failed or timed out;
* gold computed, wrong answer placeholder — a step of the final chain has the gold value, the answer names another;
* a sample had the gold answer — self-consistency drew a chain with the gold answer but the vote (or tie-break)
  chose another;
* critic revision lost it — the first reified answer was right, the revised one is not;
* wrong reasoning — a valid chain, reified cleanly, with wrong quantities or operations.

``--against cot`` adds the paired table (both right / only this / only cot / both wrong). ``--cached-from M`` adds an
estimate of wall time when a method's first chain was served from the response cache because method M (same
prompt) drew it first: the cached call's time is replaced by M's first reasoner call on the same item.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from collections import Counter
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any


def _num(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value).replace(",", "").strip())
    except (InvalidOperation, ValueError):
        return None


def same(value: Any, gold: list[str]) -> bool:
    v = _num(value)
    return v is not None and any((g := _num(x)) is not None and g == v for x in gold)


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return 0.0, 0.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def classify(record: dict[str, Any]) -> str:
    trace = record.get("trace", [])
    gold = record.get("gold", [])
    steps = [e for e in trace if e.get("kind") == "step_finished"]
    if not steps:
        rejected = [e for e in trace if e.get("kind") == "replan"]
        errors = " ".join(" ".join(e.get("errors", [])) for e in rejected[-1:])
        if "was stopped" in errors or "cut off" in errors:
            return "no valid chain: looping / cut off"
        return "no valid chain: parse or validation errors"
    vote = next((e for e in reversed(trace) if e.get("kind") == "vote"), None)
    chosen_sample = 0
    if vote is not None and vote.get("winner") is not None:
        answers = vote.get("answers", [])
        chosen_sample = next((i for i, a in enumerate(answers) if a == vote["winner"]), 0)
    final_steps = [e for e in steps if e.get("sample", 0) == chosen_sample]
    # Only the last reification of the chosen sample (revisions re-run sample 0).
    last_ids: dict[str, dict[str, Any]] = {}
    for e in final_steps:
        last_ids[e["step_id"]] = e
    if any(e.get("status") in ("failed", "timeout") for e in last_ids.values()):
        return "tool failure"
    if any(same(e.get("value"), gold) for e in last_ids.values()):
        return "gold computed, wrong answer placeholder"
    if vote is not None and any(same(a, gold) for a in vote.get("answers", []) if a is not None):
        return "a sample had the gold answer, the vote chose another"
    critiques = [e for e in trace if e.get("kind") == "critique"]
    if any(c.get("verdict") == "revise" for c in critiques):
        first_values = [e.get("value") for e in steps if e.get("sample", 0) == 0]
        if first_values and any(same(v, gold) for v in first_values[: len(last_ids)]):
            return "critic revision lost it"
    return "wrong reasoning (valid chain, wrong quantities or operations)"


def first_reasoner_seconds(record: dict[str, Any]) -> float:
    for e in record.get("trace", []):
        if e.get("kind") == "usage" and e.get("agent") == "reasoner":
            return float(e.get("seconds", 0.0))
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--against", default="cot", help="method for the paired table (default: cot)")
    parser.add_argument("--cached-from", default=None, help="method whose first chain others replayed from the cache")
    parser.add_argument("--show", type=int, default=0, help="print this many example items per failure class")
    parser.add_argument(
        "--pause",
        action="append",
        default=[],
        metavar="START:END",
        help="the run was stopped (SIGSTOP) between these Unix times: the item in flight gets the "
        "pause taken off its wall time (repeatable)",
    )
    args = parser.parse_args()
    from conclave.workflows.evaluation.compare import mcnemar_exact

    pauses = [tuple(float(t) for t in spec.split(":")) for spec in args.pause]
    path = args.run / "items.jsonl" if args.run.is_dir() else args.run
    latest: dict[str, dict[str, Any]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            latest[record["key"]] = record
    for record in latest.values():
        ended = float(record.get("finished_at") or 0.0)
        began = ended - float(record.get("latency") or 0.0)
        for start, end in pauses:
            if began < start and end < ended:
                record["latency"] = float(record["latency"]) - (end - start)
                print(f"(took the {end - start:.1f} s pause off {record['key']})")
    by_method: dict[str, list[dict[str, Any]]] = {}
    for record in latest.values():
        by_method.setdefault(record["method"], []).append(record)

    print(f"Run: {args.run}\n")
    print("| method | n | accuracy | 95% CI | completion tokens/item | wall s/item mean | median | LLM calls/item |")
    print("|---|---|---|---|---|---|---|---|")
    for method, recs in by_method.items():
        n = len(recs)
        k = sum(1 for r in recs if r.get("correct"))
        low, high = wilson(k, n)
        latencies = [float(r.get("latency") or 0.0) for r in recs]
        print(
            f"| {method} | {n} | {100 * k / n:.1f}% | {100 * low:.1f}–{100 * high:.1f}% | "
            f"{statistics.mean(r.get('completion_tokens', 0) for r in recs):.0f} | {statistics.mean(latencies):.1f} | "
            f"{statistics.median(latencies):.1f} | {statistics.mean(r.get('llm_calls', 0) for r in recs):.2f} |"
        )

    if args.cached_from and args.cached_from in by_method:
        source = {r["item_id"]: r for r in by_method[args.cached_from]}
        print(
            f"\nWall time with the first chain's original time restored (it was replayed from {args.cached_from}'s "
            "cache entry):\n"
        )
        print("| method | wall s/item mean | median |")
        print("|---|---|---|")
        for method, recs in by_method.items():
            if not method.startswith("coa") or method == args.cached_from:
                continue
            restored = []
            for r in recs:
                extra = 0.0
                if first_reasoner_seconds(r) < 0.5 and r["item_id"] in source:
                    extra = first_reasoner_seconds(source[r["item_id"]])
                restored.append(float(r.get("latency") or 0.0) + extra)
            print(f"| {method} | {statistics.mean(restored):.1f} | {statistics.median(restored):.1f} |")

    against = {r["item_id"]: bool(r.get("correct")) for r in by_method.get(args.against, [])}
    for method, recs in by_method.items():
        if not method.startswith("coa"):
            continue
        wrong = [r for r in recs if not r.get("correct")]
        classes = Counter(classify(r) for r in wrong)
        print(f"\n### {method}: {len(wrong)} wrong of {len(recs)}\n")
        print("| cause | items |")
        print("|---|---|")
        for cause, count in classes.most_common():
            print(f"| {cause} | {count} |")
        if args.show:
            for cause in classes:
                shown = [r for r in wrong if classify(r) == cause][: args.show]
                print(
                    f"\n{cause}: "
                    + ", ".join(f"{r['item_id']} (gold {r['gold'][0]}, got {r.get('value')})" for r in shown)
                )
        if against:
            pairs = Counter(
                (bool(r.get("correct")), against.get(r["item_id"])) for r in recs if r["item_id"] in against
            )
            p_value = mcnemar_exact(pairs[(True, False)], pairs[(False, True)])
            print(
                f"\nPaired with {args.against} on {sum(pairs.values())} items: both right {pairs[(True, True)]}, only "
                f"{method} {pairs[(True, False)]}, only {args.against} {pairs[(False, True)]}, both wrong "
                f"{pairs[(False, False)]}; McNemar exact p = {p_value:.3g}"
            )


if __name__ == "__main__":
    main()
