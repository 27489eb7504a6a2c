"""CLI for scripted runs and evaluation: ``run``, ``workflow schema``, ``eval`` (+ ``compare``, ``export-traces``,
``export``), ``synth``.

``eval`` is a command group whose callback runs an evaluation when no subcommand follows, so both
``conclave eval --dataset ...`` and ``conclave eval compare A B`` work. Heavy imports happen inside the commands.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import shlex
import time
from pathlib import Path
from typing import Any, get_args, get_origin

import typer
from conclave.cli import cli_settings
from conclave.workflows.evaluation.options import CLI_FLAGS, NEGATED, EvalOptions
from rich.console import Console

from conclave.terminal import escape_markup as escape

out = Console(highlight=False, soft_wrap=True, emoji=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)


def clock(seconds: float | None) -> str:
    """``1:02:03`` (or ``4:05``), ``–`` when unknown."""
    if seconds is None:
        return "–"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _interrupted(run_id: str | None, command: str) -> typer.Exit:
    err.print(
        "\n[yellow]interrupted[/]"
        + (
            f" — finished items are saved; resume with: [bold]{escape(command)} --resume {escape(run_id)}[/]"
            if run_id
            else ""
        )
    )
    return typer.Exit(130)


# ---------------------------------------------------------------------------------------------------- eval

eval_app = typer.Typer(
    help="Evaluate methods x models on a data set (`conclave eval --dataset KIND:PATH ...`), compare runs, export traces.",
    invoke_without_command=True,
    no_args_is_help=False,
)


def _option_parameters() -> list[inspect.Parameter]:
    """One option per evaluation option (``workflows/evaluation/options.py``): its flags, help, default and bounds
    come from the field, so the command and a workflow's eval step cannot drift apart."""
    from annotated_types import Ge, Le

    params = []
    for name, field in EvalOptions.model_fields.items():
        bounds: dict[str, Any] = {}
        for rule in field.metadata:
            if isinstance(rule, Ge):
                bounds["min"] = rule.ge
            elif isinstance(rule, Le):
                bounds["max"] = rule.le
        annotation: Any
        default: Any
        text = field.description or ""
        if name in NEGATED:
            annotation, default, text = bool, False, NEGATED[name]
        elif field.annotation is bool:
            annotation, default = bool, field.default
        elif get_origin(field.annotation) is list:
            annotation, default, text = list[str], [], f"{text} (repeatable)"
        else:
            kinds = {a for a in get_args(field.annotation) if a is not type(None)} or {field.annotation}
            annotation = int if kinds == {int} else str
            default = None if field.is_required() else field.default
            if default is None:
                annotation = annotation | None
        option = typer.Option(default, *CLI_FLAGS[name], help=text, **bounds)
        params.append(
            inspect.Parameter(
                _param(name), inspect.Parameter.POSITIONAL_OR_KEYWORD, default=option, annotation=annotation
            )
        )
    return params


def _param(field: str) -> str:
    """The parameter of ``eval`` that sets evaluation option ``field``: named by its long flag (``--model``: model,
    ``--no-cache``: no_cache), so the metavars and the help read as the command line does."""
    return CLI_FLAGS[field][0].removeprefix("--").replace("-", "_")


def _eval_options(given: dict[str, Any]) -> dict[str, Any]:
    """The evaluation options given on the command line (the rest keep their defaults); a value outside a closed
    set gets the command's own words."""
    from conclave.errors import ConfigError

    values: dict[str, Any] = {}
    for name in EvalOptions.model_fields:
        value = given[_param(name)]
        if name in NEGATED:
            values[name] = not value
            continue
        if value is None or value == []:
            continue
        allowed = get_args(EvalOptions.model_fields[name].annotation)
        allowed = tuple(v for a in allowed for v in (get_args(a) or (a,)) if isinstance(v, str))
        if allowed and value not in allowed:
            flag = CLI_FLAGS[name][0]
            raise ConfigError(f"unknown {name} {value!r}", hint="use " + " or ".join(f"{flag} {v}" for v in allowed))
        values[name] = value
    return values


