"""Prompts of the evaluation judge and the synthetic-data generator (package data, hashed for run manifests)."""

from __future__ import annotations

import hashlib
from functools import cache
from importlib import resources

from conclave.errors import ConfigError

__all__ = ["load", "hashes"]


@cache
def load(name: str) -> str:
    """The text of ``workflows/evaluation/prompts/<name>.md``."""
    try:
        text = resources.files(__name__).joinpath(f"{name}.md").read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"prompt {name!r} is missing from the installation", hint="reinstall conclave") from exc
    return text.strip()


def hashes() -> dict[str, str]:
    """sha256 (12 hex digits) of every prompt here."""
    out = {}
    for entry in sorted(resources.files(__name__).iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".md"):
            out[entry.name[:-3]] = hashlib.sha256(entry.read_bytes()).hexdigest()[:12]
    return out
