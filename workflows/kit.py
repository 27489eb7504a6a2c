"""What the reasoner gets of the chain engine: a :class:`ChainKit` for the configured form, and the few-shot example
banks it draws from (built once per settings, shared by every question)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from conclave.agents.reasoner import ChainKit

from conclave.errors import ConfigError

_BANKS: dict[tuple[str, int, str], Any] = {}


def example_picker(settings: Any) -> Any:
    """``coa.few_shot = "similar"``: a function question -> similar converted training chains."""
    coa = settings.coa
    if coa.few_shot != "similar":
        return None
    if coa.examples_file is None:
        raise ConfigError(
            "coa.few_shot is 'similar' but coa.examples_file is not set",
            hint="set CONCLAVE_COA__EXAMPLES_FILE to a GSM8K-format train.jsonl",
        )
    from conclave.workflows.coa.examples import ExampleBank

    from conclave.embeddings import get_embedder

    key = (str(coa.examples_file), coa.examples_limit, settings.embedder)
    if key not in _BANKS:
        _BANKS[key] = ExampleBank.build(
            Path(coa.examples_file),
            get_embedder(settings.embedder, settings),
            settings.cache_path,
            limit=coa.examples_limit,
        )
    bank = _BANKS[key]
    return lambda question: [(e.question, e.chain_json, e.chain_text) for e in bank.nearest(question, coa.examples_k)]


def chain_kit(tools: dict[str, Any], max_steps: int, settings: Any = None) -> ChainKit:
    """The chain engine, packaged for the reasoner."""
    from conclave.workflows.coa import chain_json_schema, parse_chain, render, validate
    from conclave.workflows.coa.program import (
        ProgramStream,
        looks_like_program,
        parse_program,
        render_program,
        salvage_lookups,
    )
    from conclave.workflows.coa.reify import EagerRun

    def parse(text: str) -> Any:
        return parse_program(text, tools) if looks_like_program(text) else parse_chain(text)

    def to_program(chain_json: str) -> str:
        return render_program(parse_chain(chain_json))

    timeout = settings.coa.tool_timeout if settings is not None else 30.0

    def check(chain: Any) -> list[str]:
        return [str(getattr(e, "message", e)) for e in validate(chain, tools, max_steps=max_steps)]

    # Bounds in the schema are fine for validation; the embedded backend strips them from its grammar
    # (conclave.models.embedded.grammar_safe) and the step budget is enforced by validation and the token budget.
    schema = chain_json_schema(tools, max_steps=max_steps)
    examples = example_picker(settings) if settings is not None else None

    def placeholders(program: str) -> str:
        chain = parse_program(program, tools)
        return render_program(dataclasses.replace(chain, names={}))

    return ChainKit(
        parse=parse,
        validate=check,
        render=render,
        schema=schema,
        examples=examples,
        to_program=to_program,
        placeholders=placeholders,
        stream=lambda: ProgramStream(tools),
        salvage=lambda text: salvage_lookups(text, tools) if looks_like_program(text) else None,
        eager=lambda on_event, sample: EagerRun(tools, timeout=timeout, on_event=on_event, sample=sample),
    )