@eval_app.callback()
def eval_main(
    ctx: typer.Context,
    address: str | None = typer.Option(
        None,
        "--address",
        help="With --executor ray: the cluster (HOST:PORT or ray://HOST:PORT; default: a local Ray, or ray_address).",
    ),
    endpoint: list[str] = typer.Option(
        [],
        "--endpoint",
        help="An OpenAI-compatible base URL serving the openai/ model(s); repeat it for a pool (openai_base_urls).",
    ),
    resume: str | None = typer.Option(
        None, "--resume", help="Continue the run with this id (its recorded configuration wins)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    **options: Any,
) -> None:
    """Run methods x models over the same items; writes items.jsonl, summary.json, report.md, report.html."""
    if ctx.invoked_subcommand is not None:
        return
    if options["dataset"] is None and resume is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(0)
    from conclave.workflows.evaluation import EvalConfig

    from conclave.errors import ConfigError

    values = _eval_options(options)
    if address is not None and values.get("executor", "local") != "ray":
        raise ConfigError("--address names a Ray cluster", hint="add --executor ray, or leave --address out")
    config = EvalConfig.model_validate({"dataset": "jsonl:-", **values})
    dataset, method, model = options["dataset"], options["method"], options["model"]
    if resume and (dataset or method or model):
        err.print(f"[dim]resuming {escape(resume)}: its recorded data set, methods and models are used[/]")
    settings = cli_settings(ray_address=address, openai_base_urls=endpoint or None)
    started = time.perf_counter()
    state: dict[str, Any] = {"run_id": resume}
    try:
        result = asyncio.run(_run_eval(config, settings, resume, state, quiet=as_json))
    except KeyboardInterrupt:
        raise _interrupted(state.get("run_id"), "conclave eval") from None
    seconds = time.perf_counter() - started
    summary = result.summary
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "run_id": result.run_id,
                    "run_dir": str(result.run_dir),
                    "seconds": round(seconds, 2),
                    "summary": summary,
                },
                default=str,
            )
        )
    else:
        _print_summary(summary, result, seconds)
    if summary["units"] and summary["failed_units"] == summary["units"]:
        from conclave.errors import BackendError, ConclaveError

        errors = [r for r in result.records if r.status == "error"]
        if not errors:  # every item ran and none produced an answer: nothing to fix in the backend
            first = next((r.error for r in result.records if r.error), "no answer")
            raise ConclaveError(
                f"no item got an answer ({first})",
                hint=f"see why in the traces: conclave view {result.run_id}; another method or a "
                "larger model may answer",
            )
        first = next((r.error for r in errors if r.error), "unknown error")
        raise BackendError(
            f"every item failed: {first}",
            hint=f"fix the backend and resume with `conclave eval --resume {result.run_id}`",
        )


_ctx, *_own = [p for p in inspect.signature(eval_main).parameters.values() if p.kind is not p.VAR_KEYWORD]
eval_main.__signature__ = inspect.Signature([_ctx, *_option_parameters(), *_own])  # type: ignore[attr-defined]


async def _run_eval(config: Any, settings: Any, resume: str | None, state: dict[str, Any], *, quiet: bool) -> Any:
    from conclave.workflows.evaluation import run_eval
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("acc {task.fields[acc]}"),
        TimeElapsedColumn(),
        TextColumn("left {task.fields[eta]}"),
        console=err,
        transient=False,
        disable=quiet,
    )
    task_id = progress.add_task("eval", total=None, acc="–", eta="–")

    def on_start(run_id: str, run_dir: Path) -> None:
        state["run_id"] = run_id
        if not quiet:
            err.print(f"run [bold]{escape(run_id)}[/] in {escape(run_dir)}")

    def on_progress(update: Any) -> None:
        acc = "–" if update.accuracy is None else f"{100 * update.accuracy:.1f}%"
        progress.update(task_id, total=update.total, completed=update.done, acc=acc, eta=clock(update.eta))

    def on_note(message: str) -> None:
        if not quiet:
            progress.console.print(f"[dim]{escape(message)}[/]")

    with progress:
        return await run_eval(
            config, settings, resume=resume, on_progress=on_progress, on_note=on_note, on_start=on_start
        )


