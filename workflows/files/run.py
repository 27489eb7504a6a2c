"""Run a workflow file: one run folder with a manifest, per-step outputs, resumable step by step and item by item.

Layout of ``$CONCLAVE_HOME/runs/<run id>/``: ``workflow.yaml`` (the file as run), ``run.json`` (where it came from),
``manifest.json``, ``steps.jsonl`` (one fsynced line per finished step, with its outputs) and ``steps/<id>/`` (each
step's files). ``--resume`` re-reads the stored workflow, skips finished steps, and resumes the unfinished one where
it stopped (batch answers and eval items are appended as they finish).
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conclave.workflows.evaluation import runs
from conclave.workflows.evaluation.cache import CacheSet, ClientFactory
from conclave.workflows.files.access import Access, PathPolicy, describe_access, refuse_endpoint_overrides
from conclave.workflows.files.schema import REFERENCE, Workflow, load_workflow, parse_workflow, step_kind
from pydantic import ValidationError

from conclave import fileio, nesting
from conclave.errors import ConclaveError, ConfigError, WorkflowError
from conclave.settings import AGENT_ROLES, ROLES, Settings

__all__ = ["StepPlan", "WorkflowResult", "plan_workflow", "run_workflow", "workflow_settings"]

Note = Callable[[str], None]


@dataclass(frozen=True)
class StepPlan:
    """One step as it will run."""

    id: str
    kind: str
    args: dict[str, Any]


@dataclass
class WorkflowResult:
    """A finished (or dry-run) workflow."""

    run_id: str | None
    run_dir: Path | None
    steps: list[StepPlan]
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0
    access: Access | None = None


def workflow_settings(
    workflow: Workflow, settings: Settings, source: str = "workflow", *, allow_endpoint_overrides: bool = False
) -> Settings:
    """The settings a workflow runs with: its overrides, models and collection on top of ``settings``.

    A workflow that sets an endpoint or a credential is refused unless ``allow_endpoint_overrides``.
    """
    from conclave.settings import Settings as SettingsModel

    if "mcp_servers" in workflow.settings:
        # Not even with --allow-endpoint-overrides: an MCP server is a program the run would start.
        raise WorkflowError(
            f"{source}: settings.mcp_servers: a workflow file cannot name MCP servers (they start programs)",
            hint="configure them in $CONCLAVE_HOME/settings.toml; the workflow's chains can then use their tools",
        )
    if not allow_endpoint_overrides:
        refuse_endpoint_overrides(workflow.settings, source)
    data = settings.model_dump()
    data.update(workflow.settings)
    roles = dict(data.get("roles") or {})
    for role in ROLES:
        spec = getattr(workflow.models, role)
        if spec:
            roles[role] = spec
    data["roles"] = roles
    if workflow.models.default:
        data["model"] = workflow.models.default
    if workflow.collection:
        data["collection"] = workflow.collection
    try:
        return SettingsModel.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise WorkflowError(
            f"{source}: settings.{where}: {err['msg']}", hint="fix the workflow's settings block"
        ) from exc


def plan_workflow(workflow: Workflow) -> list[StepPlan]:
    """The steps in order, with their ids and arguments (references still unresolved)."""
    return [
        StepPlan(sid, step_kind(step) or "?", getattr(step, step_kind(step) or "").model_dump())
        for sid, step in zip(workflow.step_ids(), workflow.steps, strict=True)
    ]


def _resolve(value: Any, outputs: dict[str, dict[str, Any]]) -> Any:
    """Substitute ``${steps.ID.FIELD}`` with earlier outputs (validated at load time, so they exist)."""
    if isinstance(value, str):
        whole = REFERENCE.fullmatch(value.strip())
        if whole:
            return outputs[whole.group(1)][whole.group(2)]
        return REFERENCE.sub(lambda m: str(outputs[m.group(1)][m.group(2)]), value)
    if isinstance(value, dict):
        return {k: _resolve(v, outputs) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, outputs) for v in value]
    return value


# ---------------------------------------------------------------------------------------------------- steps


class _Runner:
    def __init__(
        self,
        workflow: Workflow,
        settings: Settings,
        run_dir: Path,
        run_id: str,
        policy: PathPolicy,
        note: Note,
        client_factory: ClientFactory | None,
        on_eval_progress: Callable[[Any], None] | None,
        *,
        resume_command: str = "",
    ):
        self.workflow = workflow
        self.settings = settings
        self.run_dir = run_dir
        self.run_id = run_id
        self.policy = policy
        self.note = note
        self.caches = CacheSet(settings, enabled=settings.cache, factory=client_factory)
        self.client_factory = client_factory
        self.on_eval_progress = on_eval_progress
        self.resume_command = resume_command or f"conclave run --resume {run_id}"

    def step_dir(self, step_id: str) -> Path:
        """The step's folder in the run folder; a ``steps`` or step folder that is a link out of it is refused (a
        resumed run folder is untrusted: its files must not steer where the run writes)."""
        folder = self.run_dir / "steps" / step_id
        fileio.check_inside(folder, self.run_dir)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise runs.RunFolderError(
                f"cannot create {folder}: {exc.strerror or exc}",
                hint=f"free disk space or fix permissions, then resume with: {self.resume_command}",
            ) from exc
        fileio.check_inside(folder, self.run_dir)
        return folder

    async def clients(self) -> dict[str, Any]:
        from conclave.models import role_clients

        return await role_clients(self.settings, self.caches.client, AGENT_ROLES)

    async def answer(
        self, question: str, method: str | None, collection: str | None, source: str | None = None
    ) -> dict[str, Any]:
        from conclave.workflows.runner import build_context, run_question

        from conclave.events import AnswerDelta, collect

        ctx = await build_context(
            question,
            self.settings,
            method=method,
            collection=collection,
            clients=await self.clients(),
            source=await self.source_of(source, collection),
        )
        events = [e async for e in run_question(ctx) if not isinstance(e, AnswerDelta)]
        run = collect(events)
        return {
            "question": ctx.question,
            "method": ctx.method,
            "models": ctx.models,
            "answer": run.text,
            "value": run.value,
            "sources": [s.__dict__ for s in run.sources],
            # No answer is not ok either (workflows.runner.answer_problem): the run's own verdict.
            "ok": run.ok,
            "error": None if run.ok else run.error,
            "seconds": round(run.seconds, 3),
            "usage": run.usage,
            "trace": [e.to_dict() for e in events],
        }

    async def ingest(self, step_id: str, args: dict[str, Any]) -> dict[str, Any]:
        from conclave.tools.ingest import ingest

        collection = self.settings.collection if args["collection"] is None else args["collection"]
        paths = [self.policy.check(p, f"{step_id}: ingest path") for p in args["paths"]]
        report = await asyncio.to_thread(
            ingest,
            paths,
            collection,
            self.settings,
            include=args["include"],
            exclude=args["exclude"],
            prune=args["prune"],
            confine_to=self.policy.roots,
        )
        runs.write_json(self.step_dir(step_id) / "ingest.json", report.to_dict(), run_id=self.run_id)
        self.note(
            f"{step_id}: {report.files_ingested} file(s) ingested, {report.files_unchanged} unchanged, "
            f"{report.chunks_total} chunks in {collection}"
        )
        return {"collection": collection, "chunks": report.chunks_total, "files": report.files_seen}

    async def source_of(self, given: str | None, collection: str | None) -> str | None:
        """The stored source of a step's ``source:`` (a path relative to the workflow file), checked to be ingested."""
        if given is None:
            return None
        from conclave.tools.sources import find_source

        return await asyncio.to_thread(
            find_source,
            self.settings,
            self.settings.collection if collection is None else collection,
            given,
            base=self.policy.base,
        )

    async def ask(self, step_id: str, args: dict[str, Any]) -> dict[str, Any]:
        result = await self.answer(args["question"], args["method"], args["collection"], args.get("source"))
        path = self.step_dir(step_id) / "answer.json"
        runs.write_json(path, result, run_id=self.run_id)
        if not result["ok"]:
            raise WorkflowError(
                f"step {step_id}: {result['error']}", hint=f"fix it, then resume with: {self.resume_command}"
            )
        self.note(f"{step_id}: {result['answer'][:200]}")
        return {"answer": result["answer"], "value": result["value"], "output": str(path)}

    def _questions(self, path: Path) -> list[tuple[str, str]]:
        if not path.is_file():
            raise WorkflowError(f"questions file not found: {path}", hint="check the batch step's `questions` path")
        out = []
        lines = path.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            if path.suffix.lower() in (".jsonl", ".json"):
                try:
                    record = nesting.loads(line)
                    question = record["question"]
                    if not isinstance(question, str) or not question.strip():
                        raise KeyError("question")
                except (json.JSONDecodeError, KeyError, TypeError) as exc:
                    raise WorkflowError(
                        f"{path}:{number}: expected a JSON object with a 'question' string",
                        hint="fix that line of the questions file",
                    ) from exc
                out.append((str(record.get("id") or f"line-{number}"), question.strip()))
            else:
                out.append((f"line-{number}", line.strip()))
        return out

    async def batch(self, step_id: str, args: dict[str, Any]) -> dict[str, Any]:
        questions = self._questions(self.policy.check(str(args["questions"]), f"{step_id}: questions file"))
        if args["limit"]:
            questions = questions[: args["limit"]]
        log = runs.JsonlLog(
            self.step_dir(step_id) / "answers.jsonl",
            run_id=self.run_id,
            on_problem=lambda problem: self.note(f"skipped a damaged record: {problem}"),
        )
        done = {r.get("id") for r in log.load()}
        for qid, question in questions:
            if qid in done:
                continue
            result = await self.answer(question, args["method"], args["collection"], args.get("source"))
            log.append({"id": qid, **{k: v for k, v in result.items()}})
        self.note(f"{step_id}: {len(questions)} answer(s) in {log.path}")
        return {"output": str(log.path), "count": len(questions)}

    async def synthesize(self, step_id: str, args: dict[str, Any]) -> dict[str, Any]:
        from conclave.workflows.synth import SynthConfig, synthesize

        config = SynthConfig(
            collection=self.settings.collection if args["collection"] is None else args["collection"],
            n=args["n"],
            questions_per_chunk=args["questions_per_chunk"],
            min_similarity=args["min_similarity"],
            min_rating=args["min_rating"],
            seed=args["seed"],
        )
        out = self.step_dir(step_id) / "qa.jsonl"
        for path in (out, out.with_suffix(".summary.json")):  # synthesize opens them by name
            fileio.refuse_link(path)
        # Not resumed item by item: a re-run is served from the response cache.
        report = await synthesize(self.settings, config, out, caches=self.caches)
        self.note(f"{step_id}: kept {report.kept} pair(s); rejected {dict(report.rejected)}")
        return {"output": str(out), "kept": report.kept, "collection": config.collection}

    async def eval(self, step_id: str, args: dict[str, Any]) -> dict[str, Any]:
        from conclave.workflows.evaluation import EvalConfig, run_eval
        from conclave.workflows.evaluation.options import EvalOptions

        dataset = args["dataset"]
        kind, _, raw_path = dataset.partition(":")
        dataset = f"{kind}:{self.policy.check(raw_path.strip(), f'{step_id}: data set')}"
        models = args["models"] or []
        # Every evaluation option the step names (EvalArgs is EvalOptions), its data set under the workflow's paths.
        options = {name: args[name] for name in EvalOptions.model_fields if name in args}
        config = EvalConfig.model_validate({**options, "dataset": dataset, "models": models})
        result = await run_eval(
            config,
            self.settings,
            run_dir=self.step_dir(step_id),
            on_note=self.note,
            on_progress=self.on_eval_progress,
            client_factory=self.client_factory,
        )
        cells = result.summary["cells"]
        accuracy = (
            cells[0]["accuracy"] if len(cells) == 1 else {f"{c['method']}@{c['model']}": c["accuracy"] for c in cells}
        )
        self.note(f"{step_id}: " + ", ".join(f"{c['method']}@{c['model']} {c['accuracy']}" for c in cells))
        return {
            "run_id": result.run_id,
            "run_dir": str(result.run_dir),
            "output": str(result.run_dir / "summary.json"),
            "report": str(result.run_dir / "report.html"),
            "accuracy": accuracy,
        }

    async def report(self, step_id: str, args: dict[str, Any], outputs: dict[str, dict[str, Any]]) -> dict[str, Any]:
        from conclave.workflows.evaluation.records import EvalSample, latest_samples
        from conclave.workflows.evaluation.report import write_reports

        records: list[EvalSample] = []
        several = len(args["runs"]) > 1
        for ref in args["runs"]:
            # An earlier step's output, maybe from the steps.jsonl of a resumed (untrusted) run folder: checked.
            run_dir = self.policy.check(str(outputs[ref]["run_dir"]), f"{step_id}: runs ({ref})")
            for sample in latest_samples(run_dir / "items.jsonl"):
                if several:
                    # Different eval steps may run the same method on different data: keep their cells apart.
                    sample = sample.model_copy(update={"method": f"{ref}/{sample.method}"})
                records.append(sample)
        folder = self.step_dir(step_id)
        write_reports(folder, records, run_id=f"{self.run_id}/{step_id}")
        return {"output": str(folder / "report.html"), "markdown": str(folder / "report.md")}

    async def run_step(self, plan: StepPlan, outputs: dict[str, dict[str, Any]]) -> dict[str, Any]:
        args = _resolve(plan.args, outputs)
        if plan.kind == "report":
            return await self.report(plan.id, args, outputs)
        handler = getattr(self, plan.kind)
        result: dict[str, Any] = await handler(plan.id, args)
        return result


