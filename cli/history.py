"""``conclave logs`` (the answers of ``ask`` and the chat) and ``conclave runs list|show|rm`` (evaluation and
workflow run folders under ``$CONCLAVE_HOME/runs``).

Everything read here is a file under CONCLAVE_HOME, i.e. untrusted: it is parsed as JSON or read from SQLite only,
and printed as text (Rich markup escaped, terminal escapes removed).
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import typer
from conclave.cli import cli_settings
from rich.console import Console

from conclave import nesting
from conclave.errors import ConclaveError, ConfigError
from conclave.terminal import clip
from conclave.terminal import escape_markup as escape

__all__ = ["register", "run_info"]

out = Console(highlight=False, soft_wrap=True, emoji=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)

runs_app = typer.Typer(
    help="Evaluation and workflow runs under $CONCLAVE_HOME/runs: list, show, rm.", no_args_is_help=True
)


def _when(ts: Any) -> str:
    try:
        return datetime.fromtimestamp(float(ts)).strftime("%Y-%m-%d %H:%M:%S")
    except (TypeError, ValueError, OverflowError, OSError):
        return "?"


# ---------------------------------------------------------------------------------------------------- logs


logs_app = typer.Typer(
    help="The latest answers of `conclave ask` and the chat, newest first; `logs show ID` prints one whole.",
    invoke_without_command=True,
)


@logs_app.callback()
def logs(
    ctx: typer.Context,
    number: int = typer.Option(20, "--number", "-n", min=1, help="How many answers to show (the latest first)."),
    as_json: bool = typer.Option(False, "--json", help="Print the full records (trace included) as a JSON list."),
    search: str | None = typer.Option(
        None, "--search", "-s", help="Only answers whose question or answer contains TEXT."
    ),
) -> None:
    """The latest answers of `conclave ask` and the chat, newest first (logged in $CONCLAVE_HOME/logs.sqlite);
    `conclave logs show ID` prints one whole: question, answer, chain, sources, usage."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.table import Table

    from conclave.logs import LogStore

    store = LogStore.open(cli_settings())  # a damaged file: a LogStoreError (exit 2) with the fix
    try:
        records = store.recent(number, search)
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps([r.to_dict() for r in records], ensure_ascii=False, default=str))
        return
    if not records:
        err.print(
            "no answers logged yet"
            + (f" matching {escape(search)}" if search else "")
            + " (`conclave ask` and the chat log every answer)"
        )
        return
    table = Table(title=f"Latest answers ({len(records)}; `conclave logs show ID` prints one)", title_justify="left")
    table.add_column("id", no_wrap=True, justify="right")
    for column in ("time", "from", "method", "model", "ok", "question", "answer"):
        table.add_column(column, overflow="fold")
    for r in records:
        answer = r.answer if r.answer.strip() else (r.error or "")
        table.add_row(
            str(r.id),
            _when(r.created),
            escape(r.origin),
            escape(r.method),
            escape(r.model),
            "[green]yes[/]" if r.ok else "[red]no[/]",
            escape(clip(r.question, 60)),
            escape(clip(answer, 80)),
        )
    out.print(table)


def _answer_event(trace: list[Any]) -> dict[str, Any]:
    """The trace's answer event (the last), or an empty one."""
    answers = [e for e in trace if isinstance(e, dict) and e.get("kind") == "answer"]
    return answers[-1] if answers else {}


def _record_data(record: Any) -> dict[str, Any]:
    """A logged answer whole: the record, with the sources and the chain its trace holds."""
    answer = _answer_event(record.trace)
    chain = str(answer.get("chain") or "")
    if not chain:  # no filled-in chain (it failed, or a prose method): the last drafted one, if any
        drafted = [e for e in record.trace if isinstance(e, dict) and e.get("kind") == "chain"]
        chain = str(drafted[-1].get("text") or "") if drafted else ""
    sources = [s for s in answer.get("sources") or [] if isinstance(s, dict)]
    return {**record.to_dict(), "chain": chain, "sources": sources}


def _total_usage(usage: dict[str, Any]) -> dict[str, Any]:
    """The run's total usage: ``ask`` logs it (``total``); the chat logs the agents' usage only."""
    if isinstance(usage.get("total"), dict):
        return dict(usage["total"])
    total: dict[str, Any] = {}
    for agent in usage.values():
        if isinstance(agent, dict):
            for key in ("calls", "prompt_tokens", "completion_tokens"):
                if isinstance(agent.get(key), int):
                    total[key] = total.get(key, 0) + agent[key]
    return total


