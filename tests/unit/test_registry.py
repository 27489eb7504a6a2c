"""The extension-point registry (conclave/registry.py): names, aliases, plugins that load and plugins that do not."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest

from conclave import registry as registry_module
from conclave.errors import ConfigError
from conclave.registry import Registry


def test_names_aliases_and_unknown_names() -> None:
    reg: Registry[str] = Registry("widget", "conclave.test-widgets")
    reg.add("alpha", "A", aliases=("a",))
    reg.add("beta", "B")
    assert reg.names() == ("alpha", "beta")
    assert reg.get("a") == "A" and reg.canonical("a") == "alpha"
    assert "a" in reg and "gamma" not in reg
    with pytest.raises(ConfigError) as unknown:
        reg.get("gamma")
    assert unknown.value.message == "unknown widget 'gamma'" and unknown.value.hint == "use one of: alpha, beta"
    with pytest.raises(ValueError, match="registered twice"):
        reg.add("a", "again")


def test_plugins_load_and_a_broken_one_is_reported_not_fatal(monkeypatch: pytest.MonkeyPatch) -> None:
    points = [
        EntryPoint("upper", "builtins:str", "conclave.test-widgets"),
        EntryPoint("broken", "no_such_module_anywhere:thing", "conclave.test-widgets"),
        EntryPoint("alpha", "builtins:str", "conclave.test-widgets"),
    ]
    monkeypatch.setattr(registry_module, "entry_points", lambda group: [p for p in points if p.group == group])
    reg: Registry[str] = Registry("widget", "conclave.test-widgets", lambda name, loaded: f"{name}:{loaded.__name__}")
    reg.add("alpha", "A")
    assert reg.names() == ("alpha", "upper")
    assert reg.get("upper") == "upper:str"
    assert reg.get("alpha") == "A"  # a plugin cannot replace a built-in
    assert any(e.startswith("alpha (builtins:str): the name is taken") for e in reg.plugin_errors)
    assert any(e.startswith("broken (no_such_module_anywhere:thing): ModuleNotFoundError") for e in reg.plugin_errors)


def test_methods_and_scorers_come_from_their_registries() -> None:
    from conclave.workflows.evaluation.scorers import SCORERS, resolve_scorers
    from conclave.workflows.methods import METHODS, method_help, searches_knowledge

    assert METHODS.names()[:5] == ("coa", "cot", "rag", "react", "direct")
    assert method_help().startswith("coa (default), cot, rag, react, direct or rag-cot")
    assert [m for m in ("coa", "cot", "rag", "react", "direct", "coa:k=3") if searches_knowledge(m)] == [
        "coa",
        "rag",
        "react",
        "coa:k=3",
    ]
    assert resolve_scorers(["em,judge", "recall@k", "exact"]) == ["exact_match", "correctness", "recall"]
    assert [s.name for s in SCORERS if s.judge] == ["correctness", "faithfulness"]


def test_backend_capabilities_are_properties_of_the_client() -> None:
    from conclave.models.backends import capabilities_for
    from conclave.models.capabilities import EMBEDDED, OLLAMA, OPENAI, Capabilities, capabilities_of
    from conclave.models.resilience import ResilientClient
    from conclave.models.structured import schema_args

    class Bare:  # any client: no capabilities declared
        pass

    wrapped = ResilientClient(Bare(), spec="ollama/qwen", where="here", capabilities=OLLAMA)  # type: ignore[arg-type]
    assert capabilities_of(wrapped) is OLLAMA and wrapped.remote
    assert schema_args(wrapped, {"type": "object"}, "x") == {"format": {"type": "object"}}
    embedded = ResilientClient(Bare(), spec="embedded", where="here", capabilities=EMBEDDED)  # type: ignore[arg-type]
    assert not embedded.remote and schema_args(embedded, {"type": "object"}, "x") == {"json_schema": {"type": "object"}}
    assert capabilities_of(Bare()) == Capabilities()
    assert capabilities_for("openai/gpt-4o") is OPENAI and capabilities_for("embedded:smollm2").in_process


def test_parallel_requests_per_backend_and_engine(tmp_path) -> None:
    """How many requests a model serves at once: 1 on llama-cpp-python, its slots on xllamacpp, no limit of its own
    for a remote backend; a client says the same through its wrappers."""
    from conclave.models.backends import parallel_requests
    from conclave.models.capabilities import EMBEDDED, OLLAMA, parallel_of
    from conclave.models.resilience import ResilientClient
    from conclave.settings import Settings

    serial = Settings(home=tmp_path, embedded_engine="llama-cpp-python")
    slots = Settings(home=tmp_path, embedded_engine="xllamacpp", embedded_parallel=6)
    assert parallel_requests("embedded", serial) == 1 and parallel_requests("embedded:smollm2", slots) == 6
    assert parallel_requests("openai/gpt-4o", slots) is None and parallel_requests("ollama/qwen", serial) is None

    class Bare:
        pass

    class Slotted:
        conclave_parallel = 3

    wrap = ResilientClient
    assert parallel_of(wrap(Bare(), spec="embedded", where="here", capabilities=EMBEDDED)) == 1  # type: ignore[arg-type]
    assert parallel_of(wrap(Slotted(), spec="embedded", where="here", capabilities=EMBEDDED)) == 3  # type: ignore[arg-type]
    assert parallel_of(wrap(Bare(), spec="ollama/q", where="here", capabilities=OLLAMA)) is None  # type: ignore[arg-type]


def test_the_xllamacpp_engine_caches_its_answers_apart(tmp_path) -> None:
    """Engines may answer the same GGUF differently at temperature 0: xllamacpp's identity (the default engine)
    says so; llama-cpp-python's identity is what it was before the setting existed (its caches stay valid)."""
    from conclave.models.backends import BACKENDS, parse_spec
    from conclave.settings import Settings

    identity = BACKENDS.get("embedded").identity
    spec = parse_spec("embedded:smollm2")
    llama = identity(spec, Settings(home=tmp_path, embedded_engine="llama-cpp-python"))
    other = identity(spec, Settings(home=tmp_path))
    assert "engine" not in llama and set(llama) == {"provider", "model", "size"}
    assert other == {**llama, "engine": "xllamacpp"}
    assert identity(spec, Settings(home=tmp_path, embedded_engine="xllamacpp", embedded_parallel=2)) == other


