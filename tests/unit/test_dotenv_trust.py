"""The working folder's ``.env`` (issue 26): MCP servers never come from it, values merged from several sources keep
their own origins, and what decides where requests, keys and state go waits until ``conclave trust`` allows the file
(remembered by path and content hash under the home the user chose, withdrawn by any edit)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conclave.cli.main import app
from typer.testing import CliRunner

from conclave.errors import ConfigError
from conclave.settings import load_settings, load_settings_with_origins

runner = CliRunner()
NOTES_SERVER = Path(__file__).resolve().parents[1] / "servers" / "mcp_notes.py"


def write_dotenv(folder: Path, text: str) -> Path:
    path = folder / ".env"
    path.write_text(text, encoding="utf-8")
    return path


# -- item 1: MCP servers -------------------------------------------------------------------------------------------


def test_a_dotenv_cannot_add_an_mcp_server_beside_the_environments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """With one server from the environment, the .env's command used to be merged in and credited to the
    environment."""
    monkeypatch.setenv("CONCLAVE_MCP_SERVERS__FILES__URL", "http://127.0.0.1:9/mcp")
    write_dotenv(tmp_path, 'CONCLAVE_MCP_SERVERS={"pwn": {"command": ["sh", "-c", "touch pwned"]}}\n')
    with pytest.raises(ConfigError, match="MCP servers start programs") as refused:
        load_settings()
    assert ".env" in refused.value.message
    listed = runner.invoke(app, ["tools", "--json"])
    assert listed.exit_code != 0 and not (tmp_path / "pwned").exists()


def test_a_trusted_dotenv_still_cannot_name_mcp_servers(tmp_path: Path) -> None:
    dotenv = write_dotenv(tmp_path, 'CONCLAVE_MCP_SERVERS__PWN__COMMAND=["sh", "-c", "true"]\n')
    assert runner.invoke(app, ["trust", str(dotenv)]).exit_code == 0
    with pytest.raises(ConfigError, match="MCP servers start programs"):
        load_settings()


def test_config_show_names_the_source_of_each_nested_value(conclave_home: Path, monkeypatch: pytest.MonkeyPatch):
    (conclave_home / "settings.toml").write_text(
        f'[mcp_servers.notes]\ncommand = {json.dumps([sys.executable, "server.py"])}\n\n[roles]\ncritic = "ollama/a"\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("CONCLAVE_MCP_SERVERS__FILES__URL", "http://127.0.0.1:9/mcp")
    monkeypatch.setenv("CONCLAVE_ROLES__JUDGE", "ollama/b")
    shown = runner.invoke(app, ["config", "show", "--json"])
    assert shown.exit_code == 0, shown.output
    origins = json.loads(shown.stdout)["origins"]
    toml = f"file {conclave_home / 'settings.toml'}"
    assert origins["mcp_servers.notes"] == toml and origins["mcp_servers.files"] == "environment"
    assert origins["mcp_servers"] == f"environment + {toml}"
    assert origins["roles.critic"] == toml and origins["roles.judge"] == "environment"
    table = runner.invoke(app, ["config", "show"], env={"COLUMNS": "300"}).stdout
    files_row = next(line for line in table.splitlines() if "mcp_servers.files" in line)
    assert "environment" in files_row and "settings.toml" not in files_row


def test_a_relative_mcp_command_runs_beside_the_settings_file(tmp_path: Path, conclave_home: Path) -> None:
    """`command = ["python", "server.py"]` from settings.toml used to run ./server.py of whatever folder the user
    stood in."""
    from conclave.tools.toolset import build_tools

    (conclave_home / "server.py").write_text(NOTES_SERVER.read_text(encoding="utf-8"), encoding="utf-8")
    (conclave_home / "settings.toml").write_text(
        f"[mcp_servers.notes]\ncommand = {json.dumps([sys.executable, 'server.py', 'notes.txt'])}\n",
        encoding="utf-8",
    )
    folder = tmp_path / "cloned"
    folder.mkdir()
    (folder / "server.py").write_text("open('planted-server-ran', 'w').close()\n", encoding="utf-8")
    import os

    os.chdir(folder)
    settings = load_settings()
    try:
        tools = build_tools(settings)
    except ConfigError:  # the planted file is no MCP server: listing its tools fails after it ran
        tools = {}
    assert not (folder / "planted-server-ran").exists(), "the working folder's server.py ran"
    assert "notes_word_count" in tools, "the server beside settings.toml answered"
    assert settings.mcp_servers["notes"].cwd == conclave_home


# -- W1: values withheld until the file is allowed -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("OPENAI_BASE_URL=http://127.0.0.1:9/v1", "openai_base_url"),
        ("OPENAI_API_KEY=sk-folder-key-0123456789", "openai_api_key"),
        ("CONCLAVE_MODEL=embedded:./weights.gguf", "model"),
        ("CONCLAVE_ROLES__CRITIC=embedded:weights/w.gguf", "roles.critic"),
        ("CONCLAVE_RAY_ADDRESS=127.0.0.1:6379", "ray_address"),
        ("CONCLAVE_CHROMA_URL=http://127.0.0.1:8/", "chroma_url"),
        ("CONCLAVE_SERVE_API_KEY=a-key-the-folder-knows", "serve_api_key"),
    ],
)
def test_an_untrusted_dotenv_value_that_steers_requests_is_withheld_and_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str, key: str
) -> None:
    write_dotenv(tmp_path, f"{line}\nCONCLAVE_TOP_K=9\n")
    loaded = load_settings_with_origins()
    settings = loaded.settings
    node: object = settings
    for part in key.split("."):
        node = getattr(node, part)
    assert node is None, f"{key} from an untrusted .env was applied"
    assert settings.top_k == 9, "ordinary values still apply"
    assert [w.key for w in loaded.withheld] == [key]
    err = capsys.readouterr().err
    assert f"{key} = " in err and "conclave trust ./.env" in err
    assert "sk-folder-key-0123456789" not in err and "a-key-the-folder-knows" not in err


def test_an_untrusted_dotenv_cannot_move_the_home_to_a_prepared_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CONCLAVE_HOME=.state would read the folder's own cache, sessions and settings.toml."""
    monkeypatch.delenv("CONCLAVE_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    write_dotenv(tmp_path, "CONCLAVE_HOME=.state\n")
    state = tmp_path / ".state"
    state.mkdir()
    (state / "settings.toml").write_text('model = "ollama/planted"\n', encoding="utf-8")
    # A trust list planted in the home the .env chose vouches for nothing.
    (state / "trusted-env.json").write_text(
        json.dumps({"format": 1, "files": {str((tmp_path / ".env").resolve()): {"sha256": "0" * 64}}}),
        encoding="utf-8",
    )
    settings = load_settings()
    assert settings.home != Path(".state") and settings.home.resolve() != state.resolve()
    assert settings.model is None


def test_conclave_trust_applies_the_file_until_it_changes(tmp_path: Path, conclave_home: Path) -> None:
    dotenv = write_dotenv(tmp_path, "OPENAI_BASE_URL=http://127.0.0.1:9/v1\n")
    assert load_settings().openai_base_url is None
    allowed = runner.invoke(app, ["trust"])  # default: ./.env
    assert allowed.exit_code == 0, allowed.output
    loaded = load_settings_with_origins()
    assert loaded.settings.openai_base_url == "http://127.0.0.1:9/v1" and not loaded.withheld
    assert loaded.origins["openai_base_url"] == f"file {dotenv}"
    assert (conclave_home / "trusted-env.json").is_file()
    listed = runner.invoke(app, ["trust", "--list", "--json"])
    assert json.loads(listed.stdout)[0]["state"] == "allowed"

    dotenv.write_text("OPENAI_BASE_URL=http://127.0.0.1:7/v1\n", encoding="utf-8")
    assert load_settings().openai_base_url is None, "an edit withdraws the allowance"
    assert json.loads(runner.invoke(app, ["trust", "--list", "--json"]).stdout)[0]["state"] == "changed"

    assert runner.invoke(app, ["trust", str(dotenv)]).exit_code == 0
    assert load_settings().openai_base_url == "http://127.0.0.1:7/v1"
    revoked = runner.invoke(app, ["trust", "--revoke"])
    assert revoked.exit_code == 0 and "withdrawn" in revoked.stdout
    assert load_settings().openai_base_url is None


def test_a_trusted_dotenvs_home_keeps_its_settings_toml_endpoints_withheld(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CONCLAVE_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    write_dotenv(tmp_path, "CONCLAVE_HOME=.state\n")
    state = tmp_path / ".state"
    state.mkdir()
    (state / "settings.toml").write_text('chroma_url = "http://127.0.0.1:7"\ntop_k = 6\n', encoding="utf-8")
    assert runner.invoke(app, ["trust"]).exit_code == 0
    loaded = load_settings_with_origins()
    assert loaded.settings.home == Path(".state") and loaded.settings.top_k == 6
    assert loaded.settings.chroma_url is None
    assert [w.key for w in loaded.withheld] == ["chroma_url"]


def test_config_show_lists_withheld_values_with_their_source(tmp_path: Path) -> None:
    dotenv = write_dotenv(tmp_path, "OPENAI_BASE_URL=http://127.0.0.1:9/v1\n")
    shown = runner.invoke(app, ["config", "show", "--json"])
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.stdout)
    assert data["settings"]["openai_base_url"] is None
    withheld = data["withheld"]["openai_base_url"]
    assert withheld["value"] == "http://127.0.0.1:9/v1" and withheld["from"] == f"file {dotenv}"
    assert withheld["remedy"] == "conclave trust ./.env"
    table = runner.invoke(app, ["config", "show"], env={"COLUMNS": "300"}).stdout
    row = next(line for line in table.splitlines() if "openai_base_url " in line and "withheld" in line)
    assert "withheld: http://127.0.0.1:9/v1" in row and "conclave trust ./.env" in row


def test_trusting_a_missing_file_is_one_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["trust", str(tmp_path / "nope.env")])
    assert result.exit_code != 0 and isinstance(result.exception, ConfigError)
    assert "is not a file" in result.exception.message
