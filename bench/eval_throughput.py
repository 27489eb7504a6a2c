"""Evaluation throughput: items per minute of the ``conclave eval`` harness at concurrency 1, 2, 4, 8 against
llama-cpp-python's OpenAI-compatible server on loopback, and the speed-up of a repeated run served from the cache.

Starts ``python -m llama_cpp.server`` (the bundled SmolLM2-135M GGUF unless ``--gguf``) on a free 127.0.0.1 port
with ``--interrupt_requests False`` (its default, True, ends a streaming response early as soon as another request
waits, which would make concurrent runs look fast by truncating answers), then runs ``workflows.evaluation.run_eval``
on the first GSM8K dev items with the model ``openai/bench`` at each concurrency (response cache off), and finally
the same run twice with the cache on in a fresh CONCLAVE_HOME: cold (filling it), then warm (served from it).
llama-cpp-python's server runs one request at a time (one model behind a lock): concurrency can only overlap what is
not generation (HTTP, prompt building, tools, orchestration).

    python bench/eval_throughput.py                          # coa, 16 items, concurrency 1 2 4 8, 2 repeats
    python bench/eval_throughput.py --gguf bench/models/qwen2.5-coder-1.5b-instruct-q4.gguf --limit 8
    python bench/eval_throughput.py --quick                  # cot, 2 items, concurrency 1 2, max_tokens 64
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

import common

ALIAS = "bench"
MODEL_INFO = {"function_calling": False, "json_output": True, "structured_output": True}


async def one_eval(settings: Any, method: str, limit: int, concurrency: int, cache: bool) -> dict[str, Any]:
    from conclave.workflows.evaluation import EvalConfig, run_eval

    config = EvalConfig(
        dataset=f"gsm8k:{common.GSM8K_DEV}",
        methods=[method],
        models=[f"openai/{ALIAS}"],
        limit=limit,
        concurrency=concurrency,
        cache=cache,
    )
    result = await run_eval(config, settings)
    recs = result.records
    if recs and all(not r.ok for r in recs):
        # A throughput of failures measures nothing: stop with what the harness said.
        raise SystemExit(f"every item failed at concurrency {concurrency}, e.g.: {recs[0].error}")
    return {
        "concurrency": concurrency,
        "cache": cache,
        "seconds": result.seconds,
        "units": len(recs),
        "items_per_min": 60 * len(recs) / result.seconds,
        "backend_calls": sum(result.backend_calls.values()),
        "latency": [r.latency for r in recs if r.latency is not None],
        "correct": sum(bool(r.correct) for r in recs),
        "failed": sum(not r.ok for r in recs),
        "completion_tokens": sum(r.completion_tokens or 0 for r in recs),
    }


def settings_for(base_url: str, max_tokens: int | None, model_info: dict[str, Any]) -> Any:
    from conclave.settings import load_settings

    extra = {"max_tokens": max_tokens} if max_tokens else {}
    return load_settings(openai_base_url=base_url, openai_model_info={ALIAS: model_info}, **extra)


async def all_runs(
    args: Any,
    base_url: str,
    method: str,
    limit: int,
    levels: list[int],
    repeats: int,
    max_tokens: int | None,
    model_info: dict[str, Any],
) -> tuple[float, list[dict[str, Any]], list[dict[str, Any]]]:
    runs: list[dict[str, Any]] = []
    cache_runs: list[dict[str, Any]] = []
    warm = await common.warm_up(f"openai/{ALIAS}", settings_for(base_url, max_tokens, model_info))
    for r in range(repeats):
        order = levels if r % 2 == 0 else list(reversed(levels))  # alternate, so drift hits every level
        for c in order:
            with common.temp_home(f"eval-c{c}"):
                run = await one_eval(settings_for(base_url, max_tokens, model_info), method, limit, c, cache=False)
            run["repeat"] = r
            runs.append(run)
            print(
                f"  repeat {r + 1} concurrency {c}: {run['items_per_min']:.2f} items/min, "
                f"{run['correct']}/{run['units']} correct",
                flush=True,
            )
    if not args.no_cache_run:
        for r in range(repeats):
            with common.temp_home("eval-cache"):
                s = settings_for(base_url, max_tokens, model_info)
                cold = await one_eval(s, method, limit, 1, cache=True)
                hot = await one_eval(s, method, limit, 1, cache=True)
            cache_runs.append({"cold": cold, "warm": hot})
            print(
                f"  cache repeat {r + 1}: cold {cold['seconds']:.1f} s, warm {hot['seconds']:.2f} s "
                f"({hot['backend_calls']} backend calls)",
                flush=True,
            )
    return warm, runs, cache_runs


def main() -> None:
    p = common.parser(__doc__.split("\n\n")[0], repeats=2)
    p.add_argument("--gguf", type=Path, help="GGUF model to serve (default: the bundled SmolLM2-135M)")
    p.add_argument("--method", default=None, help="method to evaluate (default coa; cot with --quick)")
    p.add_argument("--limit", type=int, help="GSM8K dev items per run (default 16; 2 with --quick)")
    p.add_argument("--concurrency", type=int, action="append", help="levels (repeatable; default 1 2 4 8)")
    p.add_argument("--n-threads", type=int, default=os.cpu_count() or 1, help="server --n_threads (default: cores)")
    p.add_argument("--n-ctx", type=int, default=4096, help="server --n_ctx (default 4096, the settings' context)")
    p.add_argument("--max-tokens", type=int, help="override settings.max_tokens (default 768; 64 with --quick)")
    p.add_argument("--model-info", help=f"JSON ModelInfo for the served model (default {json.dumps(MODEL_INFO)})")
    p.add_argument("--server-arg", action="append", default=[], help="extra llama_cpp.server argument (repeatable)")
    p.add_argument("--no-cache-run", action="store_true", help="skip the cold/warm cache runs")
    args = p.parse_args()
    common.require(common.GSM8K_DEV, "GSM8K dev")
    from conclave.models.embedded import bundled_model_path

    gguf = (args.gguf or bundled_model_path()).resolve()
    method = args.method or ("cot" if args.quick else "coa")
    limit = args.limit or (2 if args.quick else 16)
    levels = args.concurrency or ([1, 2] if args.quick else [1, 2, 4, 8])
    repeats = args.repeats or (1 if args.quick else 2)
    max_tokens = args.max_tokens or (64 if args.quick else None)
    model_info = json.loads(args.model_info) if args.model_info else MODEL_INFO
    info = common.machine()
    port = common.free_port()
    cmd = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(gguf),
        "--model_alias",
        ALIAS,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        str(args.n_ctx),
        "--n_threads",
        str(args.n_threads),
        "--n_threads_batch",
        str(args.n_threads),
        "--interrupt_requests",
        "False",
        "--verbose",
        "False",
        *args.server_arg,
    ]
    base_url = f"http://127.0.0.1:{port}/v1"
    with common.temp_home("eval-throughput", keep=args.keep_home) as home:
        with common.Server(cmd, f"{base_url}/models", home / "llama-server.log") as server:
            print(f"llama_cpp.server ready on {base_url} (pid {server.proc.pid})", flush=True)
            # One event loop for every run: the OpenAI clients' connection pools belong to the loop they were made in.
            warm, runs, cache_runs = asyncio.run(
                all_runs(args, base_url, method, limit, levels, repeats, max_tokens, model_info)
            )

    rows = []
    base_rate = statistics.median([x["items_per_min"] for x in runs if x["concurrency"] == levels[0]])
    for c in levels:
        mine = [x for x in runs if x["concurrency"] == c]
        rates = [x["items_per_min"] for x in mine]
        lat = [v for x in mine for v in x["latency"]]
        rows.append(
            [
                c,
                common.med_range(rates, 2),
                common.ratio(statistics.median(rates), base_rate),
                common.med_range(lat, 1),
                f"{sum(x['correct'] for x in mine)}/{sum(x['units'] for x in mine)}",
                sum(x["failed"] for x in mine),
            ]
        )
    table = common.md_table(
        ["concurrency", "items / min", f"vs {levels[0]}", "s per item (latency)", "correct", "failed"], rows
    )
    if cache_runs:
        cold = [x["cold"]["seconds"] for x in cache_runs]
        hot = [x["warm"]["seconds"] for x in cache_runs]
        speed = [a / b for a, b in zip(cold, hot, strict=True)]
        calls = [x["warm"]["backend_calls"] for x in cache_runs]
        table += "\n\n" + common.md_table(
            ["repeated run (concurrency 1)", "run s", "items / min", "backend calls"],
            [
                [
                    "cold cache (filling it)",
                    common.med_range(cold, 1),
                    common.med_range([x["cold"]["items_per_min"] for x in cache_runs], 2),
                    common.med_range([x["cold"]["backend_calls"] for x in cache_runs], 0),
                ],
                [
                    "warm cache (served from it)",
                    common.med_range(hot, 2),
                    common.med_range([x["warm"]["items_per_min"] for x in cache_runs], 0),
                    common.med_range(calls, 0),
                ],
                ["speed-up", common.med_range(speed, 0) + "×", "", ""],
            ],
        )
    notes = [
        f"`{method}` on the first {limit} GSM8K dev items, model `openai/{ALIAS}` = {gguf.name} served by "
        f"`python -m llama_cpp.server --n_ctx {args.n_ctx} --n_threads {args.n_threads} --interrupt_requests False` "
        f"on loopback; the harness (`run_eval`) in a fresh CONCLAVE_HOME per run, response cache off; max_tokens "
        f"{max_tokens or 768}; server warm-up {warm:.1f} s untimed.",
        f"items / min = units / the harness's run seconds; median (min–max) over {repeats} repeat(s), the order of "
        "the levels alternating between repeats; latency = RunFinished.seconds of every item (it includes waiting "
        "for the server, which serves one request at a time).",
        "Cache: the same run twice in one CONCLAVE_HOME with the cache on; backend calls of the warm run 0 = served "
        "wholly from the cache.",
    ]
    data = {
        "gguf": str(gguf),
        "method": method,
        "limit": limit,
        "levels": levels,
        "repeats": repeats,
        "n_threads": args.n_threads,
        "n_ctx": args.n_ctx,
        "max_tokens": max_tokens,
        "server_cmd": cmd[1:],
        "runs": runs,
        "cache_runs": cache_runs,
        "warm_up_s": warm,
    }
    common.emit(
        "eval_throughput",
        "Evaluation throughput",
        table,
        notes=notes,
        data=data,
        info=info,
        quick=args.quick,
        out=args.out,
    )


if __name__ == "__main__":
    main()
