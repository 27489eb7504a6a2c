"""``ask`` options of everyday use (issue 17 §5): --system, -o KEY=VALUE, saved templates, `models default`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conclave.cli.main import app
from typer.testing import CliRunner

from conclave.errors import ConfigError
from conclave.settings import Settings, load_settings
from conclave.templates import Template, load_template, parse_options, save_template

cli = CliRunner()


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Settings, list[Any]]]:
    """`conclave ask` in-process on a scripted direct-method client that records each call's settings and messages."""
    import conclave.workflows.runner as runner
    from autogen_core.models import CreateResult
    from autogen_ext.models.replay import ReplayChatCompletionClient

    from tests.unit.test_team import JSON_INFO

    calls: list[tuple[Settings, list[Any]]] = []
    real = runner.build_context

    class Recording(ReplayChatCompletionClient):
        async def create(self, messages: Any, **kwargs: Any) -> CreateResult:
            calls[-1][1].extend(messages)
            return await super().create(messages, **kwargs)

        def create_stream(self, messages: Any, **kwargs: Any) -> Any:
            calls[-1][1].extend(messages)
            return super().create_stream(messages, **kwargs)

    async def scripted(question: str, settings: Settings, **kwargs: Any) -> Any:
        calls.append((settings, []))
        client = Recording(["Bonjour.\nAnswer: Paris"], model_info=JSON_INFO)
        return await real(
            question,
            settings,
            **{
                **kwargs,
                "knowledge": False,
                "clients": {r: client for r in ("planner", "reasoner", "critic", "writer")},
            },
        )

    monkeypatch.setattr(runner, "build_context", scripted)
    return calls


def test_system_and_options_reach_the_answering_call(
    recorded: list[tuple[Settings, list[Any]]], conclave_home: Path
) -> None:
    result = cli.invoke(
        app,
        [
            "ask",
            "--method",
            "direct",
            "-s",
            "Answer in French.",
            "-o",
            "temperature=0.4",
            "-o",
            "max_tokens=200",
            "--no-log",
            "What is the capital of France?",
        ],
    )
    assert result.exit_code == 0, result.output
    settings, messages = recorded[0]
    assert settings.system == "Answer in French." and settings.temperature == 0.4 and settings.max_tokens == 200
    assert str(messages[0].content).endswith("The user's instructions for the answer:\nAnswer in French.")


def test_bad_options_are_one_clear_error(conclave_home: Path) -> None:
    unknown = cli.invoke(app, ["ask", "-o", "top_p=0.9", "q?"])
    assert (
        isinstance(unknown.exception, ConfigError) and "unknown model option 'top_p=0.9'" in unknown.exception.message
    )
    assert "temperature, max_tokens, context_length" in (unknown.exception.hint or "")
    with pytest.raises(ConfigError, match="needs a float"):
        parse_options(["temperature=warm"])
    assert parse_options(["max-tokens=12"]) == {"max_tokens": 12}


def test_a_saved_template_is_used_and_flags_win(
    recorded: list[tuple[Settings, list[Any]]], conclave_home: Path
) -> None:
    saved = cli.invoke(
        app,
        [
            "ask",
            "--save",
            "french",
            "--method",
            "direct",
            "-s",
            "Answer in French.",
            "-o",
            "temperature=0.3",
            "--no-log",
            "What is the capital of France?",
        ],
    )
    assert saved.exit_code == 0, saved.output
    assert load_template(conclave_home, "french") == Template(
        system="Answer in French.", method="direct", options={"temperature": 0.3}
    )
    again = cli.invoke(app, ["ask", "-t", "french", "-o", "temperature=0.9", "--no-log", "And of Italy?"])
    assert again.exit_code == 0, again.output
    settings, _ = recorded[-1]
    assert settings.system == "Answer in French." and settings.temperature == 0.9, "the flag wins over the template"
    listed = json.loads(cli.invoke(app, ["templates", "--json"]).stdout)
    assert listed == {"french": {"system": "Answer in French.", "method": "direct", "options": {"temperature": 0.3}}}
    assert cli.invoke(app, ["templates", "rm", "french"]).exit_code == 0
    missing = cli.invoke(app, ["ask", "-t", "french", "q?"])
    assert isinstance(missing.exception, ConfigError) and "no template 'french'" in missing.exception.message


def test_a_template_file_is_data_against_a_closed_schema(conclave_home: Path) -> None:
    folder = conclave_home / "templates"
    folder.mkdir()
    (folder / "evil.json").write_text(json.dumps({"system": "x", "openai_base_url": "http://attacker"}))
    with pytest.raises(ConfigError, match="is not a valid template"):
        load_template(conclave_home, "evil")
    with pytest.raises(ConfigError, match="template name"):
        save_template(conclave_home, "../escape", Template())
    table = cli.invoke(app, ["templates"], terminal_width=160)
    assert table.exit_code == 0 and "not a valid template" in table.output


def test_models_default_writes_settings_toml_and_keeps_the_rest(conclave_home: Path) -> None:
    toml = conclave_home / "settings.toml"
    toml.write_text('# mine\ncollection = "notes"\nmodel = "embedded"\n\n[coa]\nsamples = 2\n', encoding="utf-8")
    result = cli.invoke(app, ["models", "default", "embedded:smollm2"])
    assert result.exit_code == 0, result.output
    assert toml.read_text(encoding="utf-8") == (
        '# mine\ncollection = "notes"\nmodel = "embedded:smollm2"\n\n[coa]\nsamples = 2\n'
    )
    settings = load_settings()
    assert settings.model == "embedded:smollm2" and settings.coa.samples == 2
    bad = cli.invoke(app, ["models", "default", "nonsense!!"])
    assert isinstance(bad.exception, ConfigError) and 'model = "embedded:smollm2"' in toml.read_text()
