"""Evaluation throughput: items per minute of the ``conclave eval`` harness at concurrency 1, 2, 4, 8 against
an OpenAI-compatible server on loopback or the embedded backend in-process, and the speed-up of a repeated run
served from the cache; and whether the answers stay the same as at concurrency 1.

Starts llama.cpp's OpenAI-compatible server (the bundled SmolLM2-135M GGUF unless ``--gguf``) on a free 127.0.0.1
port: by default xllamacpp's (``python -m conclave.models.xllama``, as many slots as the highest concurrency,
continuous batching); with ``--engine llama-cpp-python`` (the ``llama-cpp`` extra) ``python -m llama_cpp.server``
with ``--interrupt_requests False`` (its default, True, ends a streaming response early as soon as another request
waits, which would make concurrent runs look fast by truncating answers). Then it runs ``workflows.evaluation.run_eval``
on the first GSM8K dev items with the model ``openai/bench`` at each concurrency (response cache off), and finally
the same run twice with the cache on in a fresh CONCLAVE_HOME: cold (filling it), then warm (served from it).
llama-cpp-python's server runs one request at a time (one model behind a lock): concurrency can only overlap what is
not generation (HTTP, prompt building, tools, orchestration). ``--backend embedded`` skips the server: the model ``embedded:<GGUF>`` runs in the bench's process on
the chosen engine (``embedded_engine``; ``embedded_parallel`` = the highest concurrency).

At temperature 0 every level should give each item the same answer: the runs' values are compared item by item
with the first level's (same repeat), and the items that differ are counted and listed.

    python bench/eval_throughput.py                          # coa, 16 items, concurrency 1 2 4 8, 2 repeats
    python bench/eval_throughput.py --gguf bench/models/qwen2.5-coder-1.5b-instruct-q4.gguf --limit 8
    python bench/eval_throughput.py --backend embedded --engine xllamacpp --method cot   # in-process, parallel slots
    python bench/eval_throughput.py --engine llama-cpp-python   # llama_cpp.server (the llama-cpp extra)
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


async def one_eval(
    settings: Any, method: str, limit: int, concurrency: int, cache: bool, spec: str = f"openai/{ALIAS}"
) -> dict[str, Any]:
    from conclave.workflows.evaluation import EvalConfig, run_eval

    config = EvalConfig(
        dataset=f"gsm8k:{common.GSM8K_DEV}",
        methods=[method],
        models=[spec],
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
        "values": {r.item_id: r.value for r in recs},
        "answers": {r.item_id: r.answer for r in recs},
    }


class Target:
    """What the runs evaluate: ``openai/bench`` at a server's URL, or ``embedded:<GGUF>`` in this process."""

    def __init__(self, args: Any, gguf: Path, levels: list[int], max_tokens: int | None, model_info: dict[str, Any]):
        self.embedded = args.backend == "embedded"
        self.spec = f"embedded:{gguf}" if self.embedded else f"openai/{ALIAS}"
        self.base_url = ""
        self.args, self.levels, self.max_tokens, self.model_info = args, levels, max_tokens, model_info

    def settings(self) -> Any:
        from conclave.settings import load_settings

        extra: dict[str, Any] = {"max_tokens": self.max_tokens} if self.max_tokens else {}
        if self.embedded:
            return load_settings(
                embedded_engine=self.args.engine,
                embedded_parallel=max(self.levels),
                embedded_threads=self.args.n_threads,
                context_length=self.args.n_ctx,
                **extra,
            )
        return load_settings(openai_base_url=self.base_url, openai_model_info={ALIAS: self.model_info}, **extra)


def differences(runs: list[dict[str, Any]], first: int) -> None:
    """Mark each run with the items whose value (and answer text) differ from the first level's in its repeat."""
    for run in runs:
        base = next(x for x in runs if x["repeat"] == run["repeat"] and x["concurrency"] == first)
        run["values_differ"] = sorted(i for i, v in run["values"].items() if base["values"].get(i) != v)
        run["answers_differ"] = sorted(i for i, a in run["answers"].items() if base["answers"].get(i) != a)


