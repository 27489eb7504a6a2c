"""A depth bound for JSON and YAML from untrusted files, checked before the parser sees the text.

Python's JSON decoder and PyYAML's composer recurse once per level of nesting: a few kilobytes of ``[[[[`` end in a
``RecursionError`` (and PyYAML's scanner slows quadratically with the depth first). Every parser of untrusted input
(workflow files, data sets, ``items.jsonl``, tune data, templates, the response cache) calls :func:`loads` or
:func:`check_yaml` instead, which scan the text once, in linear time, and refuse it with one line that says where.

:class:`TooDeep` is a :class:`json.JSONDecodeError`, so a caller that already reports a line that is not JSON reports
this one the same way.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

__all__ = ["MAX_DEPTH", "TooDeep", "check_json", "check_yaml", "loads"]

MAX_DEPTH = 100
"""Levels of nesting any JSON or YAML document may have. Real files stay far below it (a workflow has about six);
the parsers' recursion allows several hundred."""


class TooDeep(json.JSONDecodeError):
    """A document nested more than ``limit`` levels deep; ``lineno``/``colno`` is the bracket (or line) that went
    one level too far."""

    def __init__(self, limit: int, doc: str | bytes, pos: int, lineno: int, colno: int):
        self.msg = f"nested more than {limit} levels deep"
        self.doc = doc  # type: ignore[assignment]  # bytes for a line read as bytes, as json.loads accepts
        self.pos = pos
        self.lineno = lineno
        self.colno = colno
        self.limit = limit
        ValueError.__init__(self, f"{self.msg} at line {lineno}")

    def __reduce__(self) -> tuple[Any, ...]:
        return TooDeep, (self.limit, self.doc, self.pos, self.lineno, self.colno)


# ------------------------------------------------------------------------------------------------------ JSON

_STRING = r'"[^"\\]*(?:\\.[^"\\]*)*"'
_JSON_STRINGS = (re.compile(_STRING), re.compile(_STRING.encode()))
_NOT_BRACKETS = (re.compile(r"[^\[\]{}]+"), re.compile(rb"[^\[\]{}]+"))
_JSON_TOKENS = (re.compile(_STRING + r"|[\[\]{}]"), re.compile((_STRING + r"|[\[\]{}]").encode()))
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1, ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def check_json(text: str | bytes, limit: int = MAX_DEPTH) -> None:
    """:class:`TooDeep` when ``text``, read as JSON, nests arrays and objects more than ``limit`` levels deep.

    Brackets inside strings do not count. The common case is decided by C-speed passes (strings and everything but
    brackets removed, then a running sum); only a document that is too deep is walked token by token, to say where.
    """
    kind = 1 if isinstance(text, bytes) else 0
    brackets = _NOT_BRACKETS[kind].sub(b"" if kind else "", _JSON_STRINGS[kind].sub(b"" if kind else "", text))  # type: ignore[arg-type]
    if len(brackets) <= limit or max(accumulate(map(_STEP.__getitem__, brackets)), default=0) <= limit:
        return
    depth = 0
    for match in _JSON_TOKENS[kind].finditer(text):  # type: ignore[arg-type]
        depth += _STEP.get(match.group()[0], 0)
        if depth > limit:
            raise _too_deep(limit, text, match.start())


def loads(text: str | bytes, limit: int = MAX_DEPTH) -> Any:
    """``json.loads`` of untrusted text, refused with :class:`TooDeep` when nested more than ``limit`` levels."""
    check_json(text, limit)
    return json.loads(text)


def _too_deep(limit: int, text: str | bytes, pos: int) -> TooDeep:
    newline: Any = b"\n" if isinstance(text, bytes) else "\n"
    line_start = text.rfind(newline, 0, pos) + 1
    return TooDeep(limit, text, pos, text.count(newline, 0, pos) + 1, pos - line_start + 1)


# ------------------------------------------------------------------------------------------------------ YAML

_PLAIN_END_BLOCK = re.compile(r":(?=[ \t]|$)|[ \t]#")
"""Where a plain scalar in block context ends: a mapping's ``: `` or a comment."""
_PLAIN_END_FLOW = re.compile(r"[,\[\]{}]|:(?=[ \t,\[\]{}]|$)|[ \t]#")
"""Where a plain scalar inside ``[...]``/``{...}`` ends: a flow indicator, ``:`` or a comment."""
_QUOTED_REST = {'"': re.compile(r'[^"\\]*(?:\\.[^"\\]*)*"'), "'": re.compile(r"[^']*(?:''[^']*)*'(?!')")}
_PROPERTY = re.compile(r"[&!][^ \t,\[\]{}]*")


