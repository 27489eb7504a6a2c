"""The options of an evaluation, declared once.

``conclave eval``'s options (``cli/evaluate.py`` builds one per field: its flags, help, default and bounds come from
here), a workflow's ``eval`` step (``workflows/files/schema.py``: ``EvalArgs`` adds checks, no fields) and the
harness's ``EvalConfig`` (which adds what the harness resolves) are all this model, so an option added here is
settable everywhere; :data:`CLI_FLAGS` names each option's command-line flags.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["CLI_FLAGS", "NEGATED", "EvalOptions"]


class EvalOptions(BaseModel):
    """What an evaluation runs: which items, methods, models and scorers, and how."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dataset: str = Field(
        ...,
        description="The data set, KIND:PATH; KIND = gsm8k, svamp, squad, hotpotqa, tatqa or jsonl.",
    )
    methods: list[str] = Field(
        default_factory=lambda: ["cot"],
        min_length=1,
        description="Method(s) to run (`conclave methods` lists them); coa variants such as coa:k=3.",
    )
    models: list[str] = Field(
        default_factory=list,
        description="Model spec(s), each runs every role (none: the configured roles).",
    )
    scorers: list[str] = Field(
        default_factory=list,
        description="Scorers (`conclave scorers` lists them; none: the data set's defaults); the first decides "
        "accuracy.",
    )
    limit: int | None = Field(None, ge=1, description="Run only this many items.")
    skip: int = Field(
        0,
        ge=0,
        description="Leave out the first N items (e.g. skip 100 and limit 50: items 101-150).",
    )
    seed: int | None = Field(
        None,
        description="Sample the items at random with this seed (default: the first N).",
    )
    concurrency: int = Field(
        4,
        ge=1,
        le=64,
        description="Units in flight (per model at most what it serves at once: 1 on the embedded llama-cpp-python "
        "engine, embedded_parallel on xllamacpp).",
    )
    executor: Literal["local", "ray"] = Field(
        "local",
        description="Where units run: local (this process) or ray (Ray workers at ray_address; the ray extra).",
    )
    cache: bool = Field(
        True,
        description="Use and fill the LLM response cache.",
    )
    strict: bool = Field(
        False,
        description="Fail on any malformed record instead of skipping it.",
    )
    collection: str | None = Field(
        None,
        description="Search this collection (for data sets without contexts).",
    )
    judge: str | None = Field(
        None,
        description="Model spec for the judge scorers (default: the judge role).",
    )
    k: int | None = Field(None, ge=1, le=50, description="recall@k cut-off (default: top_k).")
    search: Literal["scoped", "open"] | None = Field(
        None,
        description="scoped: each question searches only its own document (tatqa's default); open: the whole "
        "collection.",
    )


CLI_FLAGS: dict[str, tuple[str, ...]] = {
    "dataset": ("--dataset", "-d"),
    "methods": ("--method",),
    "models": ("--model", "-m"),
    "scorers": ("--scorer",),
    "limit": ("--limit", "-n"),
    "skip": ("--skip",),
    "seed": ("--seed",),
    "concurrency": ("--concurrency",),
    "executor": ("--executor",),
    "cache": ("--no-cache",),
    "strict": ("--strict",),
    "collection": ("--collection", "-c"),
    "judge": ("--judge",),
    "k": ("--k",),
    "search": ("--search",),
}
"""Each option's command-line flags (``conclave eval``); ``tests/unit/test_eval_options.py`` keeps it complete."""

NEGATED: dict[str, str] = {"cache": "Do not use or fill the LLM response cache."}
"""Options whose flag turns them off (``--no-cache``: cache false), with the flag's help."""