async def all_runs(
    args: Any, target: Target, method: str, limit: int, levels: list[int], repeats: int
) -> tuple[float, list[dict[str, Any]], list[dict[str, Any]]]:
    runs: list[dict[str, Any]] = []
    cache_runs: list[dict[str, Any]] = []
    warm = await common.warm_up(target.spec, target.settings())
    for r in range(repeats):
        order = levels if r % 2 == 0 else list(reversed(levels))  # alternate, so drift hits every level
        for c in order:
            with common.temp_home(f"eval-c{c}"):
                run = await one_eval(target.settings(), method, limit, c, cache=False, spec=target.spec)
            run["repeat"] = r
            runs.append(run)
            print(
                f"  repeat {r + 1} concurrency {c}: {run['items_per_min']:.2f} items/min, "
                f"{run['correct']}/{run['units']} correct",
                flush=True,
            )
    differences(runs, levels[0])
    for run in runs:
        if run["values_differ"]:
            print(
                f"  repeat {run['repeat'] + 1} concurrency {run['concurrency']}: values differ from concurrency "
                f"{levels[0]} on {len(run['values_differ'])} item(s): {', '.join(run['values_differ'])}",
                flush=True,
            )
    if not args.no_cache_run:
        for r in range(repeats):
            with common.temp_home("eval-cache"):
                s = target.settings()
                cold = await one_eval(s, method, limit, 1, cache=True, spec=target.spec)
                hot = await one_eval(s, method, limit, 1, cache=True, spec=target.spec)
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
    p.add_argument(
        "--backend",
        choices=["server", "embedded"],
        default="server",
        help="server: an OpenAI-compatible server on loopback (default); embedded: in this process",
    )
    p.add_argument(
        "--engine",
        choices=["llama-cpp-python", "xllamacpp"],
        default="xllamacpp",
        help="llama.cpp engine: the server (xllamacpp's or llama_cpp.server) or the embedded backend's engine "
        "(default xllamacpp, the product's default; llama-cpp-python is the llama-cpp extra)",
    )
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
    target = Target(args, gguf, levels, max_tokens, model_info)
    port = common.free_port()
    if args.engine == "xllamacpp":
        slots = max(levels)  # every request of the highest level decodes at once
        cmd = [sys.executable, "-m", "conclave.models.xllama", str(gguf), "--port", str(port), "--alias", ALIAS]
        cmd += ["--slots", str(slots), "--n-ctx", str(args.n_ctx), "--threads", str(args.n_threads)]
    else:
        common.require_llama_cpp_python("--engine llama-cpp-python")
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
        ]
    cmd += args.server_arg
    target.base_url = f"http://127.0.0.1:{port}/v1"
    with common.temp_home("eval-throughput", keep=args.keep_home) as home:
        if target.embedded:
            cmd = []
            print(f"embedded backend in-process: {target.spec} on {args.engine}", flush=True)
            # One event loop for every run: the shared model (and its server thread) lives as long as the process.
            warm, runs, cache_runs = asyncio.run(all_runs(args, target, method, limit, levels, repeats))
        else:
            with common.Server(cmd, f"{target.base_url}/models", home / "llama-server.log") as server:
                print(f"{args.engine} server ready on {target.base_url} (pid {server.proc.pid})", flush=True)
                # One event loop for every run: the OpenAI clients' connection pools belong to the loop they were
                # made in.
                warm, runs, cache_runs = asyncio.run(all_runs(args, target, method, limit, levels, repeats))

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
                f"{sum(len(x['values_differ']) for x in mine)}/{sum(x['units'] for x in mine)}"
                f" (answer text: {sum(len(x['answers_differ']) for x in mine)})",
            ]
        )
    table = common.md_table(
        [
            "concurrency",
            "items / min",
            f"vs {levels[0]}",
            "s per item (latency)",
            "correct",
            "failed",
            f"values ≠ concurrency {levels[0]}",
        ],
        rows,
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
    if target.embedded:
        served = (
            f"model `embedded:{gguf.name}` in the bench's process on the {args.engine} engine (n_ctx {args.n_ctx}, "
            f"{args.n_threads} threads" + (f", {max(levels)} slots)" if args.engine == "xllamacpp" else ")")
        )
    elif args.engine == "xllamacpp":
        served = (
            f"model `openai/{ALIAS}` = {gguf.name} served by `python -m conclave.models.xllama --slots {max(levels)} "
            f"--n-ctx {args.n_ctx} --threads {args.n_threads}` (llama.cpp's server in xllamacpp) on loopback"
        )
    else:
        served = (
            f"model `openai/{ALIAS}` = {gguf.name} served by `python -m llama_cpp.server --n_ctx {args.n_ctx} "
            f"--n_threads {args.n_threads} --interrupt_requests False` on loopback"
        )
    notes = [
        f"`{method}` on the first {limit} GSM8K dev items, {served}; the harness (`run_eval`) in a fresh "
        f"CONCLAVE_HOME per run, response cache off; max_tokens {max_tokens or 768}; warm-up {warm:.1f} s untimed.",
        f"values ≠ concurrency {levels[0]}: items whose value (and, in brackets, answer text) differs from the same "
        f"repeat's run at concurrency {levels[0]}, over all repeats (temperature 0: expected 0).",
        f"items / min = units / the harness's run seconds; median (min–max) over {repeats} repeat(s), the order of "
        "the levels alternating between repeats; latency = RunFinished.seconds of every item (it includes waiting "
        "for the model: llama-cpp-python serves one request at a time, xllamacpp one per slot).",
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
        "backend": args.backend,
        "engine": args.engine,
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
