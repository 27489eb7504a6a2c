"""Workflow files: the YAML schema (pydantic) and a loader whose errors point at file:line:column.

A workflow names the models per role, the default collection, optional settings overrides, and a list of steps.
Each step is a mapping with an optional ``id`` and exactly one of ``ingest``, ``ask``, ``batch``, ``synthesize``,
``eval``, ``report``. A step may use an earlier step's outputs with ``${steps.ID.FIELD}`` (or ``${ID.FIELD}``), e.g.
``dataset: jsonl:${steps.qa.output}``. ``conclave workflow schema`` prints the JSON schema of this model.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from conclave.workflows.evaluation.options import EvalOptions
from pydantic import AfterValidator, BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, field_validator

from conclave.errors import WorkflowError
from conclave.nesting import TooDeep, check_yaml

__all__ = [
    "STEP_KINDS",
    "STEP_OUTPUTS",
    "Workflow",
    "WorkflowStep",
    "load_workflow",
    "parse_workflow",
    "references",
    "step_kind",
    "workflow_json_schema",
]


def _method(value: str) -> str:
    """A method, optionally a coa variant (``coa:k=5``), checked now so a typo fails before any step runs."""
    from conclave.workflows.runner import parse_method

    from conclave.errors import ConclaveError

    try:
        parse_method(value)
    except ConclaveError as exc:
        raise ValueError(f"{exc.message}; {exc.hint}") from None
    return value.strip()


Method = Annotated[
    str,
    AfterValidator(_method),
    Field(
        description="a method (`conclave methods` lists them: coa, cot, rag, react, direct, rag-cot and plugins); coa:k=5,... for a variant"
    ),
]
STEP_KINDS = ("ingest", "ask", "batch", "synthesize", "eval", "report")
STEP_OUTPUTS: dict[str, tuple[str, ...]] = {
    "ingest": ("collection", "chunks", "files"),
    "ask": ("answer", "value", "output"),
    "batch": ("output", "count"),
    "synthesize": ("output", "kept", "collection"),
    "eval": ("run_id", "run_dir", "output", "report", "accuracy"),
    "report": ("output", "markdown"),
}
REFERENCE = re.compile(r"\$\{\s*(?:steps\.)?([A-Za-z0-9_-]+)\.([A-Za-z_]+)\s*\}")
_ID = r"^[A-Za-z][A-Za-z0-9_-]{0,63}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _spec(value: str | None) -> str | None:
    """A model spec, checked now so a typo fails before any step runs."""
    if value is None:
        return None
    from conclave.errors import ConclaveError
    from conclave.models.backends import parse_spec

    try:
        return str(parse_spec(value))
    except ConclaveError as exc:
        raise ValueError(f"{exc.message}; {exc.hint}") from None


class Models(_Strict):
    """Model specs: ``default`` runs every role not named here."""

    default: str | None = Field(None, description="spec for every role (embedded, ollama/NAME, openai/NAME)")
    planner: str | None = None
    reasoner: str | None = None
    critic: str | None = None
    writer: str | None = None
    judge: str | None = None

    @field_validator("*")
    @classmethod
    def _specs(cls, value: str | None) -> str | None:
        return _spec(value)


class IngestArgs(_Strict):
    """Ingest files and folders (paths relative to the workflow file)."""

    paths: list[str] = Field(..., min_length=1)
    collection: str | None = Field(None, description="default: the workflow's collection")
    include: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)
    prune: bool = False


class AskArgs(_Strict):
    """Answer one question."""

    question: str = Field(..., min_length=1)
    method: Method | None = None
    collection: str | None = None
    source: str | None = Field(
        None, description="search only this ingested document (its path, relative to the workflow file)"
    )


class BatchArgs(_Strict):
    """Answer every question of a file (JSONL with ``question``, or one question per line) into answers JSONL."""

    questions: str = Field(..., description="path of the questions file (or a reference to a step's output)")
    method: Method | None = None
    collection: str | None = None
    source: str | None = Field(
        None, description="search only this ingested document (its path, relative to the workflow file)"
    )
    limit: int | None = Field(None, ge=1)


class SynthesizeArgs(_Strict):
    """Write question-answer pairs from a collection's chunks."""

    collection: str | None = None
    n: int = Field(20, ge=1, le=10000)
    questions_per_chunk: int = Field(2, ge=1, le=5)
    min_similarity: float = Field(0.45, ge=0.0, le=1.0)
    min_rating: int = Field(4, ge=1, le=5)
    seed: int = 0


