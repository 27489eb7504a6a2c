"""The command line: the outermost layer (``conclave ...``), over the core in ``conclave`` and the product's areas."""

from __future__ import annotations

from typing import Any

__all__ = ["cli_settings"]


def cli_settings(**overrides: Any) -> Any:
    """The settings a command runs with: files and environment, then the command's flags (``None``: not given)."""
    from conclave.workflows.methods import check_method_setting

    from conclave.settings import load_settings_with_origins

    loaded = load_settings_with_origins(**{k: v for k, v in overrides.items() if v is not None})
    return check_method_setting(loaded.settings, loaded.origins.get("method", "default"))