# ---------------------------------------------------------------------------------------------------- runner


@dataclass
class _Opened:
    """A workflow to run: parsed, with its text, the folder its paths are relative to, and (resuming) its run.

    ``base_trusted``: ``base`` is the folder of a workflow file the user named, so the workflow may read under it;
    false when ``base`` only comes from a resumed run's ``run.json`` (then it says where relative paths start, and
    nothing more)."""

    workflow: Workflow
    text: str
    base: Path
    source: str
    run_dir: Path | None
    base_trusted: bool = True

    def resume_command(self, run_id: str) -> str:
        """How to continue this run: with the workflow file when the user named one (its folder is what it reads)."""
        if self.base_trusted:
            return f"conclave run {shlex.quote(self.source)} --resume {run_id}"
        return f"conclave run --resume {run_id}"


def _open(path: Path | None, settings: Settings, resume: str | None) -> _Opened:
    """The workflow file given, or the copy a run being resumed keeps.

    Everything in a run folder is untrusted (it may be shared): what a resumed run may read comes from the
    workflow file the user gives again (which must be the copy the run started with) and ``--allow-paths``, never
    from the folder ``run.json`` records."""
    if resume is None:
        if path is None:
            raise ConfigError("no workflow file given", hint="conclave run WORKFLOW.yaml (or --resume RUN_ID)")
        return _Opened(load_workflow(path), path.read_text(encoding="utf-8"), path.resolve().parent, str(path), None)
    run_dir = runs.find_run(settings, resume)
    info = runs.read_json(run_dir / "run.json") if (run_dir / "run.json").is_file() else None
    if not isinstance(info, dict) or info.get("kind") != "workflow":
        raise ConfigError(f"run {resume} is not a workflow run", hint="resume eval runs with `conclave eval --resume`")
    stored = run_dir / "workflow.yaml"
    try:
        text = stored.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {stored}", hint="the run folder is damaged; start a new run") from exc
    if path is not None:
        if path.read_text(encoding="utf-8") != text:
            raise ConfigError(
                f"{path} is not the workflow run {run_dir.name} started with (its copy: {stored})",
                hint="give the same file, or start a new run with this one (leave out --resume)",
            )
        return _Opened(parse_workflow(text, str(path)), text, path.resolve().parent, str(path), run_dir)
    workflow = parse_workflow(text, str(stored))
    recorded = info.get("base_dir")
    base = Path(recorded) if isinstance(recorded, str) and Path(recorded).is_absolute() else run_dir
    return _Opened(workflow, text, base, str(stored), run_dir, base_trusted=False)


