"""Settings precedence: flags > CONCLAVE_* env > .env > settings.toml > defaults, with origins recorded."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from conclave.errors import ConfigError
from conclave.settings import Settings, load_settings, load_settings_with_origins, mask_secret


def write_toml(home: Path, text: str) -> None:
    (home / "settings.toml").write_text(text, encoding="utf-8")


def test_defaults_when_nothing_is_configured(conclave_home: Path) -> None:
    loaded = load_settings_with_origins()
    s = loaded.settings
    assert s.home == conclave_home
    assert s.model is None and s.method == "coa" and s.embedder == "local"
    assert loaded.origins["model"] == "default"
    assert loaded.origins["home"] == "environment"


def test_each_layer_overrides_the_one_below(
    conclave_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_toml(conclave_home, 'model = "ollama/from-toml"\ncollection = "toml-col"\nchunk_size = 500\ntop_k = 7\n')
    (tmp_path / ".env").write_text(
        "CONCLAVE_MODEL=ollama/from-dotenv\nCONCLAVE_COLLECTION=dotenv-col\nCONCLAVE_CHUNK_SIZE=600\n"
    )
    monkeypatch.setenv("CONCLAVE_MODEL", "ollama/from-env")
    monkeypatch.setenv("CONCLAVE_COLLECTION", "env-col")
    loaded = load_settings_with_origins(model="embedded")
    s = loaded.settings
    assert s.model == "embedded" and loaded.origins["model"] == "command line"
    assert s.collection == "env-col" and loaded.origins["collection"] == "environment"
    assert (
        s.chunk_size == 600
        and loaded.origins["chunk_size"].startswith("file ")
        and ".env" in loaded.origins["chunk_size"]
    )
    assert s.top_k == 7 and "settings.toml" in loaded.origins["top_k"]


def test_nested_values_merge_across_layers(conclave_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_toml(conclave_home, '[roles]\ncritic = "ollama/big"\n[coa]\nsamples = 3\n')
    monkeypatch.setenv("CONCLAVE_ROLES__JUDGE", "openai/gpt-4o-mini")
    s = load_settings(model="embedded")
    assert s.role_model("critic") == "ollama/big"
    assert s.role_model("judge") == "openai/gpt-4o-mini"
    assert s.role_model("planner") == "embedded"  # falls back to `model`
    assert s.coa.samples == 3 and s.coa.max_replans == 2


def test_standard_variables_are_read_below_conclave_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONCLAVE_OLLAMA_HOST")
    monkeypatch.setenv("OLLAMA_HOST", "http://127.0.0.1:1234")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-1234567890")
    s = load_settings()
    assert s.ollama_host == "http://127.0.0.1:1234"
    assert s.openai_api_key is not None and s.openai_api_key.get_secret_value() == "sk-test-1234567890"
    monkeypatch.setenv("CONCLAVE_OLLAMA_HOST", "http://127.0.0.1:4321")
    assert load_settings().ollama_host == "http://127.0.0.1:4321"


def test_secrets_are_masked_in_redacted_output(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-verysecretvalue99")
    data = load_settings().redacted()
    assert "verysecret" not in str(data)
    assert data["openai_api_key"] == mask_secret("sk-verysecretvalue99")
    assert "sk-verysecretvalue99" not in repr(load_settings())


def test_settings_are_frozen() -> None:
    s = load_settings()
    with pytest.raises(ValidationError, match="frozen"):
        s.model = "embedded"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("toml", "needle"),
    [("chunk_size = 5", "chunk_size"), ('method = ""', "method"), ("this is not toml", "not valid TOML")],
)
def test_invalid_settings_name_the_field_and_source(conclave_home: Path, toml: str, needle: str) -> None:
    write_toml(conclave_home, toml)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert needle in info.value.message


def test_an_unknown_method_is_refused_where_methods_are_known(conclave_home: Path) -> None:
    """The core loads settings without the method registry (it imports no layer above it); the interfaces check
    the method when they load settings, naming the file it came from."""
    from conclave.cli import cli_settings

    write_toml(conclave_home, 'method = "magic"')
    assert load_settings().method == "magic"
    with pytest.raises(ConfigError) as info:
        cli_settings()
    assert "unknown method 'magic'" in info.value.message and "settings.toml" in info.value.message
    assert cli_settings(method="cot").method == "cot", "a flag above the file wins, as for every setting"


def test_json_values_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONCLAVE_OPENAI_MODEL_INFO", '{"my-model": {"vision": true, "family": "llama"}}')
    s = load_settings()
    assert s.openai_model_info["my-model"].vision is True
    monkeypatch.setenv("CONCLAVE_OPENAI_MODEL_INFO", "{broken")
    with pytest.raises(ConfigError):
        load_settings()


# -- issue 13: a .env in the working folder is untrusted --------------------------------------------------------


def test_a_dotenv_that_redirects_the_key_is_withheld_and_named(
    conclave_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Class 2: OPENAI_BASE_URL from ./.env would send the shell's key elsewhere: withheld until `conclave trust`,
    and the user is told on stderr (tests/unit/test_dotenv_trust.py covers allowing it)."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-users-shell-0123456789")
    (tmp_path / ".env").write_text("OPENAI_BASE_URL=http://127.0.0.1:9/v1\n")
    loaded = load_settings_with_origins()
    assert loaded.settings.openai_base_url is None
    err = capsys.readouterr().err
    assert ".env is not trusted" in err and "conclave trust ./.env" in err
    assert "openai_base_url = http://127.0.0.1:9/v1" in err and "API key" in err
    assert "sk-from-the-users-shell" not in err
    assert loaded.notices and "openai_base_url" in loaded.notices[0]
    load_settings()
    assert capsys.readouterr().err == "", "announced once per process, not on every load"


def test_a_dotenv_that_moves_conclave_home_is_withheld(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Class 1/2: CONCLAVE_HOME=.state from ./.env (a cloned folder's own state, and its settings.toml)."""
    for key in [k for k in __import__("os").environ if k.startswith("CONCLAVE_")]:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("CONCLAVE_HOME=.state\n")
    (tmp_path / ".state").mkdir()
    write_toml(tmp_path / ".state", 'ollama_host = "http://127.0.0.1:7"\n')
    settings = load_settings()
    assert settings.home == tmp_path / "data" / "conclave" and settings.ollama_host != "http://127.0.0.1:7"
    err = capsys.readouterr().err
    assert "home = .state" in err and "conclave trust ./.env" in err


