"""Quick GSM8K check: accuracy and completion tokens of methods on the first N dev items (a rough script; the
evaluation harness, `conclave eval`, is the full tool).

    python bench/gsm8k_quick.py --model embedded:bench/models/qwen2.5-coder-1.5b-instruct-q4.gguf \
        --method cot --method coa --limit 20 --out bench/results/gsm8k-quick.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
from decimal import Decimal, InvalidOperation
from pathlib import Path

from conclave.workflows.runner import build_context, run_question, total_usage

from conclave.settings import load_settings

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k" / "dev.jsonl"
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def number(text: str | None) -> Decimal | None:
    if not text:
        return None
    found = _NUMBER.findall(text)
    if not found:
        return None
    try:
        return Decimal(found[-1].replace(",", ""))
    except InvalidOperation:
        return None


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--method", action="append", required=True)
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--samples", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    items = [json.loads(line) for line in DATA.read_text().splitlines()[: args.limit]]
    settings = load_settings(model=args.model, collection="none", coa={"samples": args.samples})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if args.out.exists():
        done = {(r["method"], r["id"]) for r in map(json.loads, args.out.read_text().splitlines())}
    for method in args.method:
        for item in items:
            if (method, item["id"]) in done:
                continue
            gold = Decimal(item["answer"].rpartition("####")[2].strip().replace(",", ""))
            ctx = await build_context(item["question"], settings, method=method, knowledge=False)
            started = time.perf_counter()
            events = [e async for e in run_question(ctx)]
            answer = next((e for e in events if e.kind == "answer"), None)
            value = number(answer.value if answer and answer.value else (answer.text if answer else None))
            usage = total_usage(events[-1].usage)
            row = {
                "method": method,
                "id": item["id"],
                "gold": str(gold),
                "value": str(value),
                "correct": value is not None and value == gold,
                "seconds": round(time.perf_counter() - started, 1),
                **usage,
                "replans": sum(e.kind == "replan" for e in events),
                "trace": [e.to_dict() for e in events],
            }
            with args.out.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            print(method, item["id"], row["correct"], value, gold, row["completion_tokens"], row["seconds"], flush=True)
    rows = [json.loads(line) for line in args.out.read_text().splitlines()]
    for method in args.method:
        mine = [r for r in rows if r["method"] == method]
        acc = sum(r["correct"] for r in mine) / max(1, len(mine))
        tokens = sum(r["completion_tokens"] for r in mine) / max(1, len(mine))
        secs = sum(r["seconds"] for r in mine) / max(1, len(mine))
        print(
            f"{method}: accuracy {acc:.0%} ({sum(r['correct'] for r in mine)}/{len(mine)}), "
            f"mean completion tokens {tokens:.0f}, mean seconds {secs:.1f}"
        )


if __name__ == "__main__":
    asyncio.run(main())