def _new_run(settings: Settings, run_settings: Settings, opened: _Opened) -> Path:
    """A new run folder with the workflow's text, where it came from and the manifest."""
    workflow = opened.workflow
    slug = re.sub(r"[^A-Za-z0-9-]+", "-", workflow.name).strip("-")[:40] or "workflow"
    run_id = runs.new_run_id(f"wf-{slug}")
    run_dir = runs.create_run_dir(settings, run_id)
    runs.write_text(run_dir / "workflow.yaml", opened.text, run_id=run_id)
    runs.write_json(
        run_dir / "run.json",
        {"kind": "workflow", "source": opened.source, "base_dir": str(opened.base), "name": workflow.name},
        run_id=run_id,
    )
    models: dict[str, Any] = {role: run_settings.role_model(role) for role in ROLES}
    manifest = runs.build_manifest(
        run_settings,
        kind="workflow",
        run_id=run_id,
        config={"workflow": workflow.model_dump(mode="json"), "source": opened.source},
        models=models,
    )
    runs.write_json(run_dir / "manifest.json", manifest, run_id=run_id)
    return run_dir


async def _run_steps(
    runner: _Runner,
    result: WorkflowResult,
    log: runs.JsonlLog,
    finished: dict[str, Any],
    on_step: Callable[[StepPlan, str], None] | None,
) -> None:
    """Every step in order: one that finished in an earlier session is skipped (its outputs kept), each one that runs
    is logged when it finishes, so a resume starts at the first unfinished step."""
    report = on_step or (lambda _plan, _state: None)
    for plan in result.steps:
        if plan.id in finished:
            result.outputs[plan.id] = finished[plan.id]
            result.skipped.append(plan.id)
            report(plan, "skipped (finished earlier)")
            continue
        report(plan, "running")
        step_started = time.perf_counter()
        try:
            outputs = await runner.run_step(plan, result.outputs)
        except ConclaveError as exc:
            raise type(exc)(
                f"step {plan.id} ({plan.kind}): {exc.message}",
                hint=(exc.hint or "") + f" — then resume with: {runner.resume_command}",
            ) from exc
        result.outputs[plan.id] = outputs
        log.append(
            {
                "step": plan.id,
                "kind": plan.kind,
                "status": "finished",
                "outputs": outputs,
                "seconds": round(time.perf_counter() - step_started, 3),
            }
        )
        report(plan, "finished")


