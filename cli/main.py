"""The ``conclave`` command line. Errors become one readable message here, at the edge, and nowhere else."""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import os
import signal
import stat
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from conclave.cli import cli_settings
from conclave.cli.metavars import ReadableGroup
from conclave.workflows.methods import method_help
from rich.console import Console

from conclave import __version__
from conclave.errors import ConclaveError
from conclave.terminal import escape_markup, safe_text

app = typer.Typer(
    name="conclave",
    cls=ReadableGroup,
    help="Local-first multi-agent question answering with chain-of-abstraction reasoning.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Inspect the effective configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")

out = Console(highlight=False, soft_wrap=True, emoji=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)
_DEBUG = {"on": False}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"conclave {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks and debug logs."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
    otel: bool = typer.Option(
        False,
        "--otel",
        help="Print an OpenTelemetry trace of every question on stderr (OTEL_EXPORTER_OTLP_ENDPOINT sends them "
        "to a collector instead).",
    ),
) -> None:
    """Conclave: planner, retriever, reasoner and critic answer together, on local or remote models."""
    if otel:
        os.environ["CONCLAVE_OTEL"] = "console"  # the setting, for this process and the workers it starts
    _DEBUG["on"] = debug or bool(os.environ.get("CONCLAVE_DEBUG"))
    logging.basicConfig(
        level=logging.DEBUG if _DEBUG["on"] else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if not _DEBUG["on"]:
        # Errors reach the user once, as one message at the edge; libraries' own tracebacks stay out of the way.
        for noisy in (
            "httpx",
            "autogen_core",
            "autogen_agentchat",
            "autogen_ext",
            "chromadb",
            "sentence_transformers",
            "openai",
            "ollama",
            "opentelemetry",
        ):
            logger = logging.getLogger(noisy)
            logger.setLevel(logging.CRITICAL)
            logger.propagate = False


def settings_from_cli(**overrides: Any) -> Any:
    """Settings with command-line overrides on top (None values are ignored)."""
    return cli_settings(**overrides)


# --------------------------------------------------------------------------------------------------- ask
@app.command()
def ask(
    ctx: typer.Context,
    question: str | None = typer.Argument(
        None, help='The question to answer (omitted: read from stdin, e.g. echo "..." | conclave ask).'
    ),
    model: str | None = typer.Option(
        None, "--model", "-m", help="Model spec for every role (embedded, ollama/NAME, openai/NAME)."
    ),
    method: str | None = typer.Option(
        None, "--method", help=f"{method_help()}; coa options after a colon (coa:k=5,critic=false)."
    ),
    collection: str | None = typer.Option(None, "--collection", "-c", help="Knowledge collection to search."),
    source: str | None = typer.Option(
        None, "--source", help="Search only this ingested document (its path) of the collection."
    ),
    samples: int | None = typer.Option(None, "--samples", min=1, max=16, help="CoA: chains to sample and vote on."),
    trace: bool = typer.Option(False, "--trace", help="Print the agents' trace as it happens."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object: answer, model, usage, timings, trace."),
    as_jsonl: bool = typer.Option(
        False, "--jsonl", help="Stream every run event as one JSON line on stdout, ending with run_finished."
    ),
    no_log: bool = typer.Option(False, "--no-log", help="Do not add this answer to the log (`conclave logs`)."),
    system: str | None = typer.Option(
        None, "--system", "-s", help="Your instructions for the answer (tone, language, length)."
    ),
    option: list[str] = typer.Option(
        [], "--option", "-o", help="Model option KEY=VALUE: temperature, max_tokens, context_length (repeatable)."
    ),
    template: str | None = typer.Option(
        None, "--template", "-t", help="Start from a saved template (`conclave templates`); flags win."
    ),
    save: str | None = typer.Option(
        None,
        "--save",
        help="Save this command's system, model, method, collection and options as a template, and answer.",
    ),
    continue_last: bool = typer.Option(
        False,
        "--continue",
        "-C",
        help="Continue the last conversation (the latest logged answer, or the latest chat session).",
    ),
    session: str | None = typer.Option(
        None, "--session", help="Continue this conversation: a session id (or unique prefix) of `conclave sessions`."
    ),
) -> None:
    """Answer a question: the answer alone on stdout; the method and model before it, the token usage after it and
    the trace (--trace) on stderr, with the stage and elapsed time while it runs (in a terminal). Text piped on stdin
    with a question is its context (cat notes.md | conclave ask "Summarise the key points"). Every answer is logged
    (see `conclave logs`) unless --no-log.

    Exit status: 0 answered, 1 no answer or a failed run (--json: "ok": false), 2 bad usage, 130 interrupted."""
    from conclave.cli.render import AskProgress, TraceRenderer

    if as_json and as_jsonl:
        ctx.fail(
            "--json and --jsonl cannot be used together: --json prints one object at the end, --jsonl streams "
            "every event."
        )
    if continue_last and session is not None:
        ctx.fail("--continue and --session cannot be used together: --continue picks the last conversation.")
    quiet = as_json or as_jsonl
    renderer = TraceRenderer(out, err, trace=trace and not quiet, stream=not quiet)
    progress = AskProgress(err, enabled=not quiet and err.is_terminal)
    conversation = None
    try:
        context = None
        if question is None:
            question = _question_from_stdin(ctx)
        else:
            context = _context_from_stdin()
        _check_question_size(len(question.encode("utf-8", "surrogatepass")))

        from conclave.settings import load_settings
        from conclave.templates import Template, load_template, parse_options, save_template

        home = load_settings().home
        base = load_template(home, template) if template else Template()
        chosen = Template(
            system=system or base.system,
            model=model or base.model,
            method=method or base.method,
            collection=collection or base.collection,
            options={**base.options, **parse_options(option)},
        )
        if save:
            err.print(
                f"[dim]saved template {escape_markup(save)}: {escape_markup(save_template(home, save, chosen))}[/]"
            )
        method = chosen.method
        # A variant (coa:k=5) is resolved by build_context; settings hold only the plain method name.
        overrides: dict[str, Any] = {
            **chosen.settings_overrides(),
            "method": method if method and ":" not in method else None,
        }
        if samples is not None:
            overrides["coa"] = {**load_settings().coa.model_dump(), "samples": samples}
        settings = settings_from_cli(**overrides)
        method = _fit_method(method, settings)
        if context is not None:
            _check_context_use(method or settings.method, collection=collection, source=source)
        if source is not None:
            from conclave.tools.sources import find_source

            source = find_source(settings, settings.collection, source)
        from conclave.cli.conversation import open_conversation

        conversation = open_conversation(settings, session=session, continue_last=continue_last)
        history = conversation.history() if conversation is not None else []
        if conversation is not None and not quiet:
            err.print(f"[dim]conversation {escape_markup(conversation.id)} ({len(history)} earlier answer(s))[/]")

        def interrupted() -> None:
            progress.stop()
            _cancelled(streaming=renderer._streaming)

        with _exit_on_interrupt(interrupted):
            result = asyncio.run(
                _ask(
                    question,
                    settings,
                    renderer,
                    method,
                    progress=progress,
                    jsonl=as_jsonl,
                    source=source,
                    context=context,
                    history=history,
                )
            )
    except KeyboardInterrupt:
        progress.stop()
        _cancelled(streaming=renderer._streaming)
        raise  # only when _cancelled's exit was replaced (tests)
    finally:
        progress.stop()
    failure = result.pop("failure", None)
    result["session"] = conversation.id if conversation is not None else None
    if conversation is not None:
        _save_turn(conversation, result, failure)
    if not no_log and settings.log_answers:
        _log(settings, result, failure)
    if failure is not None:
        raise ConclaveError(failure["error"], hint=failure["hint"])
    if as_json:
        typer.echo(json.dumps(result, ensure_ascii=False))
    if not result["ok"]:
        if not quiet:  # --json says it with "ok": false and "error"; --jsonl with run_finished's "ok" and "reason"
            err.print(f"[bold red]error:[/] {escape_markup(result['error'] or 'no answer')}")
            err.print(
                "  [bold]fix:[/] see why with --trace; another method (--method cot) or a larger model "
                "(--model ollama/NAME) may answer"
            )
        raise typer.Exit(1)


def _save_turn(conversation: Any, result: dict[str, Any], failure: dict[str, Any] | None) -> None:
    """Add the question and its answer to the conversation; when the session cannot be written, one warning line on
    stderr (the answer stands, and is logged)."""
    try:
        conversation.save(result, failure)
    except ConclaveError as exc:
        fix = f"; fix: {exc.hint}" if exc.hint else ""
        err.print(
            f"[yellow]warning:[/] not saved to conversation {escape_markup(conversation.id)}: "
            f"{escape_markup(exc.message)}{escape_markup(fix)}"
        )
    finally:
        conversation.close()


def _log(settings: Any, result: dict[str, Any], failure: dict[str, Any] | None) -> None:
    """Add the answer to the log; when the log cannot be written, one warning line on stderr (the answer stands)."""
    from conclave.logs import log_answer, record_from_ask

    problem = log_answer(settings, record_from_ask(result, failure=failure))
    if problem is not None:
        fix = f"; fix: {problem.hint}" if problem.hint else ""
        err.print(
            f"[yellow]warning:[/] logging is off: {escape_markup(problem.message)}{escape_markup(fix)} "
            "(or pass --no-log)"
        )


def _cancelled(*, streaming: bool = False, exit: Any = os._exit) -> None:
    """Ctrl-C during ``ask``: one line, ``cancelled``, on stderr, and exit 130 at once.

    ``os._exit``: the interpreter is not torn down around a model thread still in native code (loading or generating),
    which can hang or crash it after the answer was abandoned; nothing of an unfinished ``ask`` needs saving."""
    # From a signal handler a stream may be mid-write on this very thread (RuntimeError: reentrant call).
    try:
        if streaming:
            sys.stdout.write("\n")
        sys.stdout.flush()
    except (OSError, ValueError, RuntimeError):
        pass
    try:
        sys.stderr.write("cancelled\n")
        sys.stderr.flush()
    except (OSError, ValueError, RuntimeError):
        pass
    exit(130)


@contextmanager
def _exit_on_interrupt(on_interrupt: Callable[[], None]) -> Iterator[None]:
    """Ctrl-C (SIGINT) calls ``on_interrupt`` right away instead of raising KeyboardInterrupt into the event loop.

    asyncio.run answers a KeyboardInterrupt by cancelling every task and waiting for them and for its worker threads:
    AutoGen's runtime then logs a traceback of its own (``task_done() called too many times``), and a model call
    in a worker thread holds the exit until it is done. ``on_interrupt`` exits without that (see :func:`_cancelled`).
    Only the main thread can take signals; elsewhere (and when a handler of someone else's is set) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread() or (
        signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    previous = signal.signal(signal.SIGINT, lambda _signum, _frame: on_interrupt())
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


MAX_QUESTION_BYTES = 32 * 1024
"""The longest question ``ask`` takes (UTF-8 bytes), from the command line or stdin: a question is sent to every
model call of a run and logged, and a long text is something to ingest and search, not to ask."""


def _check_question_size(size: int) -> None:
    """ConfigError when a question of ``size`` bytes is over :data:`MAX_QUESTION_BYTES`."""
    if size > MAX_QUESTION_BYTES:
        from conclave.errors import ConfigError

        raise ConfigError(
            f"the question is longer than {MAX_QUESTION_BYTES:,} bytes",
            hint="ask it in fewer words; for a long text, `conclave ingest` it and ask about it with --collection",
        )


MAX_CONTEXT_BYTES = 256 * 1024
"""The most text ``ask`` takes on stdin as its question's context (UTF-8 bytes): it is chunked and embedded for the run
(seconds per hundred kilobytes); a larger text is something to ingest once and ask about with --collection."""


def _piped_stdin() -> Any:
    """stdin's byte stream when something was piped or redirected into it (a pipe or a file), else None: a
    terminal, /dev/null, a closed or a missing stdin hold no text to read."""
    stdin = sys.stdin
    if stdin is None or stdin.closed:
        return None
    try:
        if stdin.isatty():
            return None
        mode = os.fstat(stdin.fileno()).st_mode
    except (OSError, ValueError, AttributeError):  # a replaced stdin (a test runner's) is read as a stream
        return getattr(stdin, "buffer", None)
    return stdin.buffer if stat.S_ISFIFO(mode) or stat.S_ISREG(mode) else None


def _context_from_stdin() -> str | None:
    """Text piped on stdin along with a question (``cat notes.md | conclave ask "..."``): the question's context, or
    None when nothing was piped; ConfigError over :data:`MAX_CONTEXT_BYTES` (no more than that and one byte is read).
    """
    stream = _piped_stdin()
    if stream is None:
        return None
    raw = stream.read(MAX_CONTEXT_BYTES + 1)
    if len(raw) > MAX_CONTEXT_BYTES:
        from conclave.errors import ConfigError

        raise ConfigError(
            f"the text piped on stdin is longer than {MAX_CONTEXT_BYTES:,} bytes",
            hint="`conclave ingest FILE --collection NAME` it once and ask with --collection NAME, "
            "or pipe a part of it (head -c 200000 FILE | conclave ask ...)",
        )
    text = raw.decode("utf-8", errors="replace")
    return text if text.strip() else None


def _fit_method(method: str | None, settings: Any) -> str | None:
    """The method to run: on a model known not to write chains, a default ``coa`` becomes the method that answers on
    it (and a chosen ``coa`` is run after a warning); either way one line on stderr says so before any model call."""
    from conclave.workflows.runner import method_for_model

    from conclave.models.clients import role_spec
    from conclave.settings import load_settings_with_origins

    spec = asyncio.run(role_spec(settings, "reasoner"))
    chosen = method is not None or load_settings_with_origins().origins.get("method", "default") != "default"
    fitted, note = method_for_model(method or settings.method, spec, chosen=chosen)
    if note is None:
        return method
    err.print(f"[yellow]{'warning' if chosen else 'note'}:[/] {escape_markup(note)}")
    return fitted


def _check_context_use(method: str, *, collection: str | None, source: str | None) -> None:
    """ConfigError when piped context would be ignored: a method that reads no documents, or a collection or document
    given as well (the piped text is what the run reads)."""
    from conclave.workflows.methods import searches_knowledge
    from conclave.workflows.runner import parse_method

    from conclave.errors import ConfigError

    name = parse_method(method)[0]
    if not searches_knowledge(name):
        raise ConfigError(
            f"--method {name} reads no documents, so the text piped on stdin would be ignored",
            hint="use --method rag (or coa, react) to answer from the piped text, or ask without piping",
        )
    if collection is not None or source is not None:
        flag = "--collection" if collection is not None else "--source"
        raise ConfigError(
            f"{flag} and text piped on stdin cannot be used together: the run reads the piped text",
            hint=f"leave out {flag} to answer from the piped text, or do not pipe to search the collection",
        )


def _question_from_stdin(ctx: typer.Context) -> str:
    """The question piped on stdin (``echo "..." | conclave ask``); a usage error when there is none, ConfigError
    when it is over the bound (no more than the bound and one byte is read)."""
    text = ""
    stdin = sys.stdin
    if stdin is not None and not stdin.closed and not stdin.isatty():
        raw = stdin.buffer.read(MAX_QUESTION_BYTES + 1)
        _check_question_size(len(raw))
        text = raw.decode("utf-8", errors="replace")
    if not text.strip():
        ctx.fail('Missing question: give it as an argument, or pipe it on stdin (echo "What is 2+2?" | conclave ask).')
    return text.strip()


async def _ask(
    question: str,
    settings: Any,
    renderer: Any,
    method: str | None = None,
    *,
    progress: Any = None,
    jsonl: bool = False,
    source: str | None = None,
    context: str | None = None,
    history: list[tuple[str, str]] | None = None,
) -> dict[str, Any]:
    """Run one question (searching only the document ``source`` when given, only the piped ``context`` when given,
    after the conversation's ``history``); the ``--json`` result, with ``failure`` ({error, hint}) when the run
    failed."""
    from conclave.workflows.runner import build_context, run_question, total_usage

    from conclave.events import collect

    if progress is not None:
        progress.start()
    if context is None:
        ctx = await build_context(question, settings, method=method, source=source, history=history)
    else:
        from conclave.tools.piped import PIPED_COLLECTION, piped_store

        ctx = await build_context(question, settings, method=method, collection=PIPED_COLLECTION, history=history)
        ctx.store = await asyncio.to_thread(piped_store, context, ctx.settings)
    events = []
    async for event in run_question(ctx):
        events.append(event)
        if jsonl:
            sys.stdout.write(json.dumps(event.to_dict(), ensure_ascii=False, default=str) + "\n")
            sys.stdout.flush()
        if progress is not None:
            progress.handle(event, renderer.handle)
        else:
            renderer.handle(event)
    run = collect(events)
    result: dict[str, Any] = {
        "ok": run.ok,
        "error": None if run.ok else run.error,
        "question": ctx.question,
        "answer": run.text,
        "value": run.value,
        "sources": [s.__dict__ for s in run.sources],
        "method": ctx.method,
        "model": ctx.models["reasoner"],
        "models": ctx.models,
        "usage": {"total": total_usage(run.usage), "agents": run.usage},
        "timings": {"seconds": round(run.seconds, 3)},
        "trace": [e.to_dict() for e in events],
    }
    if run.failure is not None:
        result["failure"] = {"error": run.failure.error, "hint": run.failure.hint}
    return result


# ------------------------------------------------------------------------------------------------ models
models_app = typer.Typer(
    help="List the models usable now: embedded, Ollama's (when it answers), configured "
    "OpenAI-compatible endpoints; `models default SPEC` sets the default.",
    invoke_without_command=True,
)
app.add_typer(models_app, name="models")


@models_app.command("default")
def models_default(
    spec: str = typer.Argument(..., help="Model spec: embedded, embedded:smollm2, ollama/NAME, openai/NAME."),
) -> None:
    """Make SPEC the default model (`model` in $CONCLAVE_HOME/settings.toml); every role without its own runs it."""
    from conclave.models.backends import parse_spec
    from conclave.settings import load_settings, set_toml_value

    parse_spec(spec)  # a spec that does not parse is refused before anything is written
    settings = load_settings()
    path = set_toml_value(settings.home / "settings.toml", "model", spec)
    out.print(f"default model: {escape_markup(spec)} (written to {escape_markup(path)})")
    shadow = load_settings()
    if shadow.model != spec:
        err.print(
            f"[yellow]note:[/] the effective model is still {escape_markup(str(shadow.model))}: a flag, "
            "CONCLAVE_MODEL or a .env sets it (see `conclave config show`)"
        )


@models_app.callback()
def models(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List the models usable now: embedded, Ollama's (when it answers), configured OpenAI-compatible endpoints."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.table import Table

    from conclave.models.discovery import list_models

    settings = settings_from_cli()
    entries = asyncio.run(list_models(settings))
    if as_json:
        typer.echo(json.dumps([e.__dict__ for e in entries]))
        return
    table = Table(title="Models (`embedded` runs the one marked *)", title_justify="left")
    table.add_column("spec")
    table.add_column("usable")
    table.add_column("size", justify="right")
    table.add_column("status")
    table.add_column("tokens/s", justify="right")
    table.add_column("detail", overflow="fold")
    for e in entries:
        marked = e.default and e.spec != "embedded"
        table.add_row(
            escape_markup(e.spec + (" *" if marked else "")),
            "[green]yes[/]" if e.available else "[red]no[/]",
            f"{e.size_bytes / 1e9:.2f} GB" if e.size_bytes else "",
            escape_markup(e.status),
            f"{e.tokens_per_s:.1f}" if e.tokens_per_s else "",
            escape_markup(e.detail),
        )
    out.print(table)


# ------------------------------------------------------------------------------------------------ config
@config_app.command("show")
def config_show(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Print the effective settings and where each value came from (secrets masked)."""
    from rich.table import Table

    from conclave.models import default_spec
    from conclave.settings import load_settings_with_origins

    loaded = load_settings_with_origins()
    settings = loaded.settings
    data = settings.redacted()
    # What an unset model means here and now (Ollama's first chat model when it answers, else embedded), and the
    # files the values can come from.
    automatic = asyncio.run(default_spec(settings))
    files = {"settings.toml": str(settings.home / "settings.toml"), ".env": str(Path.cwd() / ".env")}
    withheld = {
        w.key: {"value": w.shown, "from": w.source, "effect": w.effect, "remedy": w.remedy} for w in loaded.withheld
    }
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "settings": data,
                    "origins": loaded.origins,
                    "withheld": withheld,
                    "default_model": automatic,
                    "files": {k: {"path": v, "exists": Path(v).is_file()} for k, v in files.items()},
                },
                default=str,
            )
        )
        return
    table = Table(
        title="Effective settings (highest precedence: flags > CONCLAVE_* env > .env > settings.toml > default)",
        title_justify="left",
    )
    table.add_column("setting")
    table.add_column("value", overflow="fold")
    table.add_column("from")
    for key, value in data.items():
        origin = loaded.origins.get(key, "default")
        if isinstance(value, dict) and value:
            # One row per entry, each with its own origin: entries of one table may come from different sources.
            for sub, subval in value.items():
                table.add_row(
                    escape_markup(f"{key}.{sub}"),
                    escape_markup(json.dumps(subval, default=str)),
                    escape_markup(loaded.origins.get(f"{key}.{sub}", origin)),
                )
        else:
            shown = json.dumps(value, default=str)
            if key == "model" and value is None:
                shown = f"null (unset: {automatic}, the automatic default)"
            table.add_row(escape_markup(key), escape_markup(shown), escape_markup(origin))
    for w in loaded.withheld:
        table.add_row(
            escape_markup(w.key),
            escape_markup(f"withheld: {w.shown}"),
            escape_markup(f"{w.source} (not applied; to apply: {w.remedy})"),
        )
    out.print(table)
    out.print("Roles left null run on the model above.")
    for name, path in files.items():
        state = "exists" if Path(path).is_file() else "absent"
        out.print(f"{name}: {escape_markup(path)} ({state})")