def test_settings_from_the_environment_are_not_announced(
    conclave_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:6/v1")
    assert load_settings().openai_base_url == "http://127.0.0.1:6/v1"
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("name", ["", "   "])
def test_an_empty_collection_name_is_refused(conclave_home: Path, name: str) -> None:
    """Class 5: `--collection ''` used to write into demo silently."""
    with pytest.raises(ConfigError, match="^the collection name is empty"):  # a command-line value: its message
        load_settings(collection=name)


def test_roles_match_the_agents_that_call_a_model(tmp_path) -> None:
    from conclave.settings import AGENT_ROLES, ROLES

    assert AGENT_ROLES == ("planner", "reasoner", "critic", "writer")
    assert ROLES == (*AGENT_ROLES, "judge")
    settings = Settings(home=tmp_path, model="embedded", roles={"reasoner": "ollama/qwen"})
    assert settings.role_model("writer") == "ollama/qwen"  # the writer writes out the reasoner's chain
    assert settings.role_model("planner") == "embedded"
    writer = Settings(home=tmp_path, model="embedded", roles={"reasoner": "ollama/qwen", "writer": "embedded:smollm2"})
    assert writer.role_model("writer") == "embedded:smollm2"


def test_a_retriever_role_is_refused_with_the_reason(tmp_path) -> None:
    with pytest.raises(ValidationError, match="the retriever calls no model"):
        Settings(home=tmp_path, roles={"retriever": "embedded"})


def test_the_embedded_engine_settings_and_their_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert settings.embedded_engine == "xllamacpp" and settings.embedded_parallel == 4  # wheels: no compiler
    monkeypatch.setenv("CONCLAVE_EMBEDDED_ENGINE", "xllamacpp")
    monkeypatch.setenv("CONCLAVE_EMBEDDED_PARALLEL", "8")
    loaded = load_settings_with_origins()
    assert loaded.settings.embedded_engine == "xllamacpp" and loaded.settings.embedded_parallel == 8
    assert loaded.origins["embedded_engine"] == loaded.origins["embedded_parallel"] == "environment"
    assert load_settings(embedded_engine="llama-cpp-python").embedded_engine == "llama-cpp-python"


@pytest.mark.parametrize(
    ("variable", "value", "needle"),
    [
        ("CONCLAVE_EMBEDDED_ENGINE", "vllm", "embedded_engine (environment): Input should be 'llama-cpp-python' or"),
        ("CONCLAVE_EMBEDDED_PARALLEL", "0", "embedded_parallel (environment): Input should be greater than or equal"),
        ("CONCLAVE_EMBEDDED_PARALLEL", "many", "embedded_parallel (environment): Input should be a valid integer"),
    ],
)
def test_a_wrong_engine_setting_names_the_field(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, needle: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as refused:
        load_settings()
    assert needle in refused.value.message