async def run_workflow(
    path: Path | None,
    settings: Settings,
    *,
    resume: str | None = None,
    dry_run: bool = False,
    on_note: Note | None = None,
    on_step: Callable[[StepPlan, str], None] | None = None,
    on_start: Callable[[str, Path], None] | None = None,
    on_eval_progress: Callable[[Any], None] | None = None,
    client_factory: ClientFactory | None = None,
    allow_endpoint_overrides: bool = False,
    allow_paths: Sequence[Path] = (),
) -> WorkflowResult:
    """Validate and run a workflow (or only validate and plan it with ``dry_run``).

    The workflow may not set endpoints or credentials (unless ``allow_endpoint_overrides``) nor read files outside
    its own folder, the run folder and ``allow_paths`` (see :mod:`workflows.files.access`). A dry run returns
    every endpoint and path the run would touch in ``result.access``; a path outside the allowed folders is listed
    there and refused by a real run before any step starts.
    """
    note = on_note or (lambda _m: None)
    started = time.perf_counter()
    opened = _open(path, settings, resume)
    workflow = opened.workflow
    run_settings = workflow_settings(
        workflow, settings, opened.source, allow_endpoint_overrides=allow_endpoint_overrides or dry_run
    )
    plans = plan_workflow(workflow)
    policy = PathPolicy(opened.base, allow_paths, opened.run_dir, base_trusted=opened.base_trusted)
    access = describe_access(workflow, run_settings, policy, plans)
    if dry_run:
        for plan in plans:
            if on_step is not None:
                on_step(plan, "planned")
        return WorkflowResult(None, None, plans, seconds=time.perf_counter() - started, access=access)
    if run_settings.coa.examples_file is not None and "examples_file" in (workflow.settings.get("coa") or {}):
        policy.check(run_settings.coa.examples_file, "settings.coa.examples_file")
    if opened.run_dir is None:
        _refuse_blocked(access, policy, set())  # before the run folder is made
    run_dir = opened.run_dir or _new_run(settings, run_settings, opened)
    run_id = run_dir.name
    # One writer per run folder: a second `--resume` of this run stops here instead of repeating its steps.
    with runs.writer_lock(run_dir, run_id):
        log = runs.JsonlLog(
            run_dir / "steps.jsonl",
            run_id=run_id,
            on_problem=lambda problem: note(f"skipped a damaged record: {problem}"),
        )
        finished = _finished_steps(log.load())
        _refuse_blocked(access, policy, set(finished))  # a resumed run: the steps still to run, before any starts
        if on_start is not None:
            on_start(run_id, run_dir)
        result = WorkflowResult(run_id, run_dir, plans)
        policy = PathPolicy(opened.base, allow_paths, run_dir, base_trusted=opened.base_trusted)
        runner = _Runner(
            workflow,
            run_settings,
            run_dir,
            run_id,
            policy,
            note,
            client_factory,
            on_eval_progress,
            resume_command=opened.resume_command(run_id),
        )
        try:
            await _run_steps(runner, result, log, finished, on_step)
        finally:
            await runner.caches.close()
        runs.write_json(run_dir / "outputs.json", result.outputs, run_id=run_id)
    result.seconds = time.perf_counter() - started
    return result


def _refuse_blocked(access: Access, policy: PathPolicy, finished: set[str]) -> None:
    """Stop, naming the path and the flag that allows it, at the first path outside the allowed folders that a
    step still to run would read."""
    for use in access.blocked():
        if use.step not in finished:
            policy.check(use.raw, f"{use.step}.{use.field}")


def _finished_steps(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The outputs of the steps ``steps.jsonl`` says finished (a record of any other shape is not believed)."""
    return {
        r["step"]: r["outputs"]
        for r in records
        if r.get("status") == "finished" and isinstance(r.get("step"), str) and isinstance(r.get("outputs"), dict)
    }