def _print_summary(summary: dict[str, Any], result: Any, seconds: float) -> None:
    from rich.table import Table

    table = Table(title=f"Evaluation {escape(result.run_id)}", title_justify="left")
    for column in ("method", "model", "accuracy", "95% CI", "n", "latency p50", "tokens/item", "failed"):
        table.add_column(column)
    for cell in summary["cells"]:
        acc = "–" if cell["accuracy"] is None else f"{100 * cell['accuracy']:.1f}%"
        lo, hi = cell["ci95"]
        p50 = cell["latency"]["p50"]
        table.add_row(
            escape(cell["method"]),
            escape(cell["model"]),
            acc,
            f"{100 * lo:.0f}–{100 * hi:.0f}%",
            str(cell["scored"]),
            "–" if p50 is None else f"{p50:.2f}s",
            f"{cell['tokens']['total_mean'] or 0:.0f}",
            str(cell["failed"]),
        )
    out.print(table)
    for comp in summary["comparisons"]:
        out.print(
            f"{escape(comp['a'])} vs {escape(comp['b'])}: won {comp['a_only']}, lost {comp['b_only']} of {comp['paired']} "
            f"paired (McNemar p = {comp['p_value']:.3g})"
        )
    calls = sum(result.backend_calls.values())
    cache_note = " — served entirely from the cache" if calls == 0 and summary["units"] else ""
    out.print(f"backend calls this run: {calls}{cache_note}; {seconds:.1f}s")
    out.print(f"report: {escape(result.run_dir / 'report.html')}")


_RUN_SELECTOR_HELP = (
    "A run id (or folder) as `conclave eval` printed it; RUN\\[:METHOD\\[@MODEL]] picks one of its result sets, "
    "e.g. RUN:coa or RUN:cot@embedded."
)


@eval_app.command("compare")
def eval_compare(
    run_a: str = typer.Argument(..., metavar="RUN_A", help=_RUN_SELECTOR_HELP),
    run_b: str = typer.Argument(..., metavar="RUN_B", help=_RUN_SELECTOR_HELP),
    as_json: bool = typer.Option(False, "--json", help='Print JSON (the flipped items under "flips").'),
) -> None:
    """Paired comparison of two runs on the same items: won, lost, McNemar's exact test, and every item that
    flipped (right on one side, wrong on the other) with its question and both answers."""
    from conclave.workflows.evaluation import compare_runs

    comparisons = compare_runs(cli_settings(), run_a, run_b)
    if as_json:
        typer.echo(json.dumps([c.to_dict() for c in comparisons]))
        return

    # One block per pairing, the result sets written out whole: run ids share a long date prefix, and a table
    # narrow enough for a terminal cut them to "eval-…" on both sides.
    def pct(value: float | None) -> str:
        return "–" if value is None else f"{100 * value:.1f}%"

    for i, c in enumerate(comparisons):
        if i:
            out.print()
        out.print(f"[bold]A[/] {escape(c.a)}")
        out.print(f"[bold]B[/] {escape(c.b)}")
        out.print(
            f"  paired {c.paired} · A won {c.a_only} · A lost {c.b_only} · both right {c.both_right} · "
            f"both wrong {c.both_wrong} · accuracy A {pct(c.a_accuracy)}, B {pct(c.b_accuracy)} · "
            f"McNemar exact p = {c.p_value:.3g}"
        )
        out.print(f"  {escape(c.verdict())}")
        _print_flips(c.flips)


def _print_flips(flips: Any) -> None:
    """Each flipped item: which side got it right, its id and question, and both answers (one line each)."""
    if not flips:
        return
    out.print(f"  flipped items ({len(flips)}):")
    for flip in flips:
        won = "A right, B wrong" if flip.winner == "A" else "B right, A wrong"
        out.print(f"  [bold]{escape(flip.item_id)}[/] ({won}) {escape(_one_line(flip.question, 160))}")
        out.print(f"      gold: {escape(_one_line(' | '.join(flip.gold), 80))}")
        out.print(f"      A: {escape(_one_line(flip.a_answer, 160))}")
        out.print(f"      B: {escape(_one_line(flip.b_answer, 160))}")


def _one_line(text: str, limit: int) -> str:
    from conclave.terminal import clip

    return clip(" ".join(str(text).split()), limit)


