"""Text from models, documents and servers reaches the terminal as text: no escape sequences, no Rich markup."""

from __future__ import annotations

import io
from typing import Any

import pytest
from rich.console import Console
from rich.text import Text

from conclave.events import (
    AnswerDelta,
    AnswerReady,
    ChainDrafted,
    Critique,
    Event,
    Passage,
    PlanMade,
    Retrieved,
    RunFailed,
    RunFinished,
    RunStarted,
    StepFinished,
    ToolCalled,
    Usage,
)
from conclave.terminal import escape_markup, safe_rich_text, safe_text

TITLE = "\x1b]0;pwned\x07"
CLIPBOARD = "\x1b]52;c;cm0gLXJmIH4K\x07"
RED = "\x1b[31m"
RESET = "\x1b[0m"


# -- safe_text -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        (f"{TITLE}hello", "hello"),
        (f"copy{CLIPBOARD} this", "copy this"),
        ("copy\x1b]52;c;cm0gLXJmIH4K\x1b\\ this", "copy this"),  # OSC ended by ST instead of BEL
        (f"{RED}red{RESET} text", "red text"),
        ("\x1b[2J\x1b[1;1Hcleared", "cleared"),
        ("\x1bcreset", "reset"),  # ESC c: full terminal reset
        ("\x9b31mC1 csi", "C1 csi"),
        ("\x9d0;title\x9cafter", "after"),
        ("bell\x07 back\x08space del\x7f", "bell backspace del"),
        ("line\r\nnext\rlast", "line\nnext\nlast"),
        ("abc\u202edcba\u202c \u2066iso\u2069", "abcdcba iso"),
        ("tab\there\nnewline", "tab\there\nnewline"),
        ("ünïcødé · 漢字 · Ελληνικά · 🙂 — “quotes”", "ünïcødé · 漢字 · Ελληνικά · 🙂 — “quotes”"),
        ("[/] [black on black]secret", "[/] [black on black]secret"),
    ],
)
def test_safe_text(raw: str, shown: str) -> None:
    assert safe_text(raw) == shown


def test_safe_text_leaves_no_control_characters_in_any_chunking() -> None:
    """A stream may split a sequence anywhere: every piece, cleaned alone, holds no ESC or other control."""
    raw = f"a{TITLE}b{CLIPBOARD}c{RED}d\x9b1me{RESET}"
    for cut in range(len(raw) + 1):
        joined = safe_text(raw[:cut]) + safe_text(raw[cut:])
        assert not any(ord(ch) < 32 or 0x7F <= ord(ch) <= 0x9F for ch in joined), (cut, joined)


def test_escape_markup_shows_the_literal_text() -> None:
    console = Console(file=io.StringIO(), width=200, color_system=None)
    console.print(f"[bold red]error:[/] {escape_markup('/tmp/[/]/[black on black]secret' + TITLE)}")
    assert console.file.getvalue() == "error: /tmp/[/]/[black on black]secret\n"  # type: ignore[attr-defined]


def test_safe_rich_text_keeps_styles_on_the_kept_characters() -> None:
    text = Text()
    text.append("ok ", style="bold")
    text.append(f"{RED}bad{RESET}", style="red")
    text.append(" end", style="dim")
    clean = safe_rich_text(text)
    assert clean.plain == "ok bad end"
    assert [(s.start, s.end, str(s.style)) for s in clean.spans] == [(0, 3, "bold"), (3, 6, "red"), (6, 10, "dim")]
    plain = Text("nothing to do")
    assert safe_rich_text(plain) is plain


# -- the CLI's trace and answer ------------------------------------------------------------------------------


def _run_events(evil: str) -> list[Event]:
    passage = Passage(id="p1" + evil, source=f"doc{evil}.md", text=f"text {evil}", score=0.5, title=f"T{evil}")
    return [
        RunStarted(question=f"q{evil}", method="coa", models={"reasoner": f"embedded{evil}"}, collection=f"c{evil}"),
        PlanMade(subquestions=[{"question": f"sub{evil}", "needs": f"knowledge{evil}"}]),
        Retrieved(query=f"query{evil}", passages=[passage]),
        ChainDrafted(text=f"[chain{evil}]\nline two{evil}", form=f"text{evil}"),
        StepFinished(step_id=f"y1{evil}", tool=f"calc{evil}", status="ok", value=f"42{evil}"),
        StepFinished(step_id="y2", tool="calc", status=f"failed{evil}", error=f"boom{evil}"),
        Critique(verdict=f"accept{evil}", reasons=[f"fine{evil}"]),
        ToolCalled(tool=f"tool{evil}", args={"q": evil}, result=f"res{evil}"),
        Usage(agent=f"reasoner{evil}", model="m", prompt_tokens=1, completion_tokens=2),
        AnswerDelta(text="The answer "),
        AnswerDelta(text=f"is {evil[:7]}"),  # a sequence split across two deltas
        AnswerDelta(text=f"{evil[7:]} 42."),
        AnswerReady(text=f"The answer is {evil} 42.", sources=[passage]),
        RunFailed(error=f"failed{evil}", hint=f"hint{evil}"),
        RunFinished(
            answer="x", seconds=1.0, usage={"reasoner": {"calls": 1, "prompt_tokens": 1, "completion_tokens": 2}}
        ),
    ]


def _render(events: list[Event], *, trace: bool = True) -> tuple[str, str]:
    from conclave.cli.render import TraceRenderer

    out = Console(file=io.StringIO(), width=300, color_system=None, highlight=False, soft_wrap=True)
    err = Console(file=io.StringIO(), width=300, color_system=None, highlight=False, soft_wrap=True)
    renderer = TraceRenderer(out, err, trace=trace, stream=True)
    for event in events:
        renderer.handle(event)
    return out.file.getvalue(), err.file.getvalue()  # type: ignore[attr-defined]


