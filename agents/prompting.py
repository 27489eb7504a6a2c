"""Prompts are package data (``agents/prompts/*.md``), loaded and checked once, hashed for run manifests."""

from __future__ import annotations

from typing import Any

from conclave.prompts import PromptFolder

_PROMPTS = PromptFolder("conclave.agents", "prompts")


def load_prompt(name: str) -> str:
    """The text of ``agents/prompts/<name>.md``."""
    return _PROMPTS.load(name)


def answer_prompt(name: str, settings: Any) -> str:
    """The system prompt of a call that writes the answer, with the user's own instructions (``settings.system``,
    ``ask --system``) after it."""
    text = load_prompt(name)
    extra = (getattr(settings, "system", None) or "").strip()
    return f"{text}\n\nThe user's instructions for the answer:\n{extra}" if extra else text


def prompt_hashes() -> dict[str, str]:
    """sha256 (12 hex digits) of every bundled prompt, for run manifests."""
    return _PROMPTS.hashes()
