"""What a workflow file may reach: which endpoints its requests (and the user's keys) go to, and which files it reads.

A workflow file is untrusted input (SECURITY.md): one that looks like a benchmark must not be able to send the
user's API key to a host of its choosing, nor ingest ``~/.ssh/id_rsa`` and send it there. So:

* endpoints and credentials come from the user's own settings and environment; a workflow whose ``settings:`` block
  names one of :data:`ENDPOINT_SETTINGS` is refused unless the run allows endpoint overrides
  (``conclave run --allow-endpoint-overrides``);
* every path a workflow names (ingest paths, questions files, data sets, ``coa.examples_file``) must resolve, after
  symbolic links, inside the workflow's folder, the run's own folder, or a folder the user allowed
  (``--allow-paths DIR``);
* :func:`describe_access` lists every endpoint and path a run would touch, for ``--dry-run``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conclave.errors import WorkflowError
from conclave.settings import ROLES

__all__ = ["ENDPOINT_SETTINGS", "Access", "PathPolicy", "describe_access", "endpoint_of", "refuse_endpoint_overrides"]

ENDPOINT_SETTINGS = (
    "openai_base_url",
    "openai_base_urls",
    "openai_api_key",
    "ollama_host",
    "chroma_url",
    "ray_address",
    "otel_content",
)
"""Settings that decide where requests, documents and credentials are sent (``otel_content``: questions, answers and
tool results into traces, to the OTLP endpoint)."""


def _within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


class PathPolicy:
    """The folders a workflow may read from; every path is checked after resolving ``..`` and symbolic links.

    ``base`` is where relative paths start. It is also a folder the workflow may read unless ``base_trusted`` is
    false: a resumed run's recorded folder (its ``run.json``) is a file of the run folder, so it may say where
    relative paths start but never widen what the run may read (SECURITY.md: run folders are untrusted).
    """

    def __init__(
        self,
        base: Path,
        allowed: Iterable[Path] = (),
        run_dir: Path | None = None,
        *,
        base_trusted: bool = True,
    ):
        self.base = base.resolve()
        self.base_trusted = base_trusted
        self.allowed = [Path(p).expanduser().resolve() for p in allowed]
        self.run_dir = run_dir.resolve() if run_dir is not None else None

    @property
    def roots(self) -> list[Path]:
        own = [self.base] if self.base_trusted else []
        return [*own, *self.allowed, *([self.run_dir] if self.run_dir else [])]

    def resolve(self, raw: str | Path) -> Path:
        """``raw`` relative to the workflow's folder, resolved (``..`` and links), not yet checked."""
        path = Path(raw).expanduser()
        return (path if path.is_absolute() else self.base / path).resolve()

    def permits(self, path: Path) -> bool:
        return any(_within(path, root) for root in self.roots)

    def check(self, raw: str | Path, what: str) -> Path:
        """The resolved path, or a WorkflowError when it lies outside every allowed folder."""
        path = self.resolve(raw)
        if not self.permits(path):
            where = (
                f"the workflow's folder {self.base}"
                if self.base_trusted
                else "the run folder and the --allow-paths folders (a resumed run reads its workflow's folder only "
                "when you give the workflow file again)"
            )
            raise WorkflowError(
                f"{what} {str(raw)!r} resolves to {path}, outside {where}",
                hint=f"a workflow reads only files under its own folder; if you trust it with that path, run again "
                f"with --allow-paths {path.parent if path.is_file() else path}",
            )
        return path


def refuse_endpoint_overrides(settings: dict[str, Any], source: str) -> None:
    """A workflow may not choose where requests and keys go (unless the user allowed it)."""
    named = [key for key in ENDPOINT_SETTINGS if key in settings]
    if named:
        raise WorkflowError(
            f"{source}: the workflow's settings set {', '.join(named)}: a workflow file cannot change where requests "
            "and your API keys are sent",
            hint="remove them from the workflow (set endpoints in your environment or settings.toml), or, if you "
            "trust this file, run with --allow-endpoint-overrides",
        )


def endpoint_of(spec: str | None, settings: Any) -> str:
    """Where requests for a model spec go, in words."""
    from conclave.models.backends import parse_spec

    if not spec:
        return "chosen at run time (embedded when nothing else is configured)"
    from conclave.models.backends import BACKENDS
    from conclave.redact import redact

    parsed = parse_spec(spec)
    return redact(BACKENDS.get(parsed.provider).endpoint(parsed, settings))  # no credentials written into URLs


