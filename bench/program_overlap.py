"""Streaming reification (issue 14): a program-form chain of four knowledge lookups, each taking ``--latency`` seconds,
decoded at ``--tokens-per-second``; wall time of the whole team when each step's tool starts as soon as its line is
parsed (streaming) against reifying after decoding (the tools start once the chain is complete).

    python bench/program_overlap.py            # 1 s lookups, 12 tokens/s (Qwen2.5-Coder-1.5B on 2 cores)

The model is scripted (its decoding speed is the parameter); the team, the parser, the eager runner and the reifier
are the product's. Two lookups are independent, two depend on earlier results, so the ideal streaming time is the
decoding time plus the lookups that cannot overlap it.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncGenerator, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import emit, machine, md_table, med_range, parser, temp_home  # noqa: E402

PROGRAM = """```python
# who proposed the Adam optimiser
authors = lookup("authors of the Adam optimiser")
# the year Adam was published
year = lookup("year the Adam paper was published")
# what those authors worked on before
earlier = lookup("earlier work of " + authors)
# what else appeared that year
same_year = lookup("optimisers published in " + year)
answer = same_year
```"""


def build_client(tokens_per_second: float) -> Any:
    from autogen_core.models import CreateResult, ModelInfo
    from autogen_ext.models.replay import ReplayChatCompletionClient

    info: ModelInfo = {
        "vision": False,
        "function_calling": False,
        "json_output": True,
        "structured_output": True,
        "family": "unknown",
    }

    class Decoding(ReplayChatCompletionClient):
        """Streams its one reply at a fixed rate, about four characters a token."""

        async def create_stream(self, messages: Sequence[Any], **kwargs: Any) -> AsyncGenerator[Any, None]:
            kwargs.pop("include_usage", None)
            result: CreateResult = await self.create(messages, **kwargs)
            text = str(result.content)
            for i in range(0, len(text), 4):
                await asyncio.sleep(1.0 / tokens_per_second)
                yield text[i : i + 4]
            yield result

    return Decoding([PROGRAM] * 4, model_info=info)


def lookup_tool(latency: float) -> Any:
    from langchain_core.tools import StructuredTool

    async def lookup(query: str) -> str:
        """Look up a fact."""
        await asyncio.sleep(latency)
        return f"<{query[:20]}>"

    def sync(query: str) -> str:
        """Look up a fact."""
        raise RuntimeError("async only")

    return StructuredTool.from_function(func=sync, coroutine=lookup, name="lookup")


async def one_run(streaming: bool, latency: float, tps: float) -> tuple[float, float]:
    """(wall seconds of the run, seconds from the end of decoding to the answer)."""
    import conclave.workflows.team as team
    from conclave.workflows.runner import build_context, run_question

    from conclave.settings import load_settings

    client = build_client(tps)
    original = team.chain_kit

    def kit(*args: Any, **kwargs: Any) -> Any:
        made = original(*args, **kwargs)
        return made if streaming else type(made)(**{**made.__dict__, "eager": None})

    team.chain_kit = kit  # type: ignore[assignment]
    try:
        settings = load_settings(coa={"form": "program", "use_critic": False, "plan": "never"})
        ctx = await build_context(
            "What else was published the year Adam was?",
            settings,
            method="coa",
            knowledge=False,
            clients={r: client for r in ("planner", "retriever", "reasoner", "critic")},
            tools={"lookup": lookup_tool(latency)},
        )
        started = time.perf_counter()
        events = [e async for e in run_question(ctx)]
        wall = time.perf_counter() - started
    finally:
        team.chain_kit = original  # type: ignore[assignment]
    drafted = next(e.at for e in events if e.kind == "chain")
    answered = next(e.at for e in events if e.kind == "answer")
    if next(e for e in events if e.kind == "answer").value is None:
        raise SystemExit("the benchmark chain did not reify: " + str([e.to_dict() for e in events][-3:]))
    return wall, answered - drafted


def main() -> None:
    p = parser(__doc__ or "", repeats=3)
    p.add_argument("--latency", type=float, default=1.0, help="seconds each lookup takes (default 1)")
    p.add_argument("--tokens-per-second", type=float, default=12.0, help="decoding speed (default 12)")
    args = p.parse_args()
    repeats = args.repeats or (1 if args.quick else 3)
    info = machine()
    rows, data = [], {}
    decode = (len(PROGRAM) / 4) / args.tokens_per_second
    with temp_home("overlap", keep=args.keep_home):
        for streaming in (False, True):
            walls, tails = [], []
            for _ in range(repeats):
                wall, tail = asyncio.run(one_run(streaming, args.latency, args.tokens_per_second))
                walls.append(wall)
                tails.append(tail)
            name = "streaming (tools start as lines arrive)" if streaming else "reify after decoding"
            data[name] = {"wall": walls, "after_decoding": tails}
            rows.append([name, med_range(walls, 2), med_range(tails, 2)])
    base = sorted(data["reify after decoding"]["wall"])[len(data["reify after decoding"]["wall"]) // 2]
    fast = sorted(data["streaming (tools start as lines arrive)"]["wall"])[repeats // 2]
    table = md_table(["mode", "wall s, median (min–max)", "s from decoded chain to answer"], rows)
    notes = [
        f"4 lookups of {args.latency:g} s (two independent, two depending on them), decoding ~{decode:.1f} s "
        f"at {args.tokens_per_second:g} tokens/s; {repeats} run(s) each",
        f"streaming saves {base - fast:.2f} s of {base:.2f} s ({(base - fast) / base:.0%})",
    ]
    emit(
        "program_overlap",
        "Streaming reification of a program-form chain",
        table,
        notes=notes,
        data=data,
        info=info,
        quick=args.quick,
        out=args.out,
    )


if __name__ == "__main__":
    main()
