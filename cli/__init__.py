"""The command line: the outermost layer (``conclave ...``), over the core in ``conclave`` and the product's areas."""

from __future__ import annotations

from typing import Any

__all__ = ["cli_settings"]


def cli_settings(**overrides: Any) -> Any:
    """The settings a command runs with: files and environment, then the command's flags (``None``: not given)."""
    from conclave.settings import load_settings

    return load_settings(**{k: v for k, v in overrides.items() if v is not None})