@dataclass
class PathUse:
    """One file or folder a step reads."""

    step: str
    field: str
    raw: str
    path: str | None  # None: known only when an earlier step has run (a reference to its output)
    allowed: bool
    exists: bool | None = None  # None: not known before the run (a reference to an earlier step's output)

    def describe(self) -> str:
        if self.path is None:
            return f"{self.step}.{self.field}: {self.raw} (an earlier step's output, inside the run folder)"
        flag = "" if self.allowed else "  <- outside the allowed folders: needs --allow-paths"
        if self.exists is False:
            flag += "  <- does not exist"
        return f"{self.step}.{self.field}: {self.path}{flag}"


@dataclass
class Access:
    """Every endpoint and path a workflow run would touch."""

    endpoints: list[tuple[str, str, str]] = field(default_factory=list)  # (role, spec, where)
    store: str = ""
    paths: list[PathUse] = field(default_factory=list)
    endpoint_overrides: list[str] = field(default_factory=list)
    ray: list[str] = field(default_factory=list)  # "step: where": eval steps whose items run on Ray workers

    def lines(self) -> list[str]:
        out = ["endpoints:"]
        out += [f"  {role}: {spec or '(auto)'} -> {where}" for role, spec, where in self.endpoints]
        out.append(f"knowledge store: {self.store}")
        out += [f"items on Ray workers (with the settings and API key): {where}" for where in self.ray]
        if self.endpoint_overrides:
            out.append("endpoint settings set by the workflow: " + ", ".join(self.endpoint_overrides))
        out.append("paths read:" if self.paths else "paths read: none")
        out += [f"  {p.describe()}" for p in self.paths]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "endpoints": [{"role": r, "spec": s, "endpoint": w} for r, s, w in self.endpoints],
            "store": self.store,
            "endpoint_overrides": self.endpoint_overrides,
            "ray": self.ray,
            "paths": [p.__dict__ for p in self.paths],
        }

    def blocked(self) -> list[PathUse]:
        return [p for p in self.paths if not p.allowed]

    def missing(self) -> list[PathUse]:
        return [p for p in self.paths if p.exists is False]


def _path_fields(kind: str, args: dict[str, Any]) -> list[tuple[str, str]]:
    if kind == "ingest":
        return [(f"paths[{i}]", str(p)) for i, p in enumerate(args.get("paths") or [])]
    if kind == "batch":
        return [("questions", str(args["questions"]))]
    if kind == "eval":
        return [("dataset", str(args["dataset"]).partition(":")[2].strip())]
    return []


def describe_access(workflow: Any, run_settings: Any, policy: PathPolicy, steps: Sequence[Any]) -> Access:
    """Endpoints per role, the store, and every path the steps name (``steps``: :class:`StepPlan` list)."""
    from conclave.workflows.files.schema import REFERENCE

    access = Access()
    for role in ROLES:
        spec = run_settings.role_model(role)
        access.endpoints.append((role, spec or "", endpoint_of(spec, run_settings)))
    access.store = (
        f"Chroma server {run_settings.chroma_url}"
        if run_settings.chroma_url
        else f"local Chroma folder {run_settings.chroma_path}"
    )
    access.endpoint_overrides = [k for k in ENDPOINT_SETTINGS if k in workflow.settings]
    examples = run_settings.coa.examples_file
    if examples is not None and "examples_file" in (workflow.settings.get("coa") or {}):
        path = policy.resolve(examples)
        access.paths.append(
            PathUse("settings", "coa.examples_file", str(examples), str(path), policy.permits(path), _exists(path))
        )
    for plan in steps:
        if plan.kind == "eval" and plan.args.get("executor") == "ray":
            cluster = run_settings.ray_address
            access.ray.append(f"{plan.id}: {f'the Ray cluster at {cluster}' if cluster else 'a local Ray'}")
        for name, raw in _path_fields(plan.kind, plan.args):
            if REFERENCE.search(raw):
                access.paths.append(PathUse(plan.id, name, raw, None, True))
                continue
            path = policy.resolve(raw)
            access.paths.append(PathUse(plan.id, name, raw, str(path), policy.permits(path), _exists(path)))
    return access


def _exists(path: Path) -> bool:
    """Whether a path names something that is there (a glob pattern: whether it matches anything)."""
    if any(c in str(path) for c in "*?["):
        anchor = Path(path.anchor or ".")
        return next(anchor.glob(str(path.relative_to(anchor))), None) is not None
    return path.exists()