class _YamlDepth:
    """One pass over YAML text, line by line, tracking the block indentation levels and the flow brackets.

    Only what PyYAML reads as structure counts: brackets start a flow collection where a value may start (or inside
    one), never inside quoted, plain or block scalars, or comments. Where the scan is unsure it counts rather than
    skips, so the bound stays an upper bound of the nesting PyYAML builds.
    """

    def __init__(self, limit: int):
        self.limit = limit
        self.levels: list[tuple[int, bool]] = []
        """The block collections open: (column, whether it is a sequence), outermost first."""
        self.flow = 0
        self.quote: str | None = None
        self.scalar_parent: int | None = None
        self.scalar_indent: int | None = None

    def check(self, text: str) -> None:
        offset = 0
        for number, line in enumerate(text.split("\n"), 1):
            self.line(number, line.rstrip("\r"), text, offset)
            offset += len(line) + 1

    def too_deep(self, number: int, column: int, text: str, offset: int) -> None:
        if len(self.levels) + self.flow > self.limit:
            raise TooDeep(self.limit, text, offset + column, number, column + 1)

    def line(self, number: int, line: str, text: str, offset: int) -> None:
        stripped = line.lstrip(" ")
        indent = len(line) - len(stripped)
        if self.in_block_scalar(stripped, indent):
            return
        pos = 0
        at_value = True
        if self.quote is not None:
            pos = self.close_quote(line, 0)
            if pos < 0:
                return
            at_value = False
        elif self.flow == 0:
            if not stripped or stripped.startswith("#"):
                return
            if indent == 0 and line[:3] in ("---", "...") and line[3:4] in ("", " ", "\t"):
                self.levels = []
                pos = 3
            else:
                pos = self.block_start(line, indent, number, text, offset)
        self.rest(line, pos, at_value, indent, number, text, offset)

    def in_block_scalar(self, stripped: str, indent: int) -> bool:
        """Whether this line is text of a ``|`` or ``>`` scalar (more indented than its key, as deep as its first
        line); the first line that is not ends it."""
        if self.scalar_parent is None:
            return False
        if not stripped.strip():
            return True
        if self.scalar_indent is None and indent > self.scalar_parent:
            self.scalar_indent = indent
        if self.scalar_indent is not None and indent >= self.scalar_indent:
            return True
        self.scalar_parent = self.scalar_indent = None
        return False

    def block_start(self, line: str, indent: int, number: int, text: str, offset: int) -> int:
        """Track the block collections open at the start of a line: a ``- `` entry is a sequence, anything else a
        mapping (a sequence may sit at its key's indentation), and ``- `` or ``? `` nest one more node on the same
        line (``- - a``, ``- key: v``); the position after them."""
        entry = line[indent : indent + 1] == "-" and line[indent + 1 : indent + 2] in ("", " ", "\t")
        while self.levels and (
            self.levels[-1][0] > indent or (self.levels[-1][0] == indent and self.levels[-1][1] and not entry)
        ):
            self.levels.pop()
        if not self.levels or self.levels[-1] != (indent, entry):
            self.levels.append((indent, entry))
        self.too_deep(number, indent, text, offset)
        pos = indent
        while pos < len(line) and line[pos] in "-?" and line[pos + 1 : pos + 2] in ("", " ", "\t"):
            pos += 1
            while pos < len(line) and line[pos] in " \t":
                pos += 1
            if pos < len(line) and line[pos] not in "#|>":
                self.levels.append((pos, line[pos] == "-"))
                self.too_deep(number, pos, text, offset)
        return pos

    def close_quote(self, line: str, pos: int) -> int:
        """The position after the open quoted scalar closes on this line, or -1 (it goes on to the next)."""
        assert self.quote is not None
        match = _QUOTED_REST[self.quote].match(line, pos)
        if match is None:
            return -1
        self.quote = None
        return match.end()

    def rest(self, line: str, pos: int, at_value: bool, indent: int, number: int, text: str, offset: int) -> None:
        """Scan the line from ``pos``; ``at_value``: a node may start here (a quote or bracket is structure)."""
        end = len(line)
        while pos < end:
            char = line[pos]
            if char in " \t":
                pos += 1
                continue
            if char == "#" and (pos == 0 or line[pos - 1] in " \t"):
                return
            if at_value and char in "&!":
                pos = _PROPERTY.match(line, pos).end()  # type: ignore[union-attr]  # always matches
                continue
            if at_value and char in "\"'":
                self.quote = char
                pos = self.close_quote(line, pos + 1)
                if pos < 0:
                    return
                at_value = False
                continue
            if at_value and char in "|>" and self.flow == 0:
                self.scalar_parent = self.levels[-1][0] if self.levels else indent
                self.scalar_indent = None
                return
            if char in "[{" and (at_value or self.flow):
                self.flow += 1
                self.too_deep(number, pos, text, offset)
                pos += 1
                at_value = True
                continue
            if char in "]}" and self.flow:
                self.flow -= 1
                pos += 1
                at_value = False
                continue
            if (self.flow and char in ",:?") or (char == ":" and line[pos + 1 : pos + 2] in ("", " ", "\t")):
                pos += 1
                at_value = True
                continue
            found = (_PLAIN_END_FLOW if self.flow else _PLAIN_END_BLOCK).search(line, pos + 1)
            if found is None:
                return
            pos = found.start()
            at_value = False


def check_yaml(text: str, limit: int = MAX_DEPTH) -> None:
    """:class:`TooDeep` when YAML ``text`` nests collections (block indentation levels and flow brackets together)
    more than ``limit`` levels deep; linear in the text, before PyYAML scans it."""
    _YamlDepth(limit).check(text)
