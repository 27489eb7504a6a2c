"""Prompts are package data (``agents/prompts/*.md``), loaded and checked once, hashed for run manifests."""

from __future__ import annotations

import hashlib
from functools import cache
from importlib import resources
from typing import Any

from conclave.errors import ConfigError


@cache
def load_prompt(name: str) -> str:
    """The text of ``agents/prompts/<name>.md``."""
    try:
        text = resources.files("conclave.agents").joinpath("prompts", f"{name}.md").read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"prompt {name!r} is missing from the installation", hint="reinstall conclave") from exc
    if not text.strip():
        raise ConfigError(f"prompt {name!r} is empty", hint="reinstall conclave")
    return text.strip()


def answer_prompt(name: str, settings: Any) -> str:
    """The system prompt of a call that writes the answer, with the user's own instructions (``settings.system``,
    ``ask --system``) after it."""
    text = load_prompt(name)
    extra = (getattr(settings, "system", None) or "").strip()
    return f"{text}\n\nThe user's instructions for the answer:\n{extra}" if extra else text


def prompt_hashes() -> dict[str, str]:
    """sha256 (12 hex digits) of every bundled prompt, for run manifests."""
    out = {}
    for entry in sorted(resources.files("conclave.agents").joinpath("prompts").iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".md"):
            out[entry.name[:-3]] = hashlib.sha256(entry.read_bytes()).hexdigest()[:12]
    return out