# ------------------------------------------------------------------------------------------------- edge
def _register_subcommands() -> None:
    """Commands from other areas register themselves; a missing area must not break the rest."""
    for module in (
        "conclave.cli.knowledge",
        "conclave.cli.chat",
        "conclave.cli.evaluate",
        "conclave.cli.history",
        "conclave.cli.templates",
        "conclave.cli.listings",
        "conclave.cli.tune",
        "conclave.cli.trust",
        "conclave.cli.serve",
    ):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        mod.register(app)


_register_subcommands()


def _usage_error_types() -> tuple[type[BaseException], ...]:
    """Click's exception base class, and typer's own copy of it: typer 0.29 vendors click (``typer._click``), so a
    usage error (unknown command, bad option value) is typer's class there, click's with older typers."""
    found: list[type[BaseException]] = []
    for module in ("typer._click.exceptions", "click.exceptions"):
        try:
            cls = importlib.import_module(module).ClickException
        except (ImportError, AttributeError):
            continue
        if isinstance(cls, type) and issubclass(cls, BaseException) and cls not in found:
            found.append(cls)
    return tuple(found)


def _show_usage_error(exc: Any) -> None:
    """What typer prints for a usage error when it runs standalone: usage, the --help hint, the error."""
    if isinstance(getattr(exc, "message", None), str):
        exc.message = safe_text(exc.message)  # it may quote the command line: no escape sequences
    try:
        from typer.rich_utils import rich_format_error
    except ImportError:  # a typer without rich formatting: click's plain text
        exc.show()
        return
    rich_format_error(exc)


