"""Slash commands: each ``/name args`` typed in the chat runs a handler here; knowledge work runs in workers."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from conclave.tui.backend import IngestUpdate
from conclave.tui.commands import SlashError, parse_slash
from conclave.workflows.methods import METHODS
from rich.text import Text
from textual.widgets import Label, ProgressBar

from conclave.errors import ConclaveError, ConfigError
from conclave.settings import AGENT_ROLES, RoleModels
from conclave.terminal import safe_text

if TYPE_CHECKING:
    from conclave.tui.app import ConclaveApp

__all__ = ["SlashCommands"]


class SlashCommands:
    """The handlers of the slash commands, acting on one app."""

    def __init__(self, app: ConclaveApp):
        self.app = app

    async def run(self, text: str) -> None:
        """Run one slash command; mistakes become notifications that say what to type."""
        try:
            name, args = parse_slash(text)
        except SlashError as exc:
            self.app.notify(safe_text(exc), severity="warning", markup=False)
            return
        try:
            await getattr(self, f"_slash_{name}")(args)
        except ConclaveError as exc:
            self.app.show_error(exc, title=f"/{name}")

    async def _slash_help(self, args: list[str]) -> None:
        self.app.action_help()

    async def _slash_sessions(self, args: list[str]) -> None:
        self.app.action_sessions()

    async def _slash_new(self, args: list[str]) -> None:
        await self.app.new_session()

    async def _slash_trace(self, args: list[str]) -> None:
        if not args:
            self.app.set_trace(not self.app.trace_visible)
        elif args[0].lower() in ("on", "off"):
            self.app.set_trace(args[0].lower() == "on")
        else:
            raise ConfigError(f"/trace takes on or off, not {args[0]!r}", hint="type /trace on or /trace off")

    async def _slash_export(self, args: list[str]) -> None:
        fmt: Literal["md", "json"] = "md"
        path: Path | None = None
        for arg in args:
            if arg.lower() in ("md", "markdown", "json"):
                fmt = "json" if arg.lower() == "json" else "md"
            else:
                path = Path(arg).expanduser()
        if path is not None and path.suffix.lower() == ".json" and "json" not in [a.lower() for a in args]:
            fmt = "json"
        if path is not None and not path.suffix:
            path = path.with_suffix(f".{fmt}")
        self.app.export_session(fmt, path)

    async def _slash_params(self, args: list[str]) -> None:
        self.app.action_edit_params()

    async def _slash_method(self, args: list[str]) -> None:
        if not args:
            self.app.notify(
                safe_text(
                    f"Method: {self.app.settings.method} (choose from {', '.join(METHODS.names())}: /method NAME)"
                ),
                markup=False,
            )
            return
        self.app.set_method(args[0].lower())

    async def _slash_model(self, args: list[str]) -> None:
        from conclave.models.backends import parse_spec

        if not args:
            lines = [
                f"{role}: {self.app.models.get(role) or self.app.settings.role_model(role) or 'auto'}"
                for role in AGENT_ROLES
            ]
            self.app.notify(
                safe_text("\n".join(lines) + "\nchange with /model SPEC or /model ROLE SPEC"),
                title="Models",
                markup=False,
            )
            return
        if len(args) > 2:
            raise ConfigError("/model takes a spec, or a role and a spec", hint="e.g. /model ollama/qwen2.5:1.5b")
        if len(args) == 2:
            role, spec = args[0].lower(), str(parse_spec(args[1]))
            if role not in AGENT_ROLES:
                raise ConfigError(f"unknown role {role!r}", hint=f"roles: {', '.join(AGENT_ROLES)}")
            self.app.models.pop(role, None)
            self.app.update_settings(roles=self.app.settings.roles.model_copy(update={role: spec}))
            self.app.notify(safe_text(f"{role} model: {spec}"), markup=False)
            self.app.lookup_models()
            return
        spec = str(parse_spec(args[0]))
        self.app.models = {}
        self.app.update_settings(model=spec, roles=RoleModels())
        self.app.notify(safe_text(f"Model for every role: {spec}"), markup=False)
        self.app.lookup_models()

    async def _slash_collection(self, args: list[str]) -> None:
        if args:
            try:
                from conclave.tools.store import validate_collection_name
            except ImportError:
                name = args[0]
            else:
                name = validate_collection_name(args[0])
            self.app.update_settings(collection=name)
            self.app.notify(safe_text(f"Collection: {name}"), markup=False)
            return
        self.app.run_worker(self._list_collections(), name="collections", group="knowledge", exit_on_error=False)

    async def _list_collections(self) -> None:
        try:
            found = await self.app.knowledge.collections(self.app.settings)
        except ConclaveError as exc:
            self.app.show_error(exc, title="Collections")
            return
        lines = [
            f"{'● ' if name == self.app.settings.collection else '  '}{name} ({count} chunks)" for name, count in found
        ]
        body = "\n".join(lines) if lines else "no collections yet: /ingest PATH adds one"
        self.app.notify(
            safe_text(f"{body}\nswitch with /collection NAME"), title="Collections", markup=False, timeout=10
        )

    async def _slash_search(self, args: list[str]) -> None:
        query = " ".join(args).strip()
        if not query:
            raise ConfigError("/search needs a query", hint="e.g. /search what does Adam combine")
        self.app.run_worker(self._search(query), name="search", group="knowledge", exit_on_error=False)

    async def _search(self, query: str) -> None:
        collection = self.app.settings.collection
        self.app.refresh_status(activity="searching…")
        try:
            passages = await self.app.knowledge.search(query, collection, self.app.settings)
        except ConclaveError as exc:
            self.app.show_error(exc, title="Search failed")
            return
        finally:
            self.app.refresh_status(activity="")
        self.app.show_sources(passages, f"Search “{query}” in {collection}: {len(passages)} passage(s)")
        self.app.action_show_sources()

    async def _slash_ingest(self, args: list[str]) -> None:
        if not args:
            raise ConfigError("/ingest needs a file or folder", hint="e.g. /ingest ~/notes")
        paths = [Path(a).expanduser() for a in args]
        missing = [str(p) for p in paths if not p.exists()]
        if missing:
            raise ConfigError(f"no such file or folder: {', '.join(missing)}", hint="check the path")
        self.app.run_worker(self._ingest(paths), name="ingest", group="ingest", exclusive=True, exit_on_error=False)

    def _ingest_progress(self, update: IngestUpdate) -> None:
        bar = self.app.query_one("#ingest-bar", ProgressBar)
        bar.update(total=max(1, update.files_total), progress=update.files_done)
        self.app.query_one("#ingest-label", Label).update(
            Text(
                safe_text(
                    f"ingesting {update.files_done}/{update.files_total} files · {update.chunks_added} chunks · "
                    f"{update.current}"
                )
            )
        )

    async def _ingest(self, paths: list[Path]) -> None:
        collection = self.app.settings.collection
        row = self.app.query_one("#ingest")
        self.app.query_one("#ingest-label", Label).update(Text(safe_text(f"ingesting into {collection}…")))
        self.app.query_one("#ingest-bar", ProgressBar).update(total=None, progress=0)
        row.display = True
        try:
            summary = await self.app.knowledge.ingest(paths, collection, self.app.settings, self._ingest_progress)
        except ConclaveError as exc:
            self.app.show_error(exc, title="Ingest failed")
            return
        finally:
            row.display = False
        self.app.notify(safe_text(summary), title="Ingested", markup=False, timeout=10)
