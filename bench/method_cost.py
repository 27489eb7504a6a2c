"""Method cost: coa vs react vs cot vs direct on the same model and the same GSM8K dev items.

Runs the evaluation harness (``workflows.evaluation.run_eval``, what ``conclave eval`` runs) with the response cache
off (``--no-cache`` semantics), concurrency 1, in a temporary CONCLAVE_HOME, after loading the model (or waking the
server) untimed. Reports per question: wall time (RunFinished.seconds), LLM calls, prompt and completion tokens, tool
calls, accuracy (the harness's numeric scorer), and the ratio react / coa for wall time and tokens (the
chain-of-abstraction paper reports CoA about 1.4x faster than tool-interleaving baselines).

    python bench/method_cost.py                                     # embedded model, 20 items, 4 methods
    python bench/method_cost.py --model embedded:bench/models/qwen2.5-coder-1.5b-instruct-q4.gguf
    python bench/method_cost.py --model openai/NAME --base-url http://127.0.0.1:8080/v1 \\
        --model-info '{"function_calling": true, "json_output": true, "structured_output": true}'
    python bench/method_cost.py --quick                             # 2 items
"""

from __future__ import annotations

import asyncio
import math
import statistics
from collections import defaultdict
from typing import Any

import common

METHODS = ("coa", "react", "cot", "direct")


async def one_run(spec: str, methods: list[str], limit: int, overrides: dict[str, Any]) -> dict[str, Any]:
    from conclave.workflows.evaluation import EvalConfig, run_eval

    from conclave.settings import load_settings

    settings = load_settings(**overrides)
    warm = await common.warm_up(spec, settings)
    config = EvalConfig(
        dataset=f"gsm8k:{common.GSM8K_DEV}", methods=methods, models=[spec], limit=limit, concurrency=1, cache=False
    )
    done = {"n": 0}

    def progress(p: Any) -> None:
        if p.last is not None and p.done > done["n"]:
            done["n"] = p.done
            r = p.last
            print(
                f"  {p.done}/{p.total} {r.method:<6} {r.item_id:<16} {r.latency or 0:7.1f} s "
                f"correct={r.correct} calls={r.llm_calls} tokens={r.prompt_tokens}+{r.completion_tokens}",
                flush=True,
            )

    result = await run_eval(config, settings, on_progress=progress)
    keep = (
        "item_id",
        "method",
        "latency",
        "llm_calls",
        "prompt_tokens",
        "completion_tokens",
        "tool_calls",
        "replans",
        "critic_rounds",
        "correct",
        "ok",
        "error",
        "value",
        "backend_calls",
        "cached",
    )
    return {
        "warm_up_s": warm,
        "records": [{k: getattr(r, k) for k in keep} for r in result.records],
        "backend_calls": result.backend_calls,
        "seconds": result.seconds,
        "settings": settings.redacted(),
    }


def mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else math.nan