@eval_app.command("export-traces")
def eval_export(
    run: list[str] = typer.Argument(None, help="Run id(s) or folder(s) whose accepted chains to export."),
    gsm8k: list[Path] = typer.Option(
        [], "--gsm8k", help="GSM8K-format training JSONL whose answers are converted to chains (repeatable)."
    ),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Output JSONL (default with one run: RUN/chains.jsonl)."
    ),
    only_correct: bool = typer.Option(False, "--only-correct", help="Only run items whose answer scored correct."),
    no_system: bool = typer.Option(False, "--no-system", help="Leave out the system message."),
    form: str = typer.Option(
        "text",
        "--form",
        help="Chain form: text ([48 / 2 = y1]), json, program (Python assignments), or cot (GSM8K's own rationale).",
    ),
    limit: int | None = typer.Option(None, "--limit", "-n", min=1, help="At most this many chains per training file."),
) -> None:
    """CoA chains as chat-format JSONL (question -> chain) for fine-tuning: accepted chains of evaluation runs and
    GSM8K training answers converted to chains."""
    from conclave.workflows.evaluation import export_chains
    from conclave.workflows.evaluation.runs import find_run

    from conclave.errors import ConfigError

    settings = cli_settings()
    folders = [find_run(settings, r) for r in run or []]
    if output is None:
        if len(folders) != 1 or gsm8k:
            raise ConfigError("where should the chains go?", hint="give --output FILE.jsonl")
        output = folders[0] / "chains.jsonl"
    report = export_chains(
        output, runs=folders, gsm8k=gsm8k, only_correct=only_correct, with_system=not no_system, form=form, limit=limit
    )
    out.print(f"exported {report.exported} chain(s) to {escape(report.path)}")
    if folders:
        out.print(
            f"left out of the runs: {report.without_chain} without a chain (not coa), {report.not_accepted} "
            f"not accepted, {report.not_correct} not correct"
        )
    if gsm8k:
        out.print(
            f"converted from training data: {report.converted}; {report.not_convertible} item(s) without "
            "usable calculator notes left out"
        )


@eval_app.command("export")
def eval_export_run(
    run: str = typer.Argument(..., metavar="RUN", help=_RUN_SELECTOR_HELP),
    fmt: str = typer.Option(
        ..., "--format", "-f", help="inspect (Inspect AI eval logs, for `inspect view`) or csv (one row per item)."
    ),
    output: Path | None = typer.Option(
        None,
        "--output",
        "-o",
        help="A file (csv; inspect with one result set: .eval or .json) or, for inspect, a folder for one log per "
        "result set (default: RUN/inspect/ or RUN/results.csv).",
    ),
) -> None:
    """A run in the formats other tools read: Inspect AI eval logs (samples with input, target, output, scores,
    usage, and the chain as metadata) or CSV (one row per item and method)."""
    from conclave.workflows.evaluation.interop import export_run
    from conclave.workflows.evaluation.runs import find_run

    name, _, selector = run.partition(":")
    result = export_run(find_run(cli_settings(), name), fmt.strip().lower(), output, selector=selector or None)
    for path in result.paths:
        out.print(f"wrote {escape(path)}")
    note = (
        f"; {result.skipped_lines} line(s) of items.jsonl that are not results left out" if result.skipped_lines else ""
    )
    out.print(f"{result.samples} result(s){note}")
    if fmt.strip().lower() == "inspect":
        out.print(f"view: inspect view --log-dir {escape(result.paths[0].parent)}")


# ------------------------------------------------------------------------------------------------ workflows

workflow_app = typer.Typer(help="Workflow files (see `conclave run`).", no_args_is_help=True)


@workflow_app.command("schema")
def workflow_schema() -> None:
    """Print the JSON schema of workflow YAML files."""
    from conclave.workflows.files.schema import workflow_json_schema

    typer.echo(json.dumps(workflow_json_schema(), indent=2))


@workflow_app.command("validate")
def workflow_validate(path: Path = typer.Argument(..., help="Workflow YAML file.")) -> None:
    """Check a workflow file; errors point at file:line:column."""
    from conclave.workflows.files.schema import load_workflow

    workflow = load_workflow(path)
    out.print(f"{escape(path)}: valid ({len(workflow.steps)} steps: {escape(', '.join(workflow.step_ids()))})")


