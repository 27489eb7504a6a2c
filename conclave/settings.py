"""One frozen settings object, with the origin of every value.

Precedence, highest first:

1. keyword arguments to :func:`load_settings` (what CLI flags set);
2. ``CONCLAVE_*`` environment variables (nested fields with ``__``: ``CONCLAVE_ROLES__CRITIC``), and the
   standard ``OLLAMA_HOST``, ``OPENAI_BASE_URL``, ``OPENAI_API_KEY`` for the fields they name;
3. a ``.env`` file in the working directory (same names as the environment);
4. ``$CONCLAVE_HOME/settings.toml``;
5. the defaults below.

``CONCLAVE_HOME`` itself comes from keyword, environment or ``.env`` only (the TOML file lives inside it).

A ``.env`` in the working folder is untrusted (it comes with whatever folder the user is in). Its values that decide
where requests, keys and state go (:data:`DOTENV_GATED_FIELDS`, and ``model``/``roles.*`` given as a GGUF path) are
withheld until the user allows that file with ``conclave trust`` (``conclave/trust.py``: by resolved path and content
hash, so any edit withdraws it); each withheld value is named on stderr once per process with the command that allows
it. Everything else in it applies. ``mcp_servers`` is refused from a ``.env`` even when allowed, and from the
``settings.toml`` of a home a ``.env`` chose, whose endpoint, key and model-path values stay withheld too (the
allowance covers the ``.env``'s own content, not files it points to).

Values merge per nested key (``CONCLAVE_MCP_SERVERS__FILES__URL`` adds to the servers of settings.toml), and the
origin of every nested value is kept (:attr:`LoadedSettings.origins`); the ``.env``'s values are filtered before they
are merged, so a trusted source never lends its name to what a ``.env`` set.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from dotenv import dotenv_values
from platformdirs import user_data_dir
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from conclave.errors import ConfigError

Role = Literal["planner", "reasoner", "critic", "writer", "judge"]
"""The roles that call a model, each with its own ``roles.<name>`` setting. The retriever is an agent that calls no
model (it searches the collection), so it has no role."""
ROLES: tuple[Role, ...] = get_args(Role)
AGENT_ROLES: tuple[Role, ...] = ("planner", "reasoner", "critic", "writer")
"""The roles of the team's agents (the judge scores evaluations)."""