class EvalArgs(EvalOptions):
    """Evaluate methods x models on a data set: ``conclave eval``'s options (``evaluation/options.py``), checked
    when the file is read so a typo fails before any step runs."""

    @field_validator("methods")
    @classmethod
    def _methods(cls, value: list[str]) -> list[str]:
        return [_method(v) for v in value]

    @field_validator("models")
    @classmethod
    def _model_specs(cls, value: list[str]) -> list[str]:
        return [str(_spec(v)) for v in value]

    @field_validator("judge")
    @classmethod
    def _judge_spec(cls, value: str | None) -> str | None:
        return _spec(value)

    @field_validator("scorers")
    @classmethod
    def _scorers(cls, value: list[str]) -> list[str]:
        from conclave.workflows.evaluation.scorers import resolve_scorers

        from conclave.errors import ConclaveError

        try:
            return resolve_scorers(value)
        except ConclaveError as exc:
            raise ValueError(f"{exc.message} ({exc.hint})") from None

    @field_validator("dataset")
    @classmethod
    def _dataset_kind(cls, value: str) -> str:
        from conclave.workflows.evaluation.datasets import DATASET_KINDS

        kind = value.partition(":")[0].strip().lower()
        if ":" not in value or kind not in DATASET_KINDS:
            raise ValueError(f"expected KIND:PATH with KIND one of {', '.join(DATASET_KINDS)}, got {value!r}")
        return value


class ReportArgs(_Strict):
    """One report over earlier eval steps."""

    runs: list[str] = Field(..., min_length=1, description="ids of earlier eval steps")


class _Step(_Strict):
    id: str | None = Field(None, pattern=_ID, description="name for references; default: KIND + position")


class IngestStep(_Step):
    ingest: IngestArgs


class AskStep(_Step):
    ask: AskArgs


class BatchStep(_Step):
    batch: BatchArgs


class SynthesizeStep(_Step):
    synthesize: SynthesizeArgs


class EvalStep(_Step):
    eval: EvalArgs


class ReportStep(_Step):
    report: ReportArgs


def step_kind(value: Any) -> str | None:
    """The kind of a raw or parsed step: the one step key it has."""
    if isinstance(value, dict):
        found = [k for k in STEP_KINDS if k in value]
    else:
        found = [k for k in STEP_KINDS if getattr(value, k, None) is not None]
    return found[0] if len(found) == 1 else None


WorkflowStep = Annotated[
    Annotated[IngestStep, Tag("ingest")]
    | Annotated[AskStep, Tag("ask")]
    | Annotated[BatchStep, Tag("batch")]
    | Annotated[SynthesizeStep, Tag("synthesize")]
    | Annotated[EvalStep, Tag("eval")]
    | Annotated[ReportStep, Tag("report")],
    Discriminator(
        step_kind,
        custom_error_type="step_kind",
        custom_error_message=f"a step needs exactly one of: {', '.join(STEP_KINDS)}",
    ),
]


class Workflow(_Strict):
    """A scripted run: models per role, a default collection, settings overrides and steps."""

    version: Literal[1] = 1
    name: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    description: str = ""
    models: Models = Models()
    collection: str | None = None
    settings: dict[str, Any] = Field(default_factory=dict, description="overrides of Conclave settings (e.g. top_k)")
    steps: list[WorkflowStep] = Field(..., min_length=1)

    @field_validator("settings")
    @classmethod
    def _known_settings(cls, value: dict[str, Any]) -> dict[str, Any]:
        from conclave.settings import Settings

        for key in value:
            if key == "home" or key not in Settings.model_fields:
                allowed = ", ".join(k for k in Settings.model_fields if k != "home")
                raise ValueError(f"unknown setting {key!r} (expected one of: {allowed})")
        return value

    def step_ids(self) -> list[str]:
        """Every step's id (given, or KIND + 1-based position)."""
        return [s.id or f"{step_kind(s)}{i + 1}" for i, s in enumerate(self.steps)]


def workflow_json_schema() -> dict[str, Any]:
    """The JSON schema of workflow files."""
    return Workflow.model_json_schema()


# ------------------------------------------------------------------------------------------------- loading


