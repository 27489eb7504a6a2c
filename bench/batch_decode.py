"""Batched decoding on the xllamacpp engine, without the harness: aggregate tokens per second of 1, 2 and 4
generations decoded together, the ceiling of what ``conclave eval --concurrency N`` can gain on this machine.

One ``embedded:<GGUF>`` client on ``embedded_engine = "xllamacpp"`` (4 slots), temperature 0, a fixed number of
tokens per generation (``--tokens``; the prompts ask for long number lists, so no generation stops early), each
level timed ``--repeats`` times in the order 1 2 4, 1 2 4, ... after one untimed warm-up.

    python bench/batch_decode.py --gguf bench/models/qwen2.5-coder-1.5b-instruct-q4.gguf
    python bench/batch_decode.py --quick                      # the bundled SmolLM2, 32 tokens, one repeat
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from pathlib import Path

import common

LEVELS = (1, 2, 4)


async def measure(gguf: Path, tokens: int, repeats: int, threads: int) -> dict[int, list[float]]:
    from autogen_core.models import UserMessage

    from conclave.models import make_client
    from conclave.settings import load_settings

    settings = load_settings(
        embedded_engine="xllamacpp",
        embedded_parallel=max(LEVELS),
        embedded_threads=threads,
        max_tokens=tokens,
        temperature=0.0,
        context_length=2048,
    )
    client = await make_client(f"embedded:{gguf}", settings)
    await client.create([UserMessage(content="Hi", source="user")])  # load the model: not timed
    rates: dict[int, list[float]] = {n: [] for n in LEVELS}
    for r in range(repeats):
        for n in LEVELS:
            prompts = [
                [UserMessage(content=f"Write the numbers from {300 * (i + r * n)} on, comma separated.", source="user")]
                for i in range(n)
            ]
            started = time.perf_counter()
            results = await asyncio.gather(*(client.create(p) for p in prompts))
            seconds = time.perf_counter() - started
            rates[n].append(sum(x.usage.completion_tokens for x in results) / seconds)
            print(f"  repeat {r + 1}, {n} together: {rates[n][-1]:.1f} tokens/s", flush=True)
    return rates


def main() -> None:
    p = common.parser(__doc__ or "", repeats=3)
    p.add_argument("--gguf", type=Path, help="GGUF model (default: the bundled SmolLM2-135M)")
    p.add_argument("--tokens", type=int, default=None, help="tokens per generation (default 128; 32 with --quick)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="llama.cpp threads (default: cores)")
    args = p.parse_args()
    from conclave.models.embedded import bundled_model_path

    gguf = (args.gguf or bundled_model_path()).resolve()
    tokens = args.tokens or (32 if args.quick else 128)
    repeats = args.repeats or (1 if args.quick else 3)
    info = common.machine()
    with common.temp_home("batch-decode", keep=args.keep_home):
        rates = asyncio.run(measure(gguf, tokens, repeats, args.threads))
    base = statistics.median(rates[1])
    rows = [[n, common.med_range(rates[n], 1), f"{statistics.median(rates[n]) / base:.2f}×"] for n in LEVELS]
    table = common.md_table(["generations together", "tokens/s, all together", "vs 1"], rows, align="rrr")
    common.emit(
        "batch_decode",
        "Batched decoding on the xllamacpp engine",
        table,
        data={"gguf": gguf.name, "tokens": tokens, "threads": args.threads, "rates": rates},
        info=info,
        quick=args.quick,
        notes=[
            f"`{gguf.name}` on xllamacpp ({max(LEVELS)} slots, {args.threads} threads), {tokens} tokens per "
            f"generation at temperature 0; median (min–max) of {repeats} repeat(s), levels in the order "
            f"{' '.join(map(str, LEVELS))} each repeat",
        ],
        out=args.out,
    )


if __name__ == "__main__":
    main()
