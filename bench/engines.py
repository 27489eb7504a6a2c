"""The embedded backend's two engines on the default model, each in cold processes (issue 29: which one is the
default): load + first answer, decoding speed at concurrency 1 and 4, answers at temperature 0, peak memory.

Each run is a fresh ``python bench/engines.py --child ENGINE`` process (nothing loaded, nothing cached) with the
default settings but the engine (``context_length`` 4096; xllamacpp: ``embedded_parallel`` 4 slots), in the given
``CONCLAVE_HOME`` (where the default model is assembled already; its response cache is not used: the clients are the
backend's own, under no cache). In each child, in order:

1. the first answer: ``ANSWER_PROMPTS[0]`` from the process's start (imports and the model load included): seconds to
   the first token and to the whole answer;
2. the other answer prompts, one after another (the answers of all of them are what "identical" compares: between two
   cold processes of the same engine, and between the engines);
3. decoding speed: one generation of ``--tokens`` tokens alone, then four at once (aggregate tokens per second;
   llama-cpp-python serves the four one after another);
4. peak RSS of the child (``ru_maxrss`` from ``os.wait4``).

Engines alternate (xllamacpp, llama-cpp-python, xllamacpp, ...), ``--repeats`` cold processes each.

    python bench/engines.py                                  # the default model (embedded), 2 cold processes each
    python bench/engines.py --quick                          # the bundled SmolLM2, one process each
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import emit, machine, md_table, med_range, parser, ratio  # noqa: E402

ENGINES = ("xllamacpp", "llama-cpp-python")
ANSWER_PROMPTS = (
    "What does the Adam optimiser combine? Answer in two sentences.",
    "A shop sells pens at 3 dollars each. Tom buys 12 pens and pays with a 50 dollar bill. How much change does he "
    "get? Think step by step.",
    "Write a Python function that returns the n-th Fibonacci number.",
    "Name three uses of a hash table, one line each.",
    "Explain in one paragraph what a transformer's attention computes.",
    "Translate into French: The weather is nice today and we are going to the park.",
)
SPEED_PROMPT = "Write the numbers from {start} on, comma separated, and nothing else."


async def child(engine: str, model: str, tokens: int, answer_tokens: int) -> dict[str, Any]:
    """One cold process's measurements (``began`` is the interpreter's start, from /proc)."""
    from autogen_core.models import CreateResult, SystemMessage, UserMessage

    from conclave.models import make_client
    from conclave.settings import load_settings

    settings = load_settings(embedded_engine=engine, temperature=0.0, max_tokens=answer_tokens)
    client = await make_client(model, settings)

    def messages(text: str) -> list[Any]:
        return [SystemMessage(content="You are a helpful assistant."), UserMessage(content=text, source="user")]

    first_token = None
    answers: list[str] = []
    async for item in client.create_stream(messages(ANSWER_PROMPTS[0])):
        if isinstance(item, CreateResult):
            answers.append(str(item.content))
        elif first_token is None:
            first_token = time.monotonic() - BEGAN
    first_answer = time.monotonic() - BEGAN
    for prompt in ANSWER_PROMPTS[1:]:
        answers.append(str((await client.create(messages(prompt))).content))

    extra = {"max_tokens": tokens}
    rates: dict[str, float] = {}
    for n, offset in ((1, 0), (4, 1)):
        prompts = [messages(SPEED_PROMPT.format(start=300 * (offset + i))) for i in range(n)]
        started = time.perf_counter()
        results = await asyncio.gather(*(client.create(p, extra_create_args=extra) for p in prompts))
        rates[str(n)] = sum(r.usage.completion_tokens for r in results) / (time.perf_counter() - started)
    return {
        "engine": engine,
        "first_token_s": first_token,
        "first_answer_s": first_answer,
        "answers": answers,
        "tokens_per_s": rates,
    }


def _process_start() -> float:
    """This process's start on the monotonic clock (/proc/self/stat's start time, in clock ticks since boot)."""
    with open("/proc/self/stat") as fh:
        start_ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/uptime") as fh:
        uptime = float(fh.read().split()[0])
    return time.monotonic() - (uptime - start_ticks / os.sysconf("SC_CLK_TCK"))


BEGAN = _process_start()


def run_child(engine: str, args: Any) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", engine, "--model", args.model, "--tokens", str(args.tokens)]
    cmd += ["--answer-tokens", str(args.answer_tokens)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    out, err = proc.stdout.read(), proc.stderr.read()  # type: ignore[union-attr]
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{engine} child failed:\n{err[-3000:]}")
    record = json.loads(out.strip().splitlines()[-1])
    record["peak_rss_mib"] = usage.ru_maxrss / 1024
    print(
        f"  {engine}: first token {record['first_token_s']:.1f} s, answer {record['first_answer_s']:.1f} s, "
        f"{record['tokens_per_s']['1']:.1f} / {record['tokens_per_s']['4']:.1f} tokens/s, "
        f"{record['peak_rss_mib']:.0f} MiB",
        flush=True,
    )
    return record


def main() -> None:
    p = parser(__doc__ or "", repeats=2)
    p.add_argument("--model", default=None, help="model spec (default: embedded; with --quick embedded:smollm2)")
    p.add_argument("--tokens", type=int, default=None, help="tokens per speed generation (default 128; 32 quick)")
    p.add_argument("--answer-tokens", type=int, default=96, help="max tokens per answer (default 96)")
    p.add_argument("--child", choices=ENGINES, help=argparse_hidden())
    args = p.parse_args()
    args.model = args.model or ("embedded:smollm2" if args.quick else "embedded")
    args.tokens = args.tokens or (32 if args.quick else 128)
    if args.child:
        print(json.dumps(asyncio.run(child(args.child, args.model, args.tokens, args.answer_tokens))), flush=True)
        return
    repeats = args.repeats or (1 if args.quick else 2)
    info = machine()
    runs: dict[str, list[dict[str, Any]]] = {e: [] for e in ENGINES}
    for r in range(repeats):
        for engine in ENGINES:
            print(f"cold process {r + 1}, {engine}", flush=True)
            runs[engine].append(run_child(engine, args))

    def same_within(engine: str) -> str:
        first = runs[engine][0]["answers"]
        if len(runs[engine]) < 2:
            return "–"
        return f"{sum(all(run['answers'][i] == a for run in runs[engine]) for i, a in enumerate(first))}/{len(first)}"

    base = runs[ENGINES[1]]
    rows = []
    for engine in ENGINES:
        one = [run["tokens_per_s"]["1"] for run in runs[engine]]
        four = [run["tokens_per_s"]["4"] for run in runs[engine]]
        rows.append(
            [
                engine,
                med_range([run["first_token_s"] for run in runs[engine]]),
                med_range([run["first_answer_s"] for run in runs[engine]]),
                med_range(one),
                f"{med_range(four)} ({ratio(statistics.median(four), statistics.median(one))})",
                med_range([run["peak_rss_mib"] for run in runs[engine]], digits=0),
                same_within(engine),
            ]
        )
    across = sum(
        a == b
        for x_run, l_run in zip(runs[ENGINES[0]], base, strict=True)
        for a, b in zip(x_run["answers"], l_run["answers"], strict=True)
    )
    total = sum(len(run["answers"]) for run in base)
    table = md_table(
        [
            "engine",
            "first token, s from process start",
            "first answer, s",
            "tokens/s, 1 generation",
            "tokens/s, 4 at once (× 1)",
            "peak RSS MiB",
            "answers = in every cold process",
        ],
        rows,
    )
    emit(
        "engines",
        f"The embedded engines on {args.model}, cold processes",
        table,
        notes=[
            f"answers identical between the engines (same cold-process index): {across}/{total}",
            f"{len(ANSWER_PROMPTS)} prompts at temperature 0, at most {args.answer_tokens} tokens each; speed "
            f"generations of {args.tokens} tokens",
        ],
        data={"runs": runs, "answers_identical_across_engines": [across, total]},
        info=info,
        quick=args.quick,
        out=args.out,
    )


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