def run(
    workflow: Path | None = typer.Argument(None, help="Workflow YAML file (omit with --resume)."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Validate and show the plan, every endpoint and every path; run nothing."
    ),
    resume: str | None = typer.Option(
        None, "--resume", help="Continue this workflow run: finished steps and items are skipped."
    ),
    allow_paths: list[Path] = typer.Option(
        [],
        "--allow-paths",
        help="Also let the workflow read files under this folder (repeatable); by default it reads only under its own folder.",
    ),
    allow_endpoint_overrides: bool = typer.Option(
        False,
        "--allow-endpoint-overrides",
        help="Let the workflow's settings choose endpoints and keys (openai_base_url, ollama_host, ...).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the step outputs as JSON."),
) -> None:
    """Run a scripted workflow: ingest, ask, batch, synthesize, eval and report steps.

    A workflow file is untrusted (SECURITY.md): it cannot change where requests and keys go, nor read outside its own
    folder, unless you allow it with the options below. `--dry-run` lists what it would touch."""
    from conclave.workflows.files.run import run_workflow

    if workflow is None and resume is None:
        from conclave.errors import ConfigError

        raise ConfigError("no workflow file given", hint="conclave run WORKFLOW.yaml (or --resume RUN_ID)")
    state: dict[str, Any] = {"run_id": resume}

    def on_start(run_id: str, run_dir: Path) -> None:
        state["run_id"] = run_id
        if not as_json:
            err.print(f"run [bold]{escape(run_id)}[/] in {escape(str(run_dir))}")

    def on_step(plan: Any, status: str) -> None:
        if as_json:
            return
        detail = json.dumps({k: v for k, v in plan.args.items() if v not in (None, [], {}, False)}, default=str)
        err.print(
            f"[bold]{escape(plan.id)}[/] ({escape(plan.kind)}) {escape(status)}"
            + (f"  [dim]{escape(detail)}[/]" if status in ("planned", "running") else "")
        )

    def on_note(message: str) -> None:
        if not as_json:
            err.print(f"  [dim]{escape(message)}[/]")

    settings = cli_settings()
    try:
        result = asyncio.run(
            run_workflow(
                workflow,
                settings,
                resume=resume,
                dry_run=dry_run,
                on_note=on_note,
                on_step=on_step,
                on_start=on_start,
                allow_paths=allow_paths,
                allow_endpoint_overrides=allow_endpoint_overrides,
            )
        )
    except KeyboardInterrupt:
        # The workflow file again: a resumed run reads under the file's folder only when it is given (SECURITY.md).
        command = f"conclave run {shlex.quote(str(workflow))}" if workflow is not None else "conclave run"
        raise _interrupted(state.get("run_id"), command) from None
    access = result.access
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "run_id": result.run_id,
                    "run_dir": str(result.run_dir) if result.run_dir else None,
                    "dry_run": dry_run,
                    "steps": [p.__dict__ for p in result.steps],
                    "access": access.to_dict() if access else None,
                    "outputs": result.outputs,
                    "skipped": result.skipped,
                },
                default=str,
            )
        )
    elif dry_run:
        for line in access.lines() if access else []:
            out.print(escape(line))
        if access is None or not (
            access.missing() or access.blocked() or (access.endpoint_overrides and not allow_endpoint_overrides)
        ):
            out.print(
                f"{escape(str(workflow))}: valid; {len(result.steps)} step(s) would run (dry run: nothing was run)"
            )
    else:
        out.print(
            f"workflow finished in {result.seconds:.1f}s ({len(result.skipped)} step(s) skipped as finished): "
            f"{escape(str(result.run_dir))}"
        )
    if dry_run and access is not None:
        from conclave.errors import WorkflowError

        if access.endpoint_overrides and not allow_endpoint_overrides:
            raise WorkflowError(
                f"the workflow sets {', '.join(access.endpoint_overrides)}: a real run refuses that",
                hint="remove them, or run with --allow-endpoint-overrides if you trust the file",
            )
        if access.blocked():
            first = access.blocked()[0]
            raise WorkflowError(
                f"{len(access.blocked())} path(s) lie outside the workflow's folder, e.g. "
                f"{first.path}: a real run refuses them",
                hint="move the files into the workflow's folder, or pass --allow-paths DIR",
            )
        if access.missing():
            first = access.missing()[0]
            raise WorkflowError(
                f"{len(access.missing())} path(s) do not exist, e.g. {first.step}.{first.field}: "
                f"{first.path}: a real run would stop at that step",
                hint="fix the path in the workflow file (relative paths start at the file's folder)",
            )