@logs_app.command("show")
def logs_show(
    record_id: int = typer.Argument(..., metavar="ID", help="The answer's id (the first column of `conclave logs`)."),
    as_json: bool = typer.Option(False, "--json", help="Print the record (trace included) as JSON."),
) -> None:
    """One logged answer whole: question, answer, value, the chain, the sources, models, usage and time."""
    from conclave.logs import LogStore

    store = LogStore.open(cli_settings())
    try:
        record = store.get(record_id)
    finally:
        store.close()
    data = _record_data(record)
    if as_json:
        typer.echo(json.dumps(data, ensure_ascii=False, default=str))
        return
    state = "[green]ok[/]" if record.ok else f"[red]failed[/]: {escape(record.error or 'no answer')}"
    facts = [_when(record.created), escape(record.origin), escape(record.method), state]
    if record.session:
        facts.append(f"conversation {escape(record.session)}")
    out.print(f"[bold]answer {record.id}[/] · " + " · ".join(f for f in facts if f))
    out.print(f"[bold]question:[/] {escape(record.question)}")
    out.print("[bold]answer:[/]")
    out.print(escape(record.answer) if record.answer.strip() else "(none)")
    if record.value is not None:
        out.print(f"[bold]value:[/] {escape(record.value)}")
    if data["chain"]:
        out.print("[bold]chain:[/]")
        for line in data["chain"].splitlines():
            out.print(f"  {escape(line)}")
    if data["sources"]:
        out.print("[bold]sources:[/]")
        for i, p in enumerate(data["sources"], 1):
            out.print(
                f"  {escape(f'[{i}]')} {escape(p.get('source', '?'))} — {escape(clip(str(p.get('text', '')), 160))}"
            )
    models = sorted({str(m) for m in record.models.values()}) or [record.model]
    out.print(f"[bold]models:[/] {escape(', '.join(m for m in models if m))}")
    total = _total_usage(record.usage)
    if total:
        seconds = f" · {float(record.seconds):.1f} s" if isinstance(record.seconds, (int, float)) else ""
        out.print(
            f"[bold]usage:[/] {escape(total.get('calls', 0))} model call(s) · {escape(total.get('prompt_tokens', 0))}"
            f" prompt + {escape(total.get('completion_tokens', 0))} completion tokens{seconds}"
        )


# ---------------------------------------------------------------------------------------------------- runs


def _read(path: Path) -> Any:
    """A JSON file of a run folder, or None when it is missing or not JSON (a listing must not stop at one)."""
    try:
        return nesting.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def run_info(folder: Path) -> dict[str, Any]:
    """What ``runs list`` shows of a run folder: id, kind, started, status, items, methods."""
    manifest = _read(folder / "manifest.json")
    manifest = manifest if isinstance(manifest, dict) else {}
    config = v if isinstance(v := manifest.get("config"), dict) else {}
    kind = str(manifest.get("kind") or ("workflow" if (folder / "run.json").is_file() else "?"))
    info: dict[str, Any] = {
        "id": folder.name,
        "kind": kind,
        "path": str(folder),
        "started": manifest.get("created"),
        "status": "partial",
        "items": None,
        "methods": [],
    }
    if not manifest:
        info["status"] = "damaged"
        return info
    if kind == "eval":
        status = _read(folder / "status.json")
        status = status if isinstance(status, dict) else {}
        info["status"] = (
            "complete" if status.get("status") == "finished" and (folder / "summary.json").is_file() else "partial"
        )
        if isinstance(status.get("units"), int):
            info["items"] = f"{status.get('done', 0)}/{status['units']}"
        info["methods"] = [str(m) for m in config.get("methods") or []]
        info["models"] = [str(m) for m in config.get("models") or []]
    elif kind == "workflow":
        info["status"] = "complete" if (folder / "outputs.json").is_file() else "partial"
        workflow = v if isinstance(v := config.get("workflow"), dict) else {}
        steps = v if isinstance(v := workflow.get("steps"), list) else []
        done = 0
        if (folder / "steps.jsonl").is_file():
            from conclave.workflows.evaluation.runs import scan_jsonl

            done = sum(1 for r in scan_jsonl(folder / "steps.jsonl").records if r.get("status") == "finished")
        info["items"] = f"{done}/{len(steps)} steps"
        info["name"] = workflow.get("name")
    return info


def _all_runs(settings: Any) -> list[Path]:
    root = settings.runs_path
    if not root.is_dir():
        return []
    return sorted((p for p in root.iterdir() if p.is_dir() and not p.is_symlink()), key=lambda p: p.name, reverse=True)


