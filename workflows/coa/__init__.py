"""The chain-of-abstraction engine: chain model, parser, validator, reifier, renderers, JSON schema, GSM8K converter.

Pure apart from the tools it runs: text or JSON in, frozen dataclasses out; see docs/ARCHITECTURE.md, "The flow of one question".
"""

from conclave.workflows.coa.gsm8k import GSM8KConversionError, convert_gsm8k_answer, gsm8k_gold
from conclave.workflows.coa.model import (
    CALCULATOR,
    PLACEHOLDER_PATTERN,
    Arg,
    Chain,
    Concat,
    Lit,
    Ref,
    Step,
    calculator_step,
    placeholders_in,
)
from conclave.workflows.coa.parse import MATH_FUNCTIONS, ChainParseError, parse_chain
from conclave.workflows.coa.reify import InvalidChainError, ReifiedChain, StepResult, chain_levels, reify, value_text
from conclave.workflows.coa.render import chain_to_dict, render, render_filled, render_json
from conclave.workflows.coa.schema import chain_json_schema
from conclave.workflows.coa.validate import (
    ChainError,
    bind_args,
    bind_chain,
    find_tool,
    format_errors,
    tool_fields,
    validate,
)

__all__ = [
    "Arg",
    "CALCULATOR",
    "Chain",
    "ChainError",
    "ChainParseError",
    "Concat",
    "GSM8KConversionError",
    "InvalidChainError",
    "Lit",
    "MATH_FUNCTIONS",
    "PLACEHOLDER_PATTERN",
    "Ref",
    "ReifiedChain",
    "Step",
    "StepResult",
    "bind_args",
    "bind_chain",
    "calculator_step",
    "chain_json_schema",
    "chain_levels",
    "chain_to_dict",
    "convert_gsm8k_answer",
    "find_tool",
    "format_errors",
    "gsm8k_gold",
    "parse_chain",
    "placeholders_in",
    "reify",
    "render",
    "render_filled",
    "render_json",
    "tool_fields",
    "validate",
    "value_text",
]