# ---------------------------------------------------------------------------------------------------- synth


def synth(
    collection: str | None = typer.Option(
        None, "--collection", "-c", help="Collection whose chunks to use (default: the configured one)."
    ),
    n: int = typer.Option(50, "-n", "--count", min=1, max=10000, help="Pairs to keep."),
    output: Path = typer.Option(
        ...,
        "--output",
        "-o",
        help="The JSONL file of kept pairs (question, answer, gold_ids); its summary goes beside it with the "
        "extension .summary.json (-o qa.jsonl: qa.summary.json).",
    ),
    model: str | None = typer.Option(None, "--model", "-m", help="Model that writes and answers the questions."),
    judge: str | None = typer.Option(None, "--judge", help="Model that rates the pairs (default: the judge role)."),
    per_chunk: int = typer.Option(2, "--per-chunk", min=1, max=5, help="Questions to ask per chunk."),
    min_similarity: float = typer.Option(
        0.45, "--min-similarity", min=0.0, max=1.0, help="Embedding similarity of question+answer to its chunk."
    ),
    min_rating: int = typer.Option(4, "--min-rating", min=1, max=5, help="Lowest judge rating kept."),
    seed: int = typer.Option(0, "--seed", help="Chunk sampling seed."),
    max_attempts: int | None = typer.Option(
        None, "--max-attempts", min=1, help="Questions to try before giving up (default: 5 per pair, at least 20)."
    ),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not use the LLM response cache."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON (progress still goes to stderr)."),
) -> None:
    """Synthesize question-answer pairs from a collection's chunks, keeping only grounded ones.

    Writes two files: the kept pairs, one JSON object per line, to --output as they come (so Ctrl-C keeps them), and
    beside it a summary with the extension .summary.json (-o qa.jsonl: qa.summary.json) of why pairs were rejected and
    why it stopped. Progress (questions checked, kept, rejected by which check) shows on stderr."""
    from conclave.workflows.synth import SynthConfig, synthesize

    settings = cli_settings(cache=False if no_cache else None)
    config = SynthConfig(
        collection=settings.collection if collection is None else collection,
        n=n,
        questions_per_chunk=per_chunk,
        min_similarity=min_similarity,
        min_rating=min_rating,
        seed=seed,
        model=model,
        judge=judge,
        max_attempts=max_attempts,
    )
    started = time.monotonic()

    def on_progress(report: Any) -> None:
        reasons = ", ".join(f"{escape(r)} {c}" for r, c in report.rejected.most_common(3))
        err.print(
            f"[dim]{time.monotonic() - started:5.0f}s  question {report.attempts}/{config.attempt_limit}: "
            f"kept {report.kept}/{report.wanted}, rejected {sum(report.rejected.values())}"
            + (f" ({reasons})" if reasons else "")
            + "[/]"
        )

    try:
        report = asyncio.run(synthesize(settings, config, output, on_progress=on_progress))
    except KeyboardInterrupt:
        summary = output.with_suffix(".summary.json")
        err.print(
            f"\n[yellow]interrupted[/]: the pairs kept so far are in {escape(output)} (summary: {escape(summary)})"
        )
        raise typer.Exit(130) from None
    if as_json:
        typer.echo(json.dumps(report.to_dict()))
    else:
        out.print(
            f"kept {report.kept} pair(s) from {report.chunks_used} chunk(s) of {escape(config.collection)} "
            f"({report.attempts} question(s) checked): {escape(report.path)}"
        )
        if report.rejected:
            out.print(
                "rejected: " + ", ".join(f"{escape(reason)} {count}" for reason, count in report.rejected.most_common())
            )
        if report.kept < n:
            why = {
                "attempts": f"stopped after {report.attempts} questions (--max-attempts)",
                "chunks": "every chunk was used",
            }.get(report.stopped, report.stopped)
            out.print(
                f"[yellow]fewer than {n} pairs passed the filters[/]: {why} "
                "(lower --min-rating/--min-similarity, raise --max-attempts, or ingest more)"
            )
    if report.kept == 0:
        raise typer.Exit(1)


# ----------------------------------------------------------------------------------------------------- view