def main() -> None:
    p = common.parser(__doc__.split("\n\n")[0], repeats=1)
    p.add_argument("--model", default="embedded", help="model spec for every role (default: embedded)")
    p.add_argument(
        "--method",
        action="append",
        help="methods (repeatable; default coa react cot direct); coa variants such as coa:k=3 work too",
    )
    p.add_argument("--limit", type=int, default=None, help="GSM8K dev items (default 20; 2 with --quick)")
    p.add_argument("--base-url", help="OPENAI_BASE_URL for an openai/NAME model (a local OpenAI-compatible server)")
    p.add_argument("--model-info", help="JSON ModelInfo for an openai/NAME model the client does not know")
    p.add_argument("--max-tokens", type=int, help="override settings.max_tokens (default: the settings' 768)")
    args = p.parse_args()
    common.require(common.GSM8K_DEV, "GSM8K dev")
    methods = args.method or list(METHODS)
    limit = args.limit or (2 if args.quick else 20)
    repeats = args.repeats or 1
    overrides = common.openai_settings_overrides(args.model, args.base_url, args.model_info)
    if args.max_tokens:
        overrides["max_tokens"] = args.max_tokens
    info = common.machine()

    async def all_runs() -> list[dict[str, Any]]:
        # One event loop for every run: HTTP clients' connection pools belong to the loop they were made in.
        out = []
        for r in range(repeats):
            order = methods[r % len(methods) :] + methods[: r % len(methods)]  # rotate, so drift hits every method
            print(f"repeat {r + 1}/{repeats}: {', '.join(order)} on {limit} items with {args.model}", flush=True)
            with common.temp_home("method-cost", keep=args.keep_home):
                out.append(await one_run(args.model, order, limit, overrides))
        return out

    runs = asyncio.run(all_runs())

    per: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    accuracy: dict[str, list[float]] = defaultdict(list)
    for run in runs:
        by_method: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for rec in run["records"]:
            by_method[rec.method].append(rec)
        for method, recs in by_method.items():
            scored = [x for x in recs if x["correct"] is not None]
            accuracy[method].append(sum(bool(x["correct"]) for x in scored) / len(scored) if scored else math.nan)
            for x in recs:
                per[method]["latency"].append(x["latency"] or math.nan)
                for key in ("llm_calls", "prompt_tokens", "completion_tokens", "tool_calls", "replans"):
                    per[method][key].append(x[key] or 0)
                per[method]["failed"].append(0 if x["ok"] else 1)
    rows = []
    for method in methods:
        m = per[method]
        lat = [v for v in m["latency"] if not math.isnan(v)]
        acc = accuracy[method]
        acc_text = f"{statistics.median(acc):.0%}" + (f" ({min(acc):.0%}–{max(acc):.0%})" if len(acc) > 1 else "")
        rows.append(
            [
                method,
                common.med_range(lat, 2),
                common.num(mean(lat), 2),
                common.num(mean(m["llm_calls"]), 2),
                common.num(mean(m["prompt_tokens"]), 0),
                common.num(mean(m["completion_tokens"]), 0),
                common.num(mean(m["tool_calls"]), 2),
                acc_text,
                int(sum(m["failed"])),
            ]
        )
    table = common.md_table(
        [
            "method",
            "wall s / question",
            "mean s",
            "LLM calls",
            "prompt tokens",
            "completion tokens",
            "tool calls",
            "accuracy",
            "failed",
        ],
        rows,
    )
    ratios = {}
    if "react" in per and "coa" in per:
        r, c = per["react"], per["coa"]
        tok = lambda m: [a + b for a, b in zip(m["prompt_tokens"], m["completion_tokens"], strict=False)]  # noqa: E731
        ratios = {
            "wall_mean": mean(r.latency) / mean(c["latency"]),
            "wall_median": statistics.median(r.latency) / statistics.median(c["latency"]),
            "tokens_total": mean(tok(r)) / mean(tok(c)),
            "completion_tokens": mean(r.completion_tokens) / max(1e-9, mean(c["completion_tokens"])),
        }
        table += (
            "\n\nreact / coa: wall time "
            f"{ratios['wall_mean']:.2f}× (mean; {ratios['wall_median']:.2f}× "
            f"median), tokens {ratios['tokens_total']:.2f}× (prompt + completion), completion tokens "
            f"{ratios['completion_tokens']:.2f}× — above 1 means coa is cheaper."
        )
    n_items = len({x["item_id"] for x in runs[0]["records"]})
    s = runs[0]["settings"]
    notes = [
        f"Model `{args.model}` for every role; the first {n_items} GSM8K dev items (../shared/data/gsm8k/dev.jsonl); "
        f"{repeats} run(s) of every method, method order rotated between runs.",
        "wall s / question: median (min–max) over items × runs of RunFinished.seconds; the other columns are means "
        "per question; accuracy = the harness's numeric scorer (median over runs).",
        f"Harness `run_eval`, concurrency 1, response cache off; temperature {s['temperature']}, max_tokens "
        f"{s['max_tokens']}, context {s['context_length']}; coa settings {s['coa']['samples']} sample(s), "
        f"plan={s['coa']['plan']}, critic={'on' if s['coa']['use_critic'] else 'off'}, "
        f"few_shot={s['coa']['few_shot']}.",
        "Model load / warm-up before timing: " + ", ".join(f"{run['warm_up_s']:.1f} s" for run in runs) + ".",
        "tool calls: react's ToolCalled events and coa's executed chain steps (calculator); cot and direct have none.",
    ]
    data = {
        "model": args.model,
        "methods": methods,
        "limit": limit,
        "repeats": repeats,
        "ratios_react_over_coa": ratios,
        "accuracy": accuracy,
        "runs": runs,
    }
    common.emit("method_cost", "Method cost", table, notes=notes, data=data, info=info, quick=args.quick, out=args.out)


if __name__ == "__main__":
    main()