def test_cli_trace_and_answer_print_no_escape_sequences() -> None:
    evil = f"{TITLE}{CLIPBOARD}{RED}x{RESET}\x07\u202e"
    stdout, stderr = _render(_run_events(evil))
    for stream in (stdout, stderr):
        assert "\x1b" not in stream and "\x07" not in stream and "\u202e" not in stream, repr(stream)
    assert "The answer is " in stdout and "42." in stdout
    assert "line two" in stderr and "boom" in stderr and "res" in stderr  # the trace is on stderr


def test_cli_trace_shows_markup_in_model_output_literally() -> None:
    evil = "[/][black on black]secret"
    stdout, stderr = _render(_run_events(evil))  # a MarkupError here is the bug
    assert "[black on black]secret" in stdout
    for needle in ("embedded[/]", "calc[/]", "accept[/]", "tool[/]", "reasoner[/]"):
        assert needle in stderr, needle  # the trace is on stderr


def test_cli_answer_without_stream_is_printed_as_text() -> None:
    """A method that does not stream prints its final answer at once: as text, not as markup."""
    stdout, _ = _render([AnswerReady(text=f"see [/]{TITLE}[bold]this[/bold]")], trace=False)
    assert stdout == "see [/][bold]this[/bold]\n"


# -- the chat ------------------------------------------------------------------------------------------------


async def test_chat_shows_no_escape_sequences(tmp_path: Any) -> None:
    from conclave.tui import create_app
    from conclave.tui.conversation import AssistantMessage
    from conclave.tui.trace import SourcesView, TracePanel

    from conclave.settings import load_settings
    from tests.tui.conftest import ADAM, Script, ask, coa_events, fixed_store, settle

    evil = f"{CLIPBOARD}{TITLE}{RED}"
    dirty = Passage(id="d1", source=f"evil{TITLE}.md", text=f"doc text{CLIPBOARD} more", score=0.4, title=f"Evil{RED}")

    def events(question: str) -> list[Event]:
        script = coa_events(question)
        script.insert(3, Retrieved(query=f"q{evil}", passages=[dirty]))
        script.insert(4, ChainDrafted(text=f"[chain{evil}]"))
        answer = [i for i, e in enumerate(script) if isinstance(e, AnswerDelta)]
        script[answer[0]] = AnswerDelta(text="Adam \x1b]52;c;cm0g", agent="writer")
        script[answer[1]] = AnswerDelta(text="LXJm\x07 combines " + evil, agent="writer")
        ready = next(i for i, e in enumerate(script) if isinstance(e, AnswerReady))
        script[ready] = AnswerReady(text=f"Adam \x1b]52;c;cm0gLXJm\x07 combines {evil}", sources=[ADAM, dirty])
        return script

    settings = load_settings(method="direct")
    app = create_app(settings, runner=Script(events), store=fixed_store(settings.sessions_path))
    async with app.run_test(size=(120, 40)) as pilot:
        await ask(pilot, "What does Adam combine?")
        await settle(pilot)
        answer = app.query_one(AssistantMessage)
        assert "Adam" in answer.markdown.source and "combines" in answer.markdown.source
        shown = [answer.markdown.source, str(answer.query_one(".sources-line").render())]
        shown += [str(entry.render()) for entry in app.query_one(TracePanel).query(".entry")]
        shown += [str(p.render()) for p in app.query_one(SourcesView).query(".passage")]
        assert any("doc text" in s for s in shown) and any("chain" in s for s in shown)
        for text in shown:
            assert "\x1b" not in text and "\x07" not in text, repr(text)


async def test_chat_shows_markup_in_a_question_and_its_session_title_literally(tmp_path: Any) -> None:
    from conclave.tui import create_app
    from conclave.tui.conversation import UserMessage

    from conclave.settings import load_settings
    from tests.tui.conftest import Script, ask, fixed_store, settle

    question = "[black on black]secret[/] and [/] x?"
    settings = load_settings(method="direct")
    store = fixed_store(settings.sessions_path)
    app = create_app(settings, runner=Script(), store=store)
    async with app.run_test(size=(120, 40)) as pilot:
        await ask(pilot, question)
        await settle(pilot)
        assert str(app.query_one(UserMessage).render()) == question
        shown = str(app.conversation.render_str(app.conversation.border_title))  # the getter gives markup
        assert shown.endswith(f"· {store.get(app.session_id).title}")
        assert "[black on black]secret[/]" in shown


async def test_sessions_screen_shows_markup_in_a_title_literally(tmp_path: Any) -> None:
    from conclave.tui import create_app
    from conclave.tui.screens import ConfirmDialog, SessionsScreen

    from conclave.settings import load_settings
    from tests.tui.conftest import Script, fixed_store

    title = "[black on black]secret[/] \x1b]0;pwned\x07notes"
    settings = load_settings(method="direct")
    store = fixed_store(settings.sessions_path)
    info = store.create(settings=settings.redacted())
    store.rename(info.id, title)
    app = create_app(settings, runner=Script(), store=store)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("f2")
        screen = app.screen
        assert isinstance(screen, SessionsScreen)
        table = screen.query_one("DataTable")
        cell = table.get_row(info.id)[1]
        rendered = cell if isinstance(cell, Text) else Text.from_markup(cell)
        assert rendered.plain == "[black on black]secret[/] notes"
        await pilot.press("d")
        assert isinstance(app.screen, ConfirmDialog)
        label = str(app.screen.query_one("Label").render())
        assert "[black on black]secret[/] notes" in label and "\x1b" not in label
