"""The conversation: questions, and answers rendered as Markdown that streams in as the model writes it.

What the model wrote and what documents say is shown without terminal escape sequences or other control
characters (:func:`conclave.terminal.safe_text`)."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.timer import Timer
from textual.widgets import Markdown, Static
from textual.widgets.markdown import MarkdownStream

from conclave.events import Event, Passage
from conclave.terminal import safe_text

__all__ = ["AssistantMessage", "Conversation", "Following", "UserMessage"]

FLUSH_SECONDS = 0.1


class Following(VerticalScroll):
    """A scrolling view that keeps its end in view as content arrives, until the user scrolls back.

    Textual's anchor does the following; it is only set once the content overflows, because an anchored view
    shorter than its window sits at the bottom of it.
    """

    def follow(self, *, force: bool = False) -> None:
        """Keep the end in view (``force``: even if the user had scrolled away)."""
        self.call_after_refresh(self._anchor_if_overflowing, force, 10 if force else 0)

    def _anchor_if_overflowing(self, force: bool, retries: int) -> None:
        if self.max_scroll_y > 0 and (force or not self.is_anchored):
            self.anchor()
        elif retries and self.max_scroll_y <= 0:
            # Right after mounting (e.g. a resumed session) the layout may not be known yet: look again soon.
            self.set_timer(0.05, lambda: self._anchor_if_overflowing(force, retries - 1))

    def stop_following(self) -> None:
        """Forget the anchor (the content is being replaced)."""
        self.anchor(False)


class UserMessage(Static):
    """A question as typed."""

    def __init__(self, text: str):
        super().__init__(safe_text(text), classes="user-message", markup=False)
        self.text = text


class AssistantMessage(Vertical):
    """One answer: a heading, the Markdown body (streamed), and the cited sources."""

    class Selected(Message):
        """The user clicked an answer: show its trace and sources."""

        def __init__(self, message: AssistantMessage):
            super().__init__()
            self.message = message

    def __init__(
        self,
        text: str = "",
        *,
        heading: str = "Conclave",
        status: str = "ok",
        events: list[Event] | None = None,
        sources: list[Passage] | None = None,
    ):
        super().__init__(classes="assistant-message")
        self.heading_text = heading
        self.status = status
        self.events: list[Event] = list(events or [])
        self.sources: list[Passage] = list(sources or [])
        self._initial = text
        self._stream: MarkdownStream | None = None
        self._flusher: Timer | None = None
        self._pending: list[str] = []
        self.streamed = ""

    def compose(self) -> Any:
        yield Static(self._heading(), classes="heading", markup=False)
        yield Markdown(self._initial, classes="body")
        yield Static(self._sources_line(), classes="sources-line", markup=False)

    def _heading(self) -> Text:
        text = Text(safe_text(self.heading_text), style="bold")
        if self.status == "running":
            text.append(" · answering…", style="italic")
        elif self.status != "ok":
            text.append(f" · {self.status}", style="bold red" if self.status == "failed" else "bold yellow")
        return text

    def _sources_line(self) -> Text:
        if not self.sources:
            return Text("")
        text = Text("Sources: ", style="dim")
        for i, p in enumerate(self.sources, 1):
            if i > 1:
                text.append(" · ", style="dim")
            text.append(f"[{i}] {safe_text(p.title or p.source)}", style="dim")
        return text

    def on_mount(self) -> None:
        self.query_one(".sources-line", Static).display = bool(self.sources)

    @property
    def markdown(self) -> Markdown:
        return self.query_one(Markdown)

    def set_heading(self, heading: str | None = None, status: str | None = None) -> None:
        """Change the heading (e.g. when the method and timing are known, or the answer failed)."""
        if heading is not None:
            self.heading_text = heading
        if status is not None:
            self.status = status
        self.query_one(".heading", Static).update(self._heading())

    async def write(self, fragment: str) -> None:
        """Append streamed answer text. Fragments are gathered and handed to the Markdown stream a few times a
        second: rendering once per token would take CPU from a model running on the same cores."""
        if self._stream is None:
            self._stream = Markdown.get_stream(self.markdown)
            self._flusher = self.set_interval(FLUSH_SECONDS, self._flush)
        fragment = safe_text(fragment)  # a sequence split between fragments is harmless without its ESC
        self.streamed += fragment
        self._pending.append(fragment)

    async def _flush(self) -> None:
        if self._stream is None or not self._pending:
            return
        text = "".join(self._pending)
        self._pending.clear()
        await self._stream.write(text)
        if isinstance(self.parent, Following):
            self.parent.follow()

    async def finish(self, final_text: str | None = None) -> None:
        """Stop streaming; replace the body only when the final answer differs from what streamed."""
        if self._flusher is not None:
            self._flusher.stop()
            self._flusher = None
        await self._flush()
        if final_text is not None:
            final_text = safe_text(final_text)
        if self._stream is not None:
            stream, self._stream = self._stream, None
            await stream.stop()
        if final_text is not None and final_text.strip() != self.streamed.strip():
            await self.markdown.update(final_text)
            self.streamed = final_text
        if isinstance(self.parent, Following):
            self.parent.follow()

    def set_sources(self, sources: list[Passage]) -> None:
        """Show the cited sources under the answer."""
        self.sources = list(sources)
        line = self.query_one(".sources-line", Static)
        line.update(self._sources_line())
        line.display = bool(self.sources)

    def on_click(self) -> None:
        self.post_message(self.Selected(self))


class Conversation(Following):
    """The scrolling list of messages; it follows new text while the user is at the bottom."""

    async def add_user(self, text: str) -> UserMessage:
        """Append a question (and bring the end into view)."""
        message = UserMessage(text)
        await self.mount(message)
        self.follow(force=True)
        return message

    async def add_assistant(self, text: str = "", **kwargs: Any) -> AssistantMessage:
        """Append an answer (empty, to stream into; or a stored one)."""
        message = AssistantMessage("", **kwargs)
        await self.mount(message)
        if text:
            text = safe_text(text)
            await message.markdown.update(text)  # awaited, so the end is known when we scroll to it
            message.streamed = text
        self.follow()
        return message

    async def add_note(self, text: str) -> Static:
        """Append a line about the chat itself (a changed method or parameter), between the messages."""
        note = Static(safe_text(text), classes="note", markup=False)
        await self.mount(note)
        self.follow()
        return note

    async def clear(self) -> None:
        """Remove every message."""
        self.stop_following()
        await self.remove_children()
