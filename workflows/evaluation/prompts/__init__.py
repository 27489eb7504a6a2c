"""Prompts of the evaluation judge and the synthetic-data generator (package data, hashed for run manifests)."""

from __future__ import annotations

from conclave.prompts import PromptFolder

__all__ = ["load", "hashes"]

_PROMPTS = PromptFolder(__name__)


def load(name: str) -> str:
    """The text of ``workflows/evaluation/prompts/<name>.md``."""
    return _PROMPTS.load(name)


def hashes() -> dict[str, str]:
    """sha256 (12 hex digits) of every prompt here."""
    return _PROMPTS.hashes()