def _marks(node: yaml.Node, path: tuple[Any, ...], out: dict[tuple[Any, ...], yaml.Mark]) -> None:
    """Record where every value (and every mapping key) starts, by its path in the data."""
    out.setdefault(path, node.start_mark)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            out[path + (key,)] = key_node.start_mark
            _marks(value_node, path + (key,), out)
            out.setdefault(path + (key, "__value__"), value_node.start_mark)
    elif isinstance(node, yaml.SequenceNode):
        for index, child in enumerate(node.value):
            _marks(child, path + (index,), out)


def _data_path(data: Any, loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """The part of a pydantic error location that exists in the data (union tags are skipped)."""
    path: list[Any] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            path.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            path.append(part)
            node = node[part]
    return tuple(path)


def _describe(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _explain(error: Mapping[str, Any], model_loc: tuple[Any, ...]) -> str:
    kind = error["type"]
    field = model_loc[-1] if model_loc else ""
    if kind == "missing":
        return f"missing required field {field!r}"
    if kind == "extra_forbidden":
        return f"unknown field {field!r}"
    if kind == "literal_error":
        return f"{error['msg'].replace('Input should be', 'expected')}, got {error.get('input')!r}"
    return error["msg"].replace("Value error, ", "")


def _expected_fields(loc: tuple[Any, ...]) -> str:
    """For unknown/missing field errors: the fields allowed at that place."""
    models: dict[str, type[BaseModel]] = {
        "ingest": IngestArgs,
        "ask": AskArgs,
        "batch": BatchArgs,
        "synthesize": SynthesizeArgs,
        "eval": EvalArgs,
        "report": ReportArgs,
        "models": Models,
    }
    for part in reversed(loc[:-1]):
        if isinstance(part, str) and part in models:
            return ", ".join(models[part].model_fields)
    if len(loc) >= 2 and loc[0] == "steps":
        return "id, " + ", ".join(STEP_KINDS)
    return ", ".join(Workflow.model_fields)


class Problem:
    """One error in a workflow file, located."""

    def __init__(self, source: str, mark: Any, where: str, message: str):
        """``mark``: a YAML mark (``.line``, ``.column``), or ``None`` when the place is unknown."""
        self.source = source
        self.line = mark.line + 1 if mark else 1
        self.column = mark.column + 1 if mark else 1
        self.where = where
        self.message = message

    def __str__(self) -> str:
        return f"{self.source}:{self.line}:{self.column}: {self.where}: {self.message}"


def _problems(exc: ValidationError, data: Any, marks: dict[tuple[Any, ...], yaml.Mark], source: str) -> list[Problem]:
    out = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        path = _data_path(data, loc)
        # Drop union tags from the location we show (steps.2.ask.ask.question -> steps[2].ask.question).
        shown: list[Any] = []
        for part in loc:
            if shown and part == shown[-1] and part in STEP_KINDS:
                continue
            shown.append(part)
        message = _explain(error, tuple(shown))
        if error["type"] in ("missing", "extra_forbidden"):
            message += f" (expected fields: {_expected_fields(tuple(shown))})"
        out.append(Problem(source, marks.get(path), _describe(tuple(shown)), message))
    return out


def references(value: Any) -> Iterator[tuple[tuple[Any, ...], str, str]]:
    """Every ``${steps.ID.FIELD}`` in a step's arguments: (path inside the arguments, step id, field)."""
    if isinstance(value, BaseModel):
        value = value.model_dump()
    if isinstance(value, str):
        for match in REFERENCE.finditer(value):
            yield (), match.group(1), match.group(2)
    elif isinstance(value, dict):
        for key, child in value.items():
            for path, ref, field in references(child):
                yield (key, *path), ref, field
    elif isinstance(value, list):
        for index, child in enumerate(value):
            for path, ref, field in references(child):
                yield (index, *path), ref, field


def _check_steps(workflow: Workflow, data: Any, marks: dict[tuple[Any, ...], yaml.Mark], source: str) -> list[Problem]:
    problems: list[Problem] = []
    ids = workflow.step_ids()
    kinds: dict[str, str] = {}
    for index, (step, step_id) in enumerate(zip(workflow.steps, ids, strict=True)):
        kind = step_kind(step)
        assert kind is not None
        if step_id in kinds:
            mark = marks.get(("steps", index, "id"), marks.get(("steps", index)))
            problems.append(Problem(source, mark, f"steps[{index}].id", f"duplicate step id {step_id!r}"))
        args = getattr(step, kind)
        for path, ref, field in references(args):
            full = ("steps", index, kind, *path)
            mark = marks.get(_data_path(data, full))
            where = _describe(full)
            if ref not in kinds:
                later = ref in ids[index:]
                problems.append(
                    Problem(
                        source,
                        mark,
                        where,
                        f"${{steps.{ref}.{field}}} refers to "
                        + ("a later step" if later else "no step")
                        + f" (earlier steps: "
                        f"{', '.join(kinds) or 'none'})",
                    )
                )
            elif field not in STEP_OUTPUTS[kinds[ref]]:
                problems.append(
                    Problem(
                        source,
                        mark,
                        where,
                        f"step {ref!r} ({kinds[ref]}) has no output {field!r} "
                        f"(expected one of: {', '.join(STEP_OUTPUTS[kinds[ref]])})",
                    )
                )
        if kind == "report":
            for n, run in enumerate(step.report.runs):  # type: ignore[union-attr]
                if kinds.get(run) != "eval":
                    mark = marks.get(_data_path(data, ("steps", index, "report", "runs", n)))
                    problems.append(
                        Problem(
                            source,
                            mark,
                            f"steps[{index}].report.runs[{n}]",
                            f"{run!r} is not an earlier eval step (eval steps so far: "
                            f"{', '.join(k for k, v in kinds.items() if v == 'eval') or 'none'})",
                        )
                    )
        kinds.setdefault(step_id, kind)
    return problems


def _fail(problems: list[Problem]) -> WorkflowError:
    first = str(problems[0])
    more = (
        f" (and {len(problems) - 1} more: " + "; ".join(str(p) for p in problems[1:4]) + ")"
        if len(problems) > 1
        else ""
    )
    return WorkflowError(first + more, hint="fix the workflow file (`conclave workflow schema` prints every field)")


MAX_WORKFLOW_BYTES = 1_000_000


def _refuse_bombs(text: str, source: str) -> None:
    """YAML aliases (``*name``) let a few hundred bytes expand into gigabytes (an "alias bomb"); a workflow has no
    need for them, so they are refused from the event stream, before anything is composed. Deep nesting is refused
    before that: PyYAML's scanner slows with the depth, and its composer recurses once per level."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_WORKFLOW_BYTES:
        raise WorkflowError(
            f"{source}: the workflow file is larger than {MAX_WORKFLOW_BYTES:,} bytes",
            hint="a workflow names steps; keep data in the files its steps read",
        )
    try:
        check_yaml(text)
    except TooDeep as exc:
        raise WorkflowError(
            f"{source}:{exc.lineno}:{exc.colno}: YAML: {exc}",
            hint="a workflow needs a few levels of nesting: write it out as steps and settings",
        ) from None
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent):
            problem = Problem(
                source, event.start_mark, "YAML", f"alias *{event.anchor} is not allowed in workflow files"
            )
            raise WorkflowError(str(problem), hint="write the value out instead of using YAML anchors and aliases")


def parse_workflow(text: str, source: str = "<workflow>") -> Workflow:
    """Parse and validate workflow YAML; WorkflowError at file:line:column otherwise."""
    try:
        _refuse_bombs(text, source)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = Problem(
            source, mark, "YAML", f"{exc.problem or 'invalid YAML'}" + (f" ({exc.context})" if exc.context else "")
        )
        raise WorkflowError(str(problem), hint="fix the YAML syntax (indentation, quotes, colons)") from exc
    except yaml.YAMLError as exc:
        raise WorkflowError(f"{source}: invalid YAML: {exc}", hint="fix the YAML syntax") from exc
    if node is None or not isinstance(data, dict):
        raise WorkflowError(
            f"{source}:1:1: a workflow is a mapping with at least `name` and `steps`",
            hint="see examples/workflows/ or `conclave workflow schema`",
        )
    marks: dict[tuple[Any, ...], yaml.Mark] = {}
    _marks(node, (), marks)
    try:
        workflow = Workflow.model_validate(data)
    except ValidationError as exc:
        raise _fail(_problems(exc, data, marks, source)) from None
    problems = _check_steps(workflow, data, marks, source)
    if problems:
        raise _fail(problems)
    return workflow


def load_workflow(path: Path) -> Workflow:
    """Read and validate a workflow file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise WorkflowError(
            f"workflow file not found: {path}", hint="check the path (see examples/workflows/)"
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise WorkflowError(f"cannot read {path}: {exc}", hint="give a UTF-8 YAML file") from exc
    return parse_workflow(text, str(path))
