"""A newcomer's first answer (issue 15): the README's question over the bundled demo collection, with the default
model, after the model is loaded — model calls, tokens and seconds per stage, and whether the answer is right.

    python bench/first_answer.py                                   # the default method against the old defaults
    python bench/first_answer.py --method coa --method rag        # any methods / coa variants

Each method runs the question ``--repeats`` times in a fresh ``CONCLAVE_HOME``. Before the timed runs, one untimed
warm-up loads the model and the embedder and ingests the demo collection (what the first `ask` also does, once).
"Right" means the answer mentions both momentum and RMSprop, as the demo note does. The default ``--method`` list
is today's default ``coa`` and, for comparison, the defaults before issue 15 (the planner and the critic always asked,
JSON chains): ``coa:form=auto,plan=always,critic=true``.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import emit, machine, md_table, parser, temp_home  # noqa: E402

QUESTION = "What does the Adam optimiser combine?"
OLD_DEFAULTS = "coa:form=auto,plan=always,critic=true"
STAGES = ("planner", "reasoner", "critic", "writer")


def right(text: str) -> bool:
    lowered = text.lower()
    return "momentum" in lowered and "rmsprop" in lowered


async def run_once(method: str, model: str | None) -> dict[str, Any]:
    from conclave.workflows.runner import build_context, run_question

    from conclave.settings import load_settings

    overrides = {"model": model} if model else {}
    started = time.perf_counter()
    ctx = await build_context(QUESTION, load_settings(**overrides), method=method)
    events = [e async for e in run_question(ctx)]
    wall = time.perf_counter() - started
    stages: dict[str, dict[str, float]] = {}
    for event in events:
        if event.kind == "usage":
            slot = stages.setdefault(event.agent, {"calls": 0, "prompt": 0, "completion": 0, "seconds": 0.0})
            slot["calls"] += event.calls
            slot["prompt"] += event.prompt_tokens
            slot["completion"] += event.completion_tokens
            slot["seconds"] += event.seconds
    answer = next((e for e in events if e.kind == "answer"), None)
    finished = events[-1]
    text = answer.text if answer is not None else ""
    return {
        "method": method,
        "wall_s": wall,
        "stages": stages,
        "answer": text,
        "right": right(text),
        "ok": bool(getattr(finished, "ok", False)),
        "model": ctx.models["reasoner"],
    }


def main() -> None:
    p = parser(__doc__.split("\n\n")[0], repeats=2)
    p.add_argument("--method", action="append", help=f"method or coa variant (default: coa and {OLD_DEFAULTS})")
    p.add_argument("--model", default=None, help="model spec (default: the configured default, `embedded`)")
    args = p.parse_args()
    methods = args.method or [OLD_DEFAULTS, "coa"]
    repeats = args.repeats or (1 if args.quick else 2)
    runs: list[dict[str, Any]] = []
    with temp_home("first-answer", keep=args.keep_home):
        warm = asyncio.run(run_once("rag", args.model))  # loads the model and the embedder, ingests the demo notes
        print(f"warm-up ({warm['model']}): {warm['wall_s']:.1f} s", file=sys.stderr)
        for method in methods:
            for _ in range(repeats):
                run = asyncio.run(run_once(method, args.model))
                print(f"{method}: {run['wall_s']:.1f} s, right={run['right']}", file=sys.stderr)
                runs.append(run)
    rows = []
    for method in methods:
        mine = [r for r in runs if r["method"] == method]
        cells: list[Any] = [f"`{method}`"]
        for stage in STAGES:
            slots = [r["stages"].get(stage) for r in mine]
            if not any(slots):
                cells.append("—")
                continue
            calls = statistics.mean(s["calls"] if s else 0 for s in slots)
            tokens = statistics.mean((s["prompt"] + s["completion"]) if s else 0 for s in slots)
            seconds = statistics.mean(s["seconds"] if s else 0.0 for s in slots)
            cells.append(f"{calls:g} call · {tokens:.0f} tok · {seconds:.1f} s")
        calls = statistics.mean(sum(s["calls"] for s in r["stages"].values()) for r in mine)
        completion = statistics.mean(sum(s["completion"] for s in r["stages"].values()) for r in mine)
        model_s = statistics.mean(sum(s["seconds"] for s in r["stages"].values()) for r in mine)
        wall = statistics.mean(r["wall_s"] for r in mine)
        cells += [
            f"{calls:g}",
            f"{completion:.0f}",
            f"{wall - model_s:.1f}",
            f"{wall:.1f}",
            f"{sum(r['right'] for r in mine)}/{len(mine)}",
        ]
        rows.append(cells)
    headers = ["method", *STAGES, "model calls", "completion tokens", "other s (retrieval, tools)", "wall s", "right"]
    table = md_table(headers, rows)
    notes = [
        f"question: {QUESTION!r}; model: {runs[0]['model'] if runs else '?'}; mean of {repeats} runs each; "
        "stage cells are calls · prompt+completion tokens · model seconds",
        *(
            f"answer of `{r['method']}` (run 1): {' '.join(r['answer'].split())[:300]!r}"
            for r in {r["method"]: r for r in reversed(runs)}.values()
        ),
    ]
    emit(
        "first_answer",
        "First answer: the README's question after the model is loaded",
        table,
        notes=notes,
        data={"runs": runs, "methods": methods, "repeats": repeats},
        info=machine(),
        quick=args.quick,
    )


if __name__ == "__main__":
    main()