async def test_a_backend_plugin_is_a_spec_prefix_everywhere(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """A function (model, settings) -> client under the conclave.backends group becomes `NAME/model`: parsed, built
    with retries, keyed in the response cache and described to workflow users."""
    from conclave.workflows.evaluation.cache import cache_identity
    from conclave.workflows.files.access import endpoint_of

    from conclave.models import make_client
    from conclave.models.backends import BACKENDS, _plugin_backend, parse_spec
    from conclave.models.resilience import ResilientClient
    from conclave.settings import Settings

    made: list[str] = []

    def scripted(model: str, settings: object) -> object:
        """Answers from a script (a test backend)."""
        made.append(model)
        from autogen_ext.models.replay import ReplayChatCompletionClient

        return ReplayChatCompletionClient(["Answer: 4"])

    monkeypatch.setitem(BACKENDS._entries, "scripted", _plugin_backend("scripted", scripted))
    settings = Settings(home=tmp_path)
    assert parse_spec("scripted/m1").provider == "scripted" and str(parse_spec("scripted/m1")) == "scripted/m1"
    client = await make_client("scripted/m1", settings)
    assert isinstance(client, ResilientClient) and made == ["m1"] and client.remote
    assert cache_identity(settings, "scripted/m1")["backend"] == {"provider": "scripted", "model": "m1"}
    assert endpoint_of("scripted/m1", settings) == "the scripted backend (a plugin)"
    monkeypatch.delitem(BACKENDS._entries, "scripted")
    with pytest.raises(ConfigError, match="unknown model spec 'scripted/m1'"):
        parse_spec("scripted/m1")
