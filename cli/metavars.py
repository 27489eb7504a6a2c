"""Help that reads like a command line, not like Python: ``--model SPEC``, ``--limit N``, a flag with no metavar.

Typer 0.29 shows a parameter's Python type (``<list[str]>``, ``<bool>``, ``<int range>``). Every command's parameters
get a metavar here, once, when the command tree is built: the root app is a :class:`ReadableGroup`, which walks its
sub-commands, so ``conclave``, ``CliRunner`` and the help of every sub-command read the same.
"""

from __future__ import annotations

from typing import Any

import typer.core

__all__ = ["METAVARS", "ReadableGroup", "metavar_for"]

# By parameter name (what the value means), before the fallback by type.
METAVARS: dict[str, str] = {
    "model": "SPEC",
    "models": "SPEC",
    "judge": "SPEC",
    "spec": "SPEC",
    "dataset": "KIND:PATH",
    "method": "METHOD",
    "methods": "METHOD",
    "scorer": "SCORER",
    "scorers": "SCORER",
    "collection": "NAME",
    "name": "NAME",
    "resume": "RUN_ID",
    "run_id": "RUN_ID",
    "run_ids": "RUN_ID",
    "session": "SESSION",
    "question": "QUESTION",
    "search": "TEXT",
    "query": "TEXT",
    "workflow": "FILE",
    "output": "FILE",
    "out": "FILE",
    "path": "PATH",
    "paths": "PATH",
    "option": "KEY=VALUE",
    "template": "NAME",
    "save": "NAME",
    "system": "TEXT",
}
_BY_TYPE = {"str": "TEXT", "int": "N", "float": "NUMBER", "Path": "PATH"}


def metavar_for(param: Any) -> str:
    """The metavar ``param`` gets: none for a flag, else by its name, else by its type."""
    if getattr(param, "is_flag", False):
        return ""
    if param.name in METAVARS:
        return METAVARS[param.name]
    bare = param.bare_type()
    inner = bare[5:-1] if bare.startswith("list[") else bare
    return _BY_TYPE.get(inner, inner.upper())


def _no_type(ctx: Any) -> None:
    return None


def readable(command: Any) -> None:
    """Give ``command`` and its sub-commands readable metavars (typer builds these objects per invocation; the
    attributes set here are the documented ones, plus two per-instance overrides: an argument's name already says what
    it is, so its type column stays empty, and ``--help`` is a flag like the others)."""
    for param in command.params:
        if isinstance(param, typer.core._TyperParameter) and param.metavar is None:
            param.metavar = metavar_for(param)
        if isinstance(param, typer.core.TyperArgument):
            param.display_type_rich = _no_type  # type: ignore[method-assign]
    original = command.get_help_option

    def get_help_option(ctx: Any) -> Any:
        option = original(ctx)
        if option is not None and option.metavar is None:
            option.metavar = ""
        return option

    command.get_help_option = get_help_option
    for sub in (getattr(command, "commands", None) or {}).values():
        readable(sub)


class ReadableGroup(typer.core.TyperGroup):
    """The root group: every parameter below it gets a readable metavar."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        readable(self)

    def get_params(self, ctx: Any) -> list[Any]:
        # Typer adds --install-completion and --show-completion to the root after it is built.
        params = super().get_params(ctx)
        for param in params:
            if isinstance(param, typer.core._TyperParameter) and param.metavar is None:
                param.metavar = metavar_for(param)
        return params