# Standard variables other tools already use, read as well as their CONCLAVE_ names (lower precedence).
_ALIASES = {
    "ollama_host": "OLLAMA_HOST",
    "openai_base_url": "OPENAI_BASE_URL",
    "openai_api_key": "OPENAI_API_KEY",
}
_SECRET_FIELDS = {"openai_api_key", "serve_api_key"}
_URL_FIELDS = ("openai_base_url", "ollama_host", "chroma_url", "ray_address")
"""Settings that hold one endpoint URL (``openai_base_urls`` holds several): credentials written into them are
redacted wherever settings are shown or stored, and registered as secrets."""
DOTENV_GATED_FIELDS: dict[str, str] = {
    "home": "Conclave's state (settings, response cache, sessions, runs) would be read from and written there",
    "openai_base_url": "OpenAI-compatible requests, with the API key, would be sent there",
    "openai_base_urls": "OpenAI-compatible requests, with the API key, would be sent there",
    "ollama_host": "Ollama requests would be sent there",
    "chroma_url": "documents and searches would be sent to that Chroma server",
    "ray_address": "eval --executor ray would send its items, settings and API key to that Ray cluster",
    "openai_api_key": "requests would be made with that key",
    "otel_content": "questions, answers and tool results would go into traces, to the OTLP endpoint",
    "serve_api_key": "whoever knows that key could use `conclave serve` bound beyond this machine",
}
"""Settings a ``.env`` file may set only once the user allowed the file (``conclave trust``), and what each would
do."""
_MODEL_PATH_EFFECT = "llama.cpp would load and parse that file"
_ANNOUNCED: set[tuple[str, str]] = set()
Path_ = tuple[str, ...]
"""A setting's place in the nested settings (``("mcp_servers", "files", "url")``)."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RoleModels(_Frozen):
    """Per-role model specs; ``None`` means the top-level ``model`` setting (for the writer: the reasoner's)."""

    planner: str | None = None
    reasoner: str | None = None
    critic: str | None = None
    writer: str | None = None
    judge: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_retriever(cls, data: Any) -> Any:
        if isinstance(data, dict) and "retriever" in data:
            raise ValueError(
                "roles.retriever is not a role: the retriever calls no model (it searches the collection); "
                "remove it (the answer is written by roles.writer)"
            )
        return data


class ModelInfoOverride(_Frozen):
    """Capabilities of an OpenAI-compatible model the client library does not know by name."""

    vision: bool = False
    function_calling: bool = True
    json_output: bool = True
    structured_output: bool = True
    family: str = "unknown"
    context_length: int = 8192


class CoASettings(_Frozen):
    """Chain-of-abstraction knobs."""

    samples: int = Field(1, ge=1, le=16)
    """Chains to draw at most and vote on (self-consistency)."""
    agree: int = Field(2, ge=0, le=16)
    """Stop sampling early once this many chains agree on the answer (and no other answer ties); 0 draws all."""
    plan: Literal["auto", "always", "never"] = "auto"
    """Whether the planner calls the model: ``auto`` does when there is a conversation to resolve; otherwise the
    question goes straight to the reasoner, whose chain writes its own lookups."""
    explain_from_passages: bool = True
    """An explanation over a collection (why / how does / what happens if / compare, nothing to compute) needs no
    chain: the writer answers it from the retriever's passages and the reasoner is not asked (the plan event says
    so). Off: the reasoner writes a chain of lookups for it like any other question."""
    sample_temperature: float = Field(0.7, ge=0.0, le=2.0)
    max_replans: int = Field(2, ge=0, le=5)
    max_critic_rounds: int = Field(2, ge=0, le=5)
    max_steps: int = Field(12, ge=1, le=64)
    tool_timeout: float = Field(30.0, gt=0)
    use_critic: bool | Literal["auto"] = "auto"
    """Whether the critic's model judges the chosen chain. ``auto`` skips the call for a chain that reified cleanly
    with the calculator alone (measured, the critic changed no outcome there at several seconds an item:
    docs/QUALITY.md, 'Decisions, by measurement') or whose answer is retrieved text (the writer answers from the
    passages and cites them); a chain with a failed step always goes back to the reasoner, whatever this says."""
    form: Literal["auto", "program", "program-y", "json", "text"] = "program"
    """How the reasoner writes chains: ``program`` (Python assignments with descriptive names, free decoding, parsed
    and reified as they stream), ``program-y`` (the same with placeholders ``y1, y2, ...`` for names), ``json``
    (grammar-constrained), ``text`` (brackets); ``auto``: json where the backend has structured output, text
    otherwise. The default is ``program``: it scored well above the JSON form at a third of its tokens
    (docs/QUALITY.md, 'Decisions, by measurement')."""
    forms: tuple[Literal["program", "program-y", "json", "text"], ...] = ()
    """Self-consistency with candidates of different forms: sample ``i`` is written in ``forms[i]`` (the last form
    repeats). A form's first sample is drawn at the configured temperature, its later ones warm. Empty: every sample
    in ``form``, sample 0 at the configured temperature and the rest warm. In a method variant, join forms with ``+``
    (``coa:k=3,forms=program+program-y``)."""
    greedy_weight: float = Field(1.0, ge=1.0, le=8.0)
    """Weight of sample 0's vote (drawn at the configured temperature, usually greedy) against each later sample's
    1; ties go to the earliest sample whatever the weights."""

    @field_validator("forms", mode="before")
    @classmethod
    def _split_forms(cls, value: object) -> object:
        if isinstance(value, str):  # "program+program-y" (a method variant) or "program,json" (an env variable)
            return tuple(part.strip() for part in re.split(r"[+,]", value) if part.strip())
        return value

    def form_of(self, sample: int, default: str) -> str:
        """The form sample ``sample`` is written in."""
        return self.forms[min(sample, len(self.forms) - 1)] if self.forms else default

    def greedy(self, sample: int) -> bool:
        """Whether sample ``sample`` is drawn at the configured temperature: it is its form's first sample."""
        if not self.forms:
            return sample == 0
        return self.form_of(sample, "") not in {self.form_of(i, "") for i in range(sample)}

    few_shot: Literal["fixed", "similar"] = "fixed"
    """``similar``: add the chains of the training questions most like this one (needs ``examples_file``)."""
    examples_file: Path | None = None
    """GSM8K-format JSONL (question, answer with <<a*b=c>> notes) whose answers are converted to example chains."""
    examples_limit: int = Field(2000, ge=10, le=100000)
    examples_k: int = Field(3, ge=1, le=8)


class McpServer(_Frozen):
    """A Model Context Protocol server whose tools join Conclave's (tools/mcp.py)."""

    command: list[str] = Field(default_factory=list)
    """The program and its arguments, for a stdio server (``["python", "server.py"]``)."""
    url: str | None = None
    """A streamable-HTTP server instead."""
    env: dict[str, str] = Field(default_factory=dict)
    """Extra environment for a stdio server."""
    allow: list[str] = Field(default_factory=list)
    """Tools the server does not mark read-only that chains may still call (they can change things), each by the
    server's name (``append_note``) or as ``conclave tools`` shows it (``notes_append_note``)."""
    timeout: float = Field(30.0, gt=0)
    cwd: Path | None = None
    """The folder a stdio server starts in. A server from settings.toml starts in that file's folder unless this says
    otherwise (relative: to that folder), and a relative program path there is that folder's too: ``command =
    ["python3", "server.py"]`` runs the server beside the settings file, never one in the folder Conclave was started
    from. Unset (the environment, flags): the current folder."""

    @model_validator(mode="after")
    def _one_transport(self) -> McpServer:
        if bool(self.url) == bool(self.command):
            raise ValueError("give either command (a stdio server) or url (an HTTP server), not both or neither")
        return self


class Settings(_Frozen):
    """Effective configuration of one Conclave process."""

    home: Path = Field(default_factory=lambda: Path(user_data_dir("conclave", appauthor=False)))
    model: str | None = None
    roles: RoleModels = RoleModels()
    method: str = "coa"
    """How questions are answered: a name in the method registry (``conclave methods``; ``workflows/methods.py``)."""
    collection: str = "demo"
    embedder: str = "local"
    chroma_url: str | None = None
    chunk_size: int = Field(800, ge=100, le=20000)
    chunk_overlap: int = Field(100, ge=0, le=5000)
    max_file_mb: int = Field(50, ge=1, le=1024)
    """Ingestion reads a file of at most this many MiB; a larger one is skipped and listed in the ingest report."""
    log_answers: bool = True
    """Keep every ``ask`` and chat answer in ``CONCLAVE_HOME/logs.sqlite`` (``conclave logs``); ``ask --no-log``
    skips one."""
    otel: Literal["auto", "console", "off"] = "auto"
    """OpenTelemetry traces of every question (``conclave/tracing.py``): ``auto`` sends them over OTLP when
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or another ``OTEL_*`` variable) asks for it, else none; ``console`` prints them
    on stderr (``--otel``); ``off`` never traces."""
    otel_content: bool = False
    """Record the question, the answer and tool arguments and results in traces (they may hold private text);
    without it a trace holds names, times, statuses, models and token counts."""
    top_k: int = Field(4, ge=1, le=50)
    ollama_host: str = "http://127.0.0.1:11434"
    openai_base_url: str | None = None
    openai_base_urls: list[str] = Field(default_factory=list)
    """Several endpoints serving the same models (a pool: each request to the least-loaded healthy one, a failing one
    taken out for ``endpoint_cooldown`` seconds); when set, ``openai/`` specs use these instead of openai_base_url."""
    endpoint_cooldown: float = Field(30.0, gt=0)
    ray_address: str | None = None
    """The Ray cluster ``conclave eval --executor ray`` runs its items on (``HOST:6379`` or ``ray://HOST:10001``);
    unset: a local Ray started for the run. Its workers get these settings, API key included."""
    pool_shard: tuple[int, int] | None = None
    """``(i, n)``: this process is worker i of n of a distributed run (set by the Ray executor, not by hand); an
    endpoint pool sends its requests to its own share of the endpoints first (``models/pool.py``)."""
    openai_api_key: SecretStr | None = None
    serve_api_key: SecretStr | None = None
    """The key clients of `conclave serve` must send (``Authorization: Bearer KEY``); required to bind beyond
    loopback. ``serve --api-key`` wins over it."""
    openai_model_info: dict[str, ModelInfoOverride] = Field(default_factory=dict)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    max_tokens: int = Field(768, ge=16, le=32768)
    context_length: int = Field(4096, ge=512, le=262144)
    embedded_threads: int | None = Field(None, ge=1, le=256)
    """llama.cpp threads for the embedded backend; default: the CPUs this process may run on. On a machine shared
    with other heavy work, fewer threads than cores avoids llama.cpp's threads waiting on each other."""
    embedded_engine: Literal["llama-cpp-python", "xllamacpp"] = "xllamacpp"
    """What runs the embedded backend's GGUF models: xllamacpp (llama.cpp's server code in-process, from wheels:
    ``embedded_parallel`` requests decoded together; ``models/xllama.py``) or llama-cpp-python (one request at a
    time; the ``llama-cpp`` extra, which compiles from source). docs/PERFORMANCE.md compares them."""
    embedded_parallel: int = Field(4, ge=1, le=64)
    """Requests the xllamacpp engine decodes at once (its slots; each has ``context_length`` tokens, so its KV cache
    holds context_length × embedded_parallel). Unused by llama-cpp-python."""
    request_timeout: float = Field(120.0, gt=0)
    max_retries: int = Field(3, ge=0, le=10)
    retry_budget: float = Field(300.0, gt=0)
    """Seconds a request may keep retrying in all: no retry starts that could not end (request_timeout) within it."""
    cache: bool = True
    system: str | None = Field(None, max_length=4000)
    """Your instructions for the model that writes the answer (tone, language, length); added to that call's system
    prompt. The chain-writing and planning prompts keep their own format."""
    coa: CoASettings = CoASettings()
    mcp_servers: dict[str, McpServer] = Field(default_factory=dict)
    """MCP servers whose tools chains may use, by name (only from settings.toml or the environment: they start
    programs)."""

    @field_validator("mcp_servers")
    @classmethod
    def _server_names(cls, value: dict[str, McpServer]) -> dict[str, McpServer]:
        for name in value:
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]{0,39}", name):
                raise ValueError(f"MCP server name {name!r}: use letters, digits, - and _ (starting with a letter)")
        return value

    @field_validator("method")
    @classmethod
    def _method_named(cls, value: str) -> str:
        # Whether a method of that name exists is checked where methods are known (workflows/methods.py:
        # check_method_setting): the core does not import the layers above it.
        if not value.strip():
            raise ValueError("the method name is empty (conclave methods lists them)")
        return value.strip()

    @field_validator("collection")
    @classmethod
    def _collection_named(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the collection name is empty (give a name such as demo or mydocs)")
        return value

    def role_model(self, role: Role) -> str | None:
        """The model spec for a role (``None``: choose automatically). The writer runs on the reasoner's model
        unless ``roles.writer`` names one: it writes out the chain that model drafted."""
        if role == "writer" and not self.roles.writer:
            return self.roles.reasoner or self.model
        return getattr(self.roles, role) or self.model

    @property
    def chroma_path(self) -> Path:
        return self.home / "chroma"

    @property
    def sessions_path(self) -> Path:
        return self.home / "sessions.sqlite"

    @property
    def runs_path(self) -> Path:
        return self.home / "runs"

    @property
    def cache_path(self) -> Path:
        return self.home / "cache"

    def redacted(self) -> dict[str, Any]:
        """Settings as plain JSON data with secrets masked (safe for traces, manifests and logs): the API key,
        credentials written into endpoint URLs, and the secret-named environment of MCP servers."""
        from conclave.redact import is_secret_variable, redact, redact_url

        data = self.model_dump(mode="json")
        for name in _SECRET_FIELDS:
            if data.get(name):
                data[name] = mask_secret(getattr(self, name).get_secret_value())
        for name in _URL_FIELDS:
            if data.get(name):
                data[name] = redact_url(data[name])
        data["openai_base_urls"] = [redact_url(url) for url in data["openai_base_urls"]]
        for server in data["mcp_servers"].values():
            if server.get("url"):
                server["url"] = redact_url(server["url"])
            server["command"] = [redact(arg) for arg in server["command"]]
            server["env"] = {
                key: mask_secret(value) if is_secret_variable(key) else redact(value)
                for key, value in server["env"].items()
            }
        return data

    def register_secrets(self) -> None:
        """Make every secret these settings hold known to :func:`conclave.redact.redact`: the API key, credentials
        written into endpoint URLs, and the secret-named environment of MCP servers."""
        from conclave.redact import is_secret_variable, register_secret, register_url_secrets

        for name in _SECRET_FIELDS:
            secret = getattr(self, name)
            if secret is not None:
                register_secret(secret.get_secret_value())
        for url in [*(getattr(self, name) for name in _URL_FIELDS), *self.openai_base_urls]:
            register_url_secrets(url)
        for server in self.mcp_servers.values():
            register_url_secrets(server.url)
            for key, value in server.env.items():
                if is_secret_variable(key):
                    register_secret(value)


def mask_secret(value: str) -> str:
    """Show only enough of a secret to recognise it."""
    if len(value) <= 8:
        return "****"
    return f"{value[:3]}…{value[-2:]}"


def _nest(flat: dict[str, str], prefix: str) -> dict[str, Any]:
    """Turn ``CONCLAVE_ROLES__CRITIC=x`` style keys into nested dicts."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        if value is None or not key.upper().startswith(prefix):
            continue
        path = key[len(prefix) :].lower().split("__")
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                break
        else:
            node[path[-1]] = value
    return out


# CONCLAVE_ variables that are not settings: the test suite's own, and the CLI's debug switch.
_NOT_SETTINGS = ("CONCLAVE_TEST_", "CONCLAVE_DEBUG")


def _from_variables(variables: dict[str, str | None]) -> dict[str, Any]:
    values = _nest(
        {k: v for k, v in variables.items() if v is not None and not k.upper().startswith(_NOT_SETTINGS)}, "CONCLAVE_"
    )
    for field, name in _ALIASES.items():
        if field not in values and variables.get(name):
            values[field] = variables[name]
    # Structured values (e.g. CONCLAVE_OPENAI_MODEL_INFO='{"m": {...}}') are given as JSON.
    for key, value in list(values.items()):
        if isinstance(value, str) and value.lstrip()[:1] in "{[":
            try:
                values[key] = json.loads(value)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"CONCLAVE_{key.upper()} is not valid JSON: {exc}", hint="quote it as JSON") from exc
    return values


@dataclass(frozen=True)
class Withheld:
    """A value of an untrusted file that was not applied, and why it matters."""

    key: str
    """Its dotted setting name (``openai_base_url``, ``roles.critic``)."""
    shown: str
    """Its value as it may be shown (keys masked, URL credentials redacted)."""
    source: str
    """The origin it would have had (``file /path/.env``)."""
    effect: str
    """What it would do."""
    remedy: str = ""
    """How to apply it (``conclave trust ./.env``)."""


class LoadedSettings:
    """Settings plus the origin of every value (for ``conclave config show``).

    ``origins`` maps each top-level setting, and each nested one by its dotted name (``mcp_servers.files``,
    ``mcp_servers.files.url``, ``roles.critic``), to where it came from: ``command line``, ``environment``,
    ``file PATH`` or ``default``; a value merged from several sources names them all, highest first, joined by
    `` + ``. ``withheld`` lists the values of an untrusted ``.env`` that were not applied."""

    def __init__(
        self,
        settings: Settings,
        origins: dict[str, str],
        notices: list[str] | None = None,
        withheld: list[Withheld] | None = None,
    ):
        self.settings = settings
        self.origins = origins
        self.notices = notices or []
        self.withheld = withheld or []


def _leaves(value: Any, path: Path_) -> list[Path_]:
    if isinstance(value, dict) and value:
        return [leaf for key, sub in value.items() for leaf in _leaves(sub, (*path, key))]
    return [path]


def _merge(
    base: dict[str, Any], top: dict[str, Any], origin: str, sources: dict[Path_, str], prefix: Path_ = ()
) -> dict[str, Any]:
    """``top`` merged over ``base`` (nested tables key by key); ``sources`` records the origin of every leaf."""
    out = dict(base)
    for key, value in top.items():
        path = (*prefix, key)
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value, origin, sources, path)
            continue
        for replaced in [p for p in sources if p[: len(path)] == path]:
            del sources[replaced]
        out[key] = value
        for leaf in _leaves(value, path):
            sources[leaf] = origin
    return out


def _origins(sources: dict[Path_, str], precedence: list[str]) -> dict[str, str]:
    """Each top-level and nested setting's origin: the sources of the leaves under it, highest first."""
    under: dict[Path_, set[str]] = {}
    for leaf, origin in sources.items():
        for size in range(1, len(leaf) + 1):
            under.setdefault(leaf[:size], set()).add(origin)
    return {".".join(path): " + ".join(o for o in reversed(precedence) if o in found) for path, found in under.items()}


def _origin_of(origins: dict[str, str], loc: tuple[Any, ...]) -> str:
    """The origin of a validation error's location: its own, or its nearest parent's."""
    for size in range(len(loc), 0, -1):
        found = origins.get(".".join(str(part) for part in loc[:size]))
        if found:
            return found
    return "default"


def _invalid_settings(exc: ValidationError, origins: dict[str, str]) -> ConfigError:
    """One error for the values that failed validation. Our validators' messages already say what to use, so they
    are shown without pydantic's "Value error, " prefix; a single bad command-line value is named by its message
    alone (the user just typed the option)."""
    problems = [
        (".".join(str(p) for p in err["loc"]), _origin_of(origins, tuple(err["loc"])), err["msg"])
        for err in exc.errors()
    ]
    problems = [(where, origin, msg.removeprefix("Value error, ")) for where, origin, msg in problems]
    if len(problems) == 1 and problems[0][1] == "command line":
        return ConfigError(problems[0][2], hint="correct the option (each command's --help lists its options)")
    listed = "; ".join(f"{where} ({origin}): {msg}" for where, origin, msg in problems)
    return ConfigError(f"invalid settings: {listed}", hint="see `conclave config show` and README 'Configuration'")


def _names_a_file(spec: Any) -> bool:
    """Whether a model spec names a GGUF file (``embedded:./weights.gguf``), not a built-in or tuned model."""
    if not isinstance(spec, str) or not spec.strip().startswith("embedded:"):
        return False
    from conclave.models.spec import EMBEDDED_NAMES, TUNED_NAME

    name = spec.strip()[len("embedded:") :].strip()
    return bool(name) and name.lower() not in EMBEDDED_NAMES and not TUNED_NAME.match(name)


def _shown(key: str, value: Any) -> str:
    from conclave.redact import redact, redact_url

    if key in _SECRET_FIELDS:
        return mask_secret(str(value))
    if isinstance(value, list):
        return ", ".join(redact_url(str(v)) for v in value)
    return redact_url(str(value)) if "://" in str(value) else redact(str(value))


def _withhold(values: dict[str, Any], source: str, remedy: str) -> tuple[dict[str, Any], list[Withheld]]:
    """``values`` without what an untrusted file may not set: endpoints, keys, the home, models given as paths."""
    kept = dict(values)
    withheld = []
    for key, effect in DOTENV_GATED_FIELDS.items():
        if key in kept:
            withheld.append(Withheld(key, _shown(key, kept.pop(key)), source, effect, remedy))
    if _names_a_file(kept.get("model")):
        withheld.append(Withheld("model", _shown("model", kept.pop("model")), source, _MODEL_PATH_EFFECT, remedy))
    if isinstance(kept.get("roles"), dict):
        roles = dict(kept["roles"])
        for role, spec in list(roles.items()):
            if _names_a_file(spec):
                shown = _shown("model", roles.pop(role))
                withheld.append(Withheld(f"roles.{role}", shown, source, _MODEL_PATH_EFFECT, remedy))
        kept["roles"] = roles
    return kept, withheld


def _refuse_mcp_servers(values: dict[str, Any], source: Path, why: str) -> None:
    """A ``.env`` (or a home it chose) may not name MCP servers, allowed or not: a server is a program to start."""
    if "mcp_servers" in values:
        raise ConfigError(
            f"mcp_servers is set by {source}, {why}: MCP servers start programs, so they are read only from your "
            "environment or your own settings.toml",
            hint="move mcp_servers to $CONCLAVE_HOME/settings.toml if you trust it, or delete it from the folder's file",
        )


def _anchor_mcp_servers(values: dict[str, Any], folder: Path) -> dict[str, Any]:
    """The stdio servers of a settings file run from that file's folder: ``cwd`` defaults to it (a relative one is
    taken from it), and so does a relative program path (``./server.py``, ``bin/server``)."""
    servers = values.get("mcp_servers")
    if not isinstance(servers, dict):
        return values
    anchored: dict[str, Any] = {}
    for name, server in servers.items():
        if isinstance(server, dict) and isinstance(server.get("command"), list) and server["command"]:
            server = dict(server)
            cwd = server.get("cwd")
            server["cwd"] = str(folder / Path(cwd).expanduser()) if isinstance(cwd, str) and cwd else str(folder)
            program = server["command"][0]
            if isinstance(program, str) and ("/" in program or os.sep in program):
                server["command"] = [str(folder / Path(program).expanduser()), *server["command"][1:]]
        anchored[name] = server
    return {**values, "mcp_servers": anchored}


def _default_home() -> Path:
    return Path(Settings.model_fields["home"].get_default(call_default_factory=True))


def trusted_home(*, env: dict[str, str] | None = None, home: str | Path | None = None) -> Path:
    """The home the user chose (a flag, else ``CONCLAVE_HOME`` of the environment, else the default data folder),
    whatever a ``.env`` says: where allowances of ``.env`` files are kept (``conclave/trust.py``)."""
    environ = os.environ if env is None else env
    chosen = home or environ.get("CONCLAVE_HOME")
    return Path(chosen).expanduser() if chosen else _default_home()


def load_settings_with_origins(
    *, env: dict[str, str] | None = None, dotenv_path: Path | None = None, **overrides: Any
) -> LoadedSettings:
    """Read every source in precedence order and record where each value came from."""
    from conclave import trust

    environ = dict(os.environ if env is None else env)
    dotenv_file = dotenv_path if dotenv_path is not None else Path.cwd() / ".env"
    dotenv_vars: dict[str, str | None] = dict(dotenv_values(dotenv_file)) if dotenv_file.is_file() else {}

    overrides = {k: v for k, v in overrides.items() if v is not None}
    env_values = _from_variables(environ)  # type: ignore[arg-type]
    dotenv_vals = _from_variables(dotenv_vars)
    dotenv_origin = f"file {dotenv_file}"
    _refuse_mcp_servers(dotenv_vals, dotenv_file, "which comes with the working folder")
    store = trust.store_path(trusted_home(env=environ, home=overrides.get("home")))
    withheld: list[Withheld] = []
    if dotenv_vals and not trust.is_allowed(store, dotenv_file):
        dotenv_vals, withheld = _withhold(dotenv_vals, dotenv_origin, trust_command(dotenv_file))

    home_raw = overrides.get("home") or env_values.get("home") or dotenv_vals.get("home")
    home = Path(home_raw).expanduser() if home_raw else _default_home()
    home_from_dotenv = not overrides.get("home") and not env_values.get("home") and bool(dotenv_vals.get("home"))
    toml_path = home / "settings.toml"
    toml_origin = f"file {toml_path}"
    toml_values: dict[str, Any] = {}
    if toml_path.is_file():
        try:
            toml_values = tomllib.loads(toml_path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{toml_path} is not valid TOML: {exc}", hint="fix or remove the file") from exc
    if home_from_dotenv:
        # The allowance covers the .env's own content, not the files of the home it points to.
        _refuse_mcp_servers(toml_values, toml_path, f"in the home {dotenv_file} chose")
        remedy = f"set it in your environment, or in {dotenv_file} and allow that again"
        toml_values, from_toml = _withhold(toml_values, toml_origin, remedy)
        withheld += from_toml
    toml_values = _anchor_mcp_servers(toml_values, toml_path.parent)

    layers = [
        (toml_origin, toml_values),
        (dotenv_origin, dotenv_vals),
        ("environment", env_values),
        ("command line", overrides),
    ]
    merged: dict[str, Any] = {}
    sources: dict[Path_, str] = {}
    for origin, values in layers:
        merged = _merge(merged, values, origin, sources)
    merged["home"] = str(home)
    origins = _origins(sources, [origin for origin, _ in layers])
    try:
        settings = Settings.model_validate(merged)
    except ValidationError as exc:
        raise _invalid_settings(exc, origins) from exc
    for name in Settings.model_fields:
        origins.setdefault(name, "default")
    settings.register_secrets()
    # A withheld value matters only where nothing above the file sets the same setting.
    withheld = [w for w in withheld if not _set_above(w.key, env_values, overrides)]
    notices = _announce(withheld, dotenv_file, home_from_dotenv)
    return LoadedSettings(settings, origins, notices, withheld)


def _set_above(key: str, *layers: dict[str, Any]) -> bool:
    for values in layers:
        node: Any = values
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            return True
    return False


def trust_command(dotenv_file: Path) -> str:
    """The exact command that allows ``dotenv_file`` (``conclave trust ./.env`` for the working folder's)."""
    import shlex

    path = dotenv_file if dotenv_file.is_absolute() else Path.cwd() / dotenv_file
    try:
        shown = f"./{path.relative_to(Path.cwd())}"
    except ValueError:
        shown = str(path)
    return f"conclave trust {shlex.quote(shown)}"


def _announce(withheld: list[Withheld], dotenv_file: Path, home_from_dotenv: bool) -> list[str]:
    """One note on stderr (once per process and value) naming each withheld value and how to apply it; returns the
    note's value lines."""
    lines = [f"{w.key} = {w.shown} ({w.effect})" for w in withheld]
    fresh = [line for line in lines if (str(dotenv_file), line) not in _ANNOUNCED]
    if not fresh:
        return lines
    _ANNOUNCED.update((str(dotenv_file), line) for line in fresh)
    body = "\n".join(f"  {line}" for line in fresh)
    if home_from_dotenv:  # the .env is allowed; these come from the settings.toml of the home it chose
        source = withheld[0].source.removeprefix("file ")
        head = f"{source} is in the home that {dotenv_file} chose, so these of its values are not applied:"
        tail = (
            f"  set them in your environment, or in {dotenv_file} and allow that again ({trust_command(dotenv_file)})"
        )
    else:
        head = f"{dotenv_file} is not trusted, so these of its values are not applied:"
        tail = f"  to apply them, allow the file: {trust_command(dotenv_file)} (any later edit to it withdraws that)"
    print(f"note: {head}\n{body}\n{tail}", file=sys.stderr)
    return lines


def set_toml_value(path: Path, key: str, value: str) -> Path:
    """Set a top-level string ``key = "value"`` in a settings.toml, keeping everything else as written (comments,
    sections); the result must still parse and validate, or nothing is written."""
    try:
        text = path.read_text(encoding="utf-8") if path.is_file() else ""
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}", hint="fix or remove the file") from exc
    lines = text.splitlines()
    line = f"{key} = {json.dumps(value, ensure_ascii=False)}"
    first_table = next((i for i, text_line in enumerate(lines) if text_line.lstrip().startswith("[")), len(lines))
    found = next((i for i in range(first_table) if re.match(rf"\s*{re.escape(key)}\s*=", lines[i])), None)
    if found is not None:
        lines[found] = line
    else:
        lines.insert(first_table, line)
    new = "\n".join(lines) + "\n"
    try:
        Settings.model_validate({k: v for k, v in tomllib.loads(new).items()})
    except (tomllib.TOMLDecodeError, ValidationError) as exc:
        raise ConfigError(f"{path} would not be valid with {line}: {exc}", hint="fix the file by hand") from exc
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(new, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}", hint="check the folder's permissions") from exc
    return path


def load_settings(**overrides: Any) -> Settings:
    """The effective settings (see the module docstring for precedence)."""
    return load_settings_with_origins(**overrides).settings
