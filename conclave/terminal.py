"""Text that did not come from our own code (model output, documents, paths, server messages), made safe to show.

Two dangers, two functions:

* :func:`safe_text` removes what a terminal would act on instead of showing: escape sequences (window title,
  clipboard writes through OSC 52, colours, cursor moves), every other C0/C1 control character except newline and
  tab, and the bidi override characters that make text read differently from what it is.
* :func:`escape_markup` also escapes Rich markup, for text that is interpolated into a markup string
  (``console.print(f"error: {escape_markup(message)}")``): a ``[/]`` in a path must not turn an error message into
  a traceback, and ``[black on black]`` must not hide anything.

Streamed text may split an escape sequence across chunks; removing the ESC (and the other control characters)
from each chunk is enough: what remains of the sequence is printable and harmless.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["CHAIN_LINE_CHARS", "REASON_CHARS", "clip", "escape_markup", "safe_rich_text", "safe_text"]

# How much of a model's text a trace shows, in the chat and on the command line alike: a runaway model can write one
# huge line (a looping chain), and a rejected chain's errors may quote it.
CHAIN_LINE_CHARS = 300
"""Each line of a drafted chain."""
REASON_CHARS = 200
"""Each error of a rejected chain, each reason of a critic's verdict."""

_UNSAFE = re.compile(
    r"""
      \x1b\[[0-?]*[\x20-/]*[@-~]                      # CSI: colours, cursor moves, erase
    | \x1b\][^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)      # OSC ... BEL/ST: window title, OSC 52 clipboard, links
    | \x1b[PX^_][^\x1b\x9c]*(?:\x1b\\|\x9c)           # DCS, SOS, PM, APC ... ST
    | \x1b[\x20-/]*[0-~]                              # any other escape sequence (ESC c resets the terminal)
    | \x9b[0-?]*[\x20-/]*[@-~]                        # 8-bit CSI
    | [\x90\x98\x9d\x9e\x9f][^\x07\x1b\x9c]*(?:\x07|\x9c)  # 8-bit DCS, SOS, OSC, PM, APC ... ST
    | [\x00-\x08\x0b-\x1f\x7f-\x9f]                   # the remaining C0 and C1 controls, DEL (keeps \t and \n)
    | [\u202a-\u202e\u2066-\u2069]                    # bidi embeddings, overrides and isolates
    """,
    re.VERBOSE,
)
_CRLF = re.compile(r"\r\n?")


def safe_text(text: Any) -> str:
    """``text`` (made a string) without terminal escape sequences, control characters (but newline and tab) and
    bidi overrides. Line ends ``\\r\\n`` and ``\\r`` become ``\\n``. Letters of any script are kept."""
    s = text if isinstance(text, str) else str(text)
    if not _UNSAFE.search(s):
        return s
    return _UNSAFE.sub("", _CRLF.sub("\n", s))


def clip(value: Any, limit: int = 120) -> str:
    """``value`` as one line (whitespace runs become one space; not a string: its JSON) of at most ``limit``
    characters, ending in "…" when cut."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def escape_markup(text: Any) -> str:
    """:func:`safe_text`, then Rich markup escaped: for interpolating into a string that Rich reads as markup."""
    from rich.markup import escape

    return escape(safe_text(text))


def safe_rich_text(text: Any) -> Any:
    """A ``rich.text.Text`` with :func:`safe_text` applied to its characters; styles stay on the characters kept.

    Returns ``text`` itself when nothing needs removing."""
    from rich.text import Span

    plain = text.plain
    if not _UNSAFE.search(plain):
        return text
    # Where each kept character of the old text lands in the new one.
    removed = [0] * (len(plain) + 1)
    kept: list[str] = []
    for_crlf = _CRLF.sub(lambda m: "\n" + "\x00" * (len(m.group()) - 1), plain)  # same length, \r\n -> \n\0
    last = 0
    for match in _UNSAFE.finditer(for_crlf):
        kept.append(for_crlf[last : match.start()])
        for i in range(match.start(), match.end()):
            removed[i + 1] = 1
        last = match.end()
    kept.append(for_crlf[last:])
    offset = [0] * (len(plain) + 1)
    total = 0
    for i in range(len(plain) + 1):
        total += removed[i]
        offset[i] = i - total
    spans = []
    for span in text.spans:
        start, end = offset[span.start], offset[min(span.end, len(plain))]
        if end > start:
            spans.append(Span(start, end, span.style))
    new = text.copy()
    new.plain = "".join(kept)
    new.spans = spans
    return new