def view(
    run: str = typer.Argument(..., help="Run id (as `conclave eval` printed it) or the path of a run folder."),
    no_open: bool = typer.Option(False, "--no-open", help="Print the report's path; do not open a browser."),
    serve: bool = typer.Option(
        False,
        "--serve",
        help="Serve the report on 127.0.0.1 until Ctrl-C (for a browser that cannot read local files).",
    ),
    port: int = typer.Option(0, "--port", min=0, max=65535, help="Port for --serve (default: any free port)."),
) -> None:
    """Open a run's report.html: every item opens to its full question, answer, scores and trace."""
    import webbrowser

    from conclave.workflows.evaluation.runs import find_run

    report = report_path(find_run(cli_settings(), run))
    if not serve:
        out.print(escape(report))
        if not no_open and not webbrowser.open(report.resolve().as_uri()):
            err.print("[dim]no browser found: open the file above (or use --serve)[/]")
        return
    server = report_server(report, port)
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    out.print(f"serving {escape(report)} at {escape(url)} (Ctrl-C stops)")
    if not no_open:
        webbrowser.open(url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        err.print("[dim]stopped[/]")
    finally:
        server.server_close()


def report_path(folder: Path) -> Path:
    """The run's ``report.html``, rebuilt from ``items.jsonl`` when it is missing or older (an interrupted or resumed
    evaluation); a workflow run's newest eval or report step's. ConfigError when the run has none.

    Viewing writes only into a run folder of your own (the safe writer: never through a link or a planted temporary
    file); a run folder someone else owns, or one that cannot be written, gets its report rebuilt in a private
    temporary folder instead (SECURITY.md: run folders)."""
    from conclave.workflows.evaluation.records import latest_samples

    from conclave.errors import ConfigError

    items = folder / "items.jsonl"
    report = folder / "report.html"
    if items.is_file() and (not report.is_file() or report.stat().st_mtime < items.stat().st_mtime):
        return _rebuild_report(folder, latest_samples(items))
    if report.is_file():
        return report
    nested = sorted(folder.glob("steps/*/report.html"), key=lambda p: p.stat().st_mtime)
    if nested:
        return nested[-1]
    raise ConfigError(
        f"run {folder.name} has no report (no report.html, no items.jsonl)",
        hint="reports come from `conclave eval` runs and workflows with an eval or report step",
    )


def _owns(folder: Path) -> bool:
    """Whether ``folder`` is a real folder (not a link) that belongs to this user."""
    import os
    import stat

    try:
        info = os.lstat(folder)
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid()


def _rebuild_report(folder: Path, records: Any) -> Path:
    import tempfile

    from conclave.workflows.evaluation import runs
    from conclave.workflows.evaluation.report import write_reports

    from conclave.errors import ConclaveError

    if _owns(folder):
        try:
            write_reports(folder, records, run_id=folder.name)
            return folder / "report.html"
        except ConclaveError:
            pass  # a read-only copy of a run: render it elsewhere
    private = Path(tempfile.mkdtemp(prefix=f"conclave-view-{folder.name[:40]}-"))
    manifest = folder / "manifest.json"
    if manifest.is_file():  # the report's header (data set, configuration) comes from it
        runs.write_json(private / "manifest.json", runs.read_json(manifest))
    write_reports(private, records, run_id=folder.name)
    err.print(f"[dim]report rebuilt outside the run folder (not yours, or not writable): {escape(private)}[/]")
    return private / "report.html"


def report_server(report: Path, port: int = 0) -> Any:
    """An HTTP server on 127.0.0.1 that serves ``report`` and nothing else (not the run folder around it)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if self.path.split("?", 1)[0] not in ("/", "/report.html"):
                self.send_error(404, "only the report is served here")
                return
            body = report.read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
            pass

    try:
        return ThreadingHTTPServer(("127.0.0.1", port), Handler)
    except OSError as exc:
        from conclave.errors import ConfigError

        raise ConfigError(
            f"cannot serve on 127.0.0.1:{port}: {exc.strerror or exc}",
            hint="pick another --port, or leave it out for any free one",
        ) from exc


def register(app: typer.Typer) -> None:
    """Add ``run``, ``workflow``, ``eval``, ``synth`` and ``view`` to the main app."""
    app.command("run")(run)
    app.add_typer(workflow_app, name="workflow")
    app.add_typer(eval_app, name="eval")
    app.command("synth")(synth)
    app.command("view")(view)