def main() -> None:
    """Entry point: run the app; ConclaveError -> one message + fix; usage errors -> usage + exit 2; Ctrl-C -> 130.

    Messages and hints may carry text from outside (paths, model specs, server replies): they are printed as text,
    never read as Rich markup, and without terminal escape sequences."""
    try:
        code = app(standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except ConclaveError as exc:
        if _DEBUG["on"]:
            raise
        err.print(f"[bold red]error:[/] {escape_markup(exc.message)}")
        if exc.hint:
            err.print(f"  [bold]fix:[/] {escape_markup(exc.hint)}")
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("\n[yellow]interrupted[/]")
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort as exc:
        if isinstance(exc.__cause__, KeyboardInterrupt):
            err.print("[yellow]interrupted[/]")
            sys.exit(130)
        err.print("aborted")
        sys.exit(1)
    except Exception as exc:  # click usage errors and the like
        if isinstance(exc, _usage_error_types()):
            _show_usage_error(exc)
            sys.exit(exc.exit_code)  # type: ignore[attr-defined]
        if _DEBUG["on"]:
            raise
        err.print(f"[bold red]error:[/] unexpected {escape_markup(type(exc).__name__)}: {escape_markup(exc)}")
        err.print("  [bold]fix:[/] run again with --debug for the traceback, and report it")
        sys.exit(1)
