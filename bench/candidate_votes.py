"""How to choose among candidate chains: replay vote rules over the samples an evaluation drew, without the model.

    python bench/candidate_votes.py RUN_DIR --method 'coa:...,k=3,agree=0,forms=...' [--against OTHER_RUN:cot]

RUN_DIR holds ``items.jsonl`` of an evaluation that drew *every* sample of a self-consistency method (``agree=0``),
for example ``coa:form=program,critic=false,k=3,agree=0,forms=program+program-y+program``. Each item's trace gives
the samples in draw order: their form, their answer (the reifier's vote lists it) and the reasoner's completion
tokens and seconds spent on them (re-plans included). Because the model is deterministic per sample (greedy samples
at temperature 0, warm samples with a fixed seed), the first ``j`` samples of a k-sample run are exactly what a
run with fewer samples would have drawn, so every rule below is what that configuration would have scored:

* ``sample i`` — one chain, the i-th candidate alone (k = 1 of its form);
* ``first j, vote`` — draw j chains, weighted vote (sample 0 weighs ``w``), ties to the earliest sample;
* ``early stop`` — draw two, stop if they agree, else draw the next, up to k; then the weighted vote.

``--against RUN:METHOD`` pairs every rule with another run's method on the same items (McNemar exact test).
Critic-less methods only: a critic's revision would make later samples depend on its verdicts.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conclave.workflows.evaluation.compare import mcnemar_exact  # noqa: E402
from conclave.workflows.evaluation.scorers import numbers_equal, parse_number  # noqa: E402

from bench.coa_failures import wilson  # noqa: E402


@dataclass
class Sample:
    form: str
    answer: str | None
    tokens: int = 0
    seconds: float = 0.0
    calls: int = 0


@dataclass
class Item:
    item_id: str
    gold: list[str]
    samples: list[Sample] = field(default_factory=list)

    def right(self, answer: str | None) -> bool:
        got = parse_number(answer) if answer is not None else None
        if got is None:
            return False
        wants = [parse_number(g) for g in self.gold]
        return any(w is not None and numbers_equal(got, w) for w in wants)


def load_items(run_dir: Path, method: str) -> dict[str, Item]:
    """Each item's samples in draw order, with the reasoner's tokens and seconds attributed to them."""
    items: dict[str, Item] = {}
    for line in (run_dir / "items.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record.get("method") != method:
            continue
        item = Item(record["item_id"], [str(g) for g in record.get("gold", [])])
        pending_tokens, pending_seconds, pending_calls = 0, 0.0, 0
        by_sample: dict[int, Sample] = {}
        answers: list[str | None] = []
        for event in record.get("trace", []):
            kind = event.get("kind")
            if kind == "usage" and event.get("agent") == "reasoner":
                pending_tokens += int(event.get("completion_tokens") or 0)
                pending_seconds += float(event.get("seconds") or 0.0)
                pending_calls += int(event.get("calls") or 1)
            elif kind == "chain":  # the usage events before a drafted chain paid for it
                sample = by_sample.setdefault(int(event.get("sample") or 0), Sample(event.get("form", "?"), None))
                sample.tokens += pending_tokens
                sample.seconds += pending_seconds
                sample.calls += pending_calls
                pending_tokens, pending_seconds, pending_calls = 0, 0.0, 0
            elif kind == "vote":
                answers = list(event.get("answers") or [])
        if not by_sample:
            continue
        if not answers and len(by_sample) == 1:
            answers = [record.get("value")]
        for index in sorted(by_sample):
            sample = by_sample[index]
            sample.answer = answers[index] if index < len(answers) else None
            item.samples.append(sample)
        items[item.item_id] = item
    return items


def vote(samples: list[Sample], weight: float) -> str | None:
    """Weighted vote; ties go to the earliest sample."""
    tally: Counter[str] = Counter()
    for index, sample in enumerate(samples):
        if sample.answer is not None:
            tally[_key(sample.answer)] += weight if index == 0 else 1.0
    if not tally:
        return None
    top = max(tally.values())
    return next(s.answer for s in samples if s.answer is not None and tally[_key(s.answer)] == top)


def _key(answer: str) -> str:
    number = parse_number(answer)
    return format(number.normalize(), "f") if isinstance(number, Decimal) else answer.strip().lower()


def early_stop(samples: list[Sample], weight: float) -> tuple[str | None, list[Sample]]:
    """Draw two; stop when they agree, else draw on; vote over what was drawn."""
    drawn = samples[:2]
    for sample in samples[2:]:
        answers = [_key(s.answer) for s in drawn if s.answer is not None]
        counts = Counter(answers).most_common(2)
        if counts and counts[0][1] >= 2 and (len(counts) == 1 or counts[1][1] < counts[0][1]):
            break
        drawn = [*drawn, sample]
    return vote(drawn, weight), drawn


def rules(k: int, weights: list[float]) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for i in range(k):
        out.append((f"sample {i} alone", lambda s, i=i: (s[i].answer if i < len(s) else None, s[i : i + 1])))
    for j in range(2, k + 1):
        for w in weights:
            out.append((f"first {j}, vote (w={w:g})", lambda s, j=j, w=w: (vote(s[:j], w), s[:j])))
    for w in weights:
        out.append((f"early stop at 2 agreeing, up to {k} (w={w:g})", lambda s, w=w: early_stop(s, w)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--method", required=True)
    parser.add_argument("--against", help="RUN_DIR:METHOD to pair with (McNemar exact test)")
    parser.add_argument("--weights", default="1,2", help="first-sample weights to try (comma-separated)")
    parser.add_argument(
        "--order",
        help="draw order to replay, e.g. 1,0,2: the samples are independent draws (each "
        "greedy form's first sample does not depend on the others), so any order of "
        "them is a run that could have happened; warm samples should stay last",
    )
    parser.add_argument(
        "--seconds-from",
        action="append",
        default=[],
        help="RUN_DIR:METHOD whose reasoner seconds replace sample 0's, when sample 0 was served from "
        "the response cache because that run drew it (repeatable: the first run that spent time "
        "on the item wins)",
    )
    args = parser.parse_args()
    items = load_items(args.run_dir, args.method)
    replaced: set[str] = set()
    for source in args.seconds_from:
        run, _, method = source.partition(":")  # run folders have no colon; methods may
        for item_id, earlier in load_items(Path(run), method).items():
            spent = sum(s.seconds for s in earlier.samples)
            if item_id in items and item_id not in replaced and spent > 0.5 and items[item_id].samples:
                items[item_id].samples[0].seconds = spent
                replaced.add(item_id)
    if args.order:
        order = [int(i) for i in args.order.split(",")]
        for item in items.values():
            item.samples = [item.samples[i] for i in order if i < len(item.samples)]
    if not items:
        sys.exit(f"no items of method {args.method!r} in {args.run_dir / 'items.jsonl'}")
    k = max(len(i.samples) for i in items.values())
    forms = [next((i.samples[j].form for i in items.values() if len(i.samples) > j), "?") for j in range(k)]
    other: dict[str, bool] = {}
    if args.against:
        run, _, method = args.against.partition(":")
        for line in (Path(run) / "items.jsonl").read_text().splitlines():
            record = json.loads(line)
            if record.get("method") == method and record["item_id"] in items:
                other[record["item_id"]] = bool(record.get("correct"))
    n = len(items)
    print(f"{n} items; samples in draw order: {', '.join(f'{j}: {f}' for j, f in enumerate(forms))}")
    header = "| rule | accuracy | 95% CI | completion tokens / item | reasoner calls / item | reasoner s / item |"
    if other:
        header += f" paired against `{args.against.partition(':')[2]}` ({sum(other.values())}/{len(other)}) |"
    print(header)
    print("|" + "---|" * header.count(" |"))
    weights = [float(w) for w in args.weights.split(",")]
    failures: dict[str, Counter[str]] = {}
    for name, rule in rules(k, weights):
        right = tokens = calls = 0
        seconds = 0.0
        only_this = only_other = 0
        for item in items.values():
            answer, drawn = rule(item.samples)
            ok = item.right(answer)
            right += ok
            if not ok:
                failures.setdefault(name, Counter())[
                    "no drawn chain gave a value"
                    if all(s.answer is None for s in drawn)
                    else "a drawn chain had the gold answer, the vote chose another"
                    if any(item.right(s.answer) for s in drawn)
                    else "every drawn value is wrong"
                ] += 1
            tokens += sum(s.tokens for s in drawn)
            seconds += sum(s.seconds for s in drawn)
            calls += sum(s.calls for s in drawn)
            if item.item_id in other:
                only_this += ok and not other[item.item_id]
                only_other += other[item.item_id] and not ok
        low, high = wilson(right, n)
        row = (
            f"| {name} | {100 * right / n:.1f}% ({right}/{n}) | {100 * low:.1f}–{100 * high:.1f}% | "
            f"{tokens / n:.0f} | {calls / n:.2f} | {seconds / n:.1f} |"
        )
        if other:
            row += f" only this {only_this}, only other {only_other}, p = {mcnemar_exact(only_this, only_other):.2f} |"
        print(row)
    print()
    for name, counts in failures.items():
        if name.startswith("early stop"):
            print(f"failures of {name}: " + "; ".join(f"{why}: {n}" for why, n in counts.most_common()))


if __name__ == "__main__":
    main()