@runs_app.command("list")
def runs_list(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Every run, newest first: id, kind (eval/workflow), started, status (complete/partial), items, methods."""
    from rich.table import Table

    settings = cli_settings()
    infos = [run_info(p) for p in _all_runs(settings)]
    if as_json:
        typer.echo(json.dumps(infos, ensure_ascii=False, default=str))
        return
    if not infos:
        err.print(f"no runs yet under {escape(settings.runs_path)} (`conclave eval` and `conclave run` make them)")
        return
    table = Table(title=f"Runs in {escape(settings.runs_path)}", title_justify="left")
    table.add_column("id", no_wrap=True, min_width=max(len(i["id"]) for i in infos))  # whole: it is what you type
    for column in ("kind", "started", "status", "items", "methods"):
        table.add_column(column, overflow="fold")
    for i in infos:
        colour = {"complete": "green", "damaged": "red"}.get(i["status"], "yellow")
        table.add_row(
            escape(i["id"]),
            escape(i["kind"]),
            escape(i["started"] or "?"),
            f"[{colour}]{escape(i['status'])}[/]",
            escape(i["items"] or ""),
            escape(", ".join(i["methods"]) or (i.get("name") or "")),
        )
    out.print(table)


_REPORT_FILES = (
    "report.html",
    "report.md",
    "summary.json",
    "items.jsonl",
    "manifest.json",
    "config.json",
    "workflow.yaml",
    "steps.jsonl",
    "outputs.json",
)


def _show_data(folder: Path) -> dict[str, Any]:
    info = run_info(folder)
    manifest = _read(folder / "manifest.json")
    manifest = manifest if isinstance(manifest, dict) else {}
    config = v if isinstance(v := manifest.get("config"), dict) else {}
    if info["kind"] == "workflow":
        workflow = v if isinstance(v := config.get("workflow"), dict) else {}
        config = {
            "name": workflow.get("name"),
            "source": config.get("source"),
            "steps": [s.get("id") for s in workflow.get("steps") or [] if isinstance(s, dict)],
        }
    summary = _read(folder / "summary.json")
    cells = v if isinstance(summary, dict) and isinstance(v := summary.get("cells"), list) else []
    accuracy = [
        {
            "method": c.get("method"),
            "model": c.get("model"),
            "accuracy": c.get("accuracy"),
            "scored": c.get("scored"),
            "failed": c.get("failed"),
        }
        for c in cells
        if isinstance(c, dict)
    ]
    files = {name: str(folder / name) for name in _REPORT_FILES if (folder / name).is_file()}
    return {**info, "config": config, "dataset": manifest.get("dataset"), "accuracy": accuracy, "files": files}


@runs_app.command("show")
def runs_show(
    run: str = typer.Argument(..., help="Run id (see `conclave runs list`) or the path of a run folder."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """A run's summary: its configuration, accuracy per method and model, and the paths of its report files."""
    from conclave.workflows.evaluation.runs import find_run

    data = _show_data(find_run(cli_settings(), run))
    if as_json:
        typer.echo(json.dumps(data, ensure_ascii=False, default=str))
        return
    out.print(
        f"[bold]{escape(data['id'])}[/] · {escape(data['kind'])} · started {escape(data['started'] or '?')} · "
        f"{escape(data['status'])}" + (f" · {escape(data['items'])} items" if data["items"] else "")
    )
    for key, value in data["config"].items():
        if value not in (None, [], {}, ""):
            shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
            out.print(f"  {escape(key)}: {escape(clip(shown, 160))}")
    for cell in data["accuracy"]:
        acc = "–" if cell["accuracy"] is None else f"{100 * float(cell['accuracy']):.1f}%"
        out.print(
            f"  accuracy {escape(cell['method'])} @ {escape(cell['model'])}: {acc} "
            f"(n = {escape(cell['scored'])}, failed {escape(cell['failed'])})"
        )
    for name, path in data["files"].items():
        out.print(f"  {escape(name)}: {escape(path)}")


@runs_app.command("rm")
def runs_rm(
    run: str = typer.Argument(..., help="Run id (see `conclave runs list`) or the path of a run folder."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Delete without asking."),
) -> None:
    """Delete a run folder (only one under $CONCLAVE_HOME/runs)."""
    from conclave.workflows.evaluation.runs import find_run

    settings = cli_settings()
    folder = find_run(settings, run)
    root = settings.runs_path.resolve()
    if folder.is_symlink() or folder.resolve().parent != root:
        raise ConfigError(
            f"{folder} is not a run folder under {root}: not deleted",
            hint="`conclave runs rm` deletes only runs in $CONCLAVE_HOME/runs; see `conclave runs list`",
        )
    folder = folder.resolve()
    if not yes and not typer.confirm(f"Delete run {folder.name} ({folder})?", default=False, err=True):
        err.print("not deleted")
        raise typer.Exit(1)
    try:
        shutil.rmtree(folder)
    except OSError as exc:
        raise ConclaveError(
            f"cannot delete {folder}: {exc.strerror or exc}", hint="check the permissions of CONCLAVE_HOME/runs"
        ) from exc
    out.print(f"deleted {escape(folder.name)}")


def register(app: typer.Typer) -> None:
    """Add ``logs`` and ``runs`` to the main app."""
    app.add_typer(logs_app, name="logs")
    app.add_typer(runs_app, name="runs")
