"""``read_value``: one value from the documents, looked up by what it means, with the cell or sentence it came from.

A chain writes ``revenue_2019 = read_value("services revenue 2019")``. The query's words are matched against every
table cell of the run's collection: its row label (and the section row above it), its column header, the table's
caption or heading and the document's name (tokens, with plurals folded and near spellings matched). A cell must
match the row, and a year or other number in the query must be matched too (by the cell's own column when the
table has such a column). The best cell above :data:`THRESHOLD` is the value; when no cell qualifies, a sentence of
the top passages that holds exactly one number besides the query's own (years aside) can be, above the stricter
:data:`SENTENCE_THRESHOLD`. Two candidates with different values within :data:`AMBIGUITY_MARGIN` of each other are
ambiguous: the tool says so and lists them, never picks one. Nothing found is "not found", never a guess.

The result is a :class:`ValueResult` (pydantic): ``text`` is the plain value ("1452.4", "-0.9"; what the reifier
substitutes into later steps, see ``workflows.coa.reify.value_text``), ``value`` the number, ``unit`` ("$", "%"),
``scale`` (thousand, million, billion: stated once above the table or next to the number; the value is as written,
not multiplied), and ``source`` the provenance (document, chunk id, table, row, column, raw cell, or the sentence).
Not found and ambiguous raise :class:`ValueNotFound` / :class:`AmbiguousValue` (LangChain ``ToolException`` s, so a
chain step fails with the message and the run's usual repair applies), each carrying its :class:`ValueResult`.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher
from pathlib import PurePath
from typing import TYPE_CHECKING, Any, Literal

from conclave.tools.tables import Number, Table, find_numbers, parse_number, table_from_json
from langchain_core.tools import StructuredTool, ToolException
from pydantic import BaseModel, ConfigDict, Field

from conclave.events import Passage

if TYPE_CHECKING:
    from conclave.tools.store import KnowledgeStore

__all__ = [
    "AMBIGUITY_MARGIN",
    "SENTENCE_THRESHOLD",
    "THRESHOLD",
    "AmbiguousValue",
    "ReadValueArgs",
    "TableSource",
    "ValueCandidate",
    "ValueNotFound",
    "ValueResult",
    "ValueSource",
    "lookup_value",
    "read_value_tool",
    "tables_in_collection",
]

THRESHOLD = 0.6
"""The least score a table cell needs (0..1: how much of the query its headers cover, and how much of its row
label the query names)."""
SENTENCE_THRESHOLD = 0.75
"""The least score a sentence needs (the share of the query's words it holds): sentences are read less surely."""
AMBIGUITY_MARGIN = 0.05
"""Candidates with different values this close to the best make the lookup ambiguous."""
MAX_LISTED = 5
MAX_TEXT_CHARS = 200

_STOPWORDS = frozenset(
    """a an the of in on at to for from by with and or as is are was were be been being what which who whom whose
    how much many does did do has have had its it this that these those there their s value amount number figure
    please give find get show tell me us our we company's during year ended ending fiscal""".split()
)
_WORD = re.compile(r"[a-z0-9]+(?:\.\d+)?")


class ReadValueArgs(BaseModel):
    """What the model may choose: the query only (the collection is bound by the run, as for search_knowledge)."""

    model_config = ConfigDict(extra="forbid")
    query: str = Field(
        min_length=1,
        max_length=500,
        description="what the value is, by its row, column and table: e.g. 'services revenue 2019'",
    )
    # A small model names the parts of a cell as arguments of their own (read_value(query="sales", year="2019")):
    # they are words of the query, not a reason to throw the chain away.
    row: str = Field("", max_length=200, description="optional: the row label")
    column: str = Field("", max_length=200, description="optional: the column (a year)")
    table: str = Field("", max_length=200, description="optional: the table")
    year: str = Field("", max_length=20, description="optional: the year")

    def words(self) -> str:
        """The query with the parts given on their own, as one query."""
        return " ".join(part.strip() for part in (self.query, self.row, self.column, self.year, self.table) if part)


class ValueSource(BaseModel):
    """Where a value came from: a table cell (table, row, column, raw cell text) or a sentence."""

    document: str = ""
    chunk_id: str = ""
    table: str = ""
    row: str = ""
    column: str = ""
    cell: str = ""
    sentence: str = ""

    def describe(self) -> str:
        if self.sentence:
            return f"{self.document}: sentence {self.sentence!r}"
        where = [f"table {self.table!r}" if self.table else "", f"row {self.row!r}", f"column {self.column!r}"]
        return f"{self.document}, " + ", ".join(w for w in where if w) + f" (cell {self.cell!r})"


class ValueCandidate(BaseModel):
    """One value the query could mean, with its score and source."""

    text: str
    value: float | None = None
    unit: str = ""
    scale: str = ""
    score: float = 0.0
    source: ValueSource

    def describe(self) -> str:
        extra = ", ".join(p for p in (self.unit, self.scale) if p)
        return f"{self.text}{f' ({extra})' if extra else ''} from {self.source.describe()}, score {self.score:.2f}"


class ValueResult(BaseModel):
    """What ``read_value`` found. ``text`` is the value as later steps see it (a plain number when it is one)."""

    query: str
    status: Literal["found", "not_found", "ambiguous"]
    text: str = ""
    value: float | None = None
    unit: str = ""
    scale: str = ""
    score: float = 0.0
    source: ValueSource | None = None
    candidates: list[ValueCandidate] = Field(default_factory=list)
    """The ambiguous candidates (best first), or the nearest misses of a lookup that found nothing."""
    message: str = ""


class ValueNotFound(ToolException):
    """No cell or sentence matches the query well enough; ``result`` says what came closest."""

    def __init__(self, result: ValueResult):
        super().__init__(result.message)
        self.result = result
        self.hint = "name the row, the column (a year) and the table more exactly, or search the passages"


class AmbiguousValue(ToolException):
    """Several values match the query about equally; ``result.candidates`` lists them."""

    def __init__(self, result: ValueResult):
        super().__init__(result.message)
        self.result = result
        self.hint = "add the words that tell them apart (the row, the column, the table or the document)"


@dataclass(frozen=True)
class TableSource:
    """A table chunk's rows with where they are: the document and the chunk id (for citations)."""

    table: Table
    heading: str
    document: str
    chunk_id: str = ""


# ------------------------------------------------------------------ matching


def _stem(word: str) -> str:
    if word.isdigit() or "." in word:
        return word
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


_FOOTNOTE = re.compile(r"(?<=[a-z]{3})\d\b|\(\d{1,2}\)|\[\d{1,2}\]")
_GLUED = re.compile(r"(?<=[a-z])(?=\d{2})")
_FISCAL = re.compile(r"\bfy\s?(\d{2})\b")


def _tokens(text: str) -> list[str]:
    """Content words, stemmed; footnote marks ("year1", "debt(2)") and thousands separators dropped, "FY19" read
    as 2019, "December31" as two words."""
    text = _FOOTNOTE.sub(" ", text.lower().replace(",", ""))
    text = _FISCAL.sub(r"20\1", _GLUED.sub(" ", text))
    return [_stem(w) for w in _WORD.findall(text) if w not in _STOPWORDS]


class _Similarity:
    """Token similarity, memoised per pair: the same, 1; a plural or prefix form, 0.9; a near spelling, 0.8."""

    def __init__(self) -> None:
        self.memo: dict[tuple[str, str], float] = {}

    def __call__(self, a: str, b: str) -> float:
        if a == b:
            return 1.0
        key = (a, b)
        found = self.memo.get(key)
        if found is None:
            found = self.memo[key] = self._compute(a, b)
        return found

    @staticmethod
    def _compute(a: str, b: str) -> float:
        if a[0].isdigit() or b[0].isdigit() or min(len(a), len(b)) < 4:
            return 0.0
        if (a.startswith(b) or b.startswith(a)) and abs(len(a) - len(b)) <= 3:
            return 0.9
        matcher = SequenceMatcher(None, a, b)
        if min(len(a), len(b)) >= 5 and matcher.real_quick_ratio() >= 0.9 and matcher.ratio() >= 0.9:
            return 0.8
        return 0.0

    def best(self, token: str, field: Iterable[str]) -> float:
        return max((self(token, other) for other in field), default=0.0)


_FIELD_WEIGHTS = {"row": 1.0, "section": 0.9, "column": 1.0, "table": 0.8, "document": 0.6}
_MATCHED = 0.8


def _clip(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _candidate(raw: str, number: Number | None, scale: str, score: float, source: ValueSource) -> ValueCandidate:
    # Built from values this module made (no validation to run): a broad query over a long table scores every row.
    if number is None:
        return ValueCandidate.model_construct(
            text=_clip(raw), value=None, unit="", score=round(score, 4), scale=scale, source=source
        )
    return ValueCandidate.model_construct(
        text=number.text,
        value=float(number.value),
        unit=number.unit,
        scale=number.scale or scale,
        score=round(score, 4),
        source=source,
    )


def _score_cells(query: list[str], tables: Sequence[TableSource], sim: _Similarity) -> list[ValueCandidate]:
    numeric = [q for q in query if q[0].isdigit()]
    found = []
    for source in tables:
        table = source.table
        caption = _tokens(" ".join(p for p in (source.heading, table.caption) if p))
        document = _tokens(PurePath(source.document).stem.replace("_", " ").replace("-", " "))
        column_tokens = {column: _tokens(column) for column in table.columns}
        # A query number that names a column of this table ("2019") must be this cell's column.
        column_numbers = {q for q in numeric if any(q in toks for toks in column_tokens.values())}
        elsewhere = {t for toks in column_tokens.values() for t in toks} | set(caption) | set(document)
        rows: dict[int, tuple[list[str], list[str]] | None] = {}
        for cell in table.cells():
            if cell.row_index not in rows:
                rows[cell.row_index] = _row_tokens(query, cell.row, cell.section, elsewhere, sim)
            named = rows[cell.row_index]
            if named is None:
                continue  # the query does not name this row (most rows of a long table: decided once per row)
            fields = {
                "row": named[0],
                "section": named[1],
                "column": column_tokens.get(cell.column) or _tokens(cell.column),
                "table": caption,
                "document": document,
            }
            score = _cell_score(query, fields, column_numbers, sim)
            if score is None:
                continue
            where = ValueSource.model_construct(
                document=source.document,
                chunk_id=source.chunk_id,
                table=" — ".join(p for p in (source.heading, table.caption) if p),
                sentence="",
                row=" > ".join(p for p in (cell.section, cell.row) if p),
                column=cell.column,
                cell=_clip(cell.raw),
            )
            found.append(_candidate(cell.raw, parse_number(cell.raw), cell.scale, score, where))
    return found


def _row_tokens(
    query: list[str], row: str, section: str, elsewhere: set[str], sim: _Similarity
) -> tuple[list[str], list[str]] | None:
    """(row tokens, section tokens), or None when no cell of the row can be meant: the query names neither its label
    nor its section, or holds a number found neither there nor in the table's headers, caption or document name."""
    row_tokens, section_tokens = _tokens(row), _tokens(section)
    present = {*row_tokens, *section_tokens}
    if any(q[0].isdigit() and q not in present and q not in elsewhere for q in query):
        return None
    if not any(sim.best(q, present) >= _MATCHED for q in query):
        return None
    return row_tokens, section_tokens


def _cell_score(
    query: list[str], fields: dict[str, list[str]], column_numbers: set[str], sim: _Similarity
) -> float | None:
    """0..1, or None when the cell cannot be meant: its row is not named, or a number of the query is not its own."""
    credit = 0.0
    row_named = False
    for q in query:
        best = 0.0
        for name, tokens in fields.items():
            s = sim.best(q, tokens)
            if s >= _MATCHED and name in ("row", "section"):
                row_named = True
            best = max(best, s * _FIELD_WEIGHTS[name])
        if q[0].isdigit():
            if best < _MATCHED:
                return None
            if q in column_numbers and q not in fields["column"] and q not in fields["row"]:
                return None
        credit += best
    if not row_named:
        return None
    # Words of the cell's headers that the query does not say count against it ("Cost of revenue" for "revenue").
    row = _named(query, [*fields["section"], *fields["row"]], sim)
    column = _named(query, fields["column"], sim)
    return 0.6 * credit / len(query) + 0.25 * row + 0.15 * column


def _named(query: list[str], tokens: list[str], sim: _Similarity) -> float:
    """The share of ``tokens`` that the query names (0.5 for none: no evidence either way)."""
    if not tokens:
        return 0.5
    return sum(1 for t in tokens if any(sim(q, t) >= _MATCHED for q in query)) / len(tokens)


_SENTENCE_SPLIT = re.compile(r"(?<=[.!?;])\s+(?=[A-Z(\"'$])|\n+")


def _score_sentences(query: list[str], passages: Sequence[Passage], sim: _Similarity) -> list[ValueCandidate]:
    numeric = set(q for q in query if q[0].isdigit())
    words = [q for q in query if not q[0].isdigit()]
    found = []
    for passage in passages:
        for sentence in _SENTENCE_SPLIT.split(passage.text):
            numbers = [
                n
                for n in find_numbers(sentence)
                if n[2].text not in numeric and not _is_bare_year(sentence[n[0] : n[1]], n[2])
            ]
            if len(numbers) != 1 or not words:
                continue
            tokens = _tokens(sentence)
            if any(q not in tokens for q in numeric):
                continue
            credit = sum(sim.best(q, tokens) for q in words)
            score = credit / len(words)
            start, end, number = numbers[0]
            where = ValueSource(
                document=passage.source, chunk_id=passage.id, sentence=_clip(sentence, 400), cell=sentence[start:end]
            )
            found.append(_candidate(sentence[start:end], number, number.scale, score, where))
    return found


def _is_bare_year(raw: str, number: Number) -> bool:
    text = raw.strip()
    return len(text) == 4 and text.isdigit() and not number.unit and 1900 <= number.value <= 2100


def _decide(query: str, candidates: list[ValueCandidate], threshold: float) -> ValueResult | None:
    """The best candidate above ``threshold`` as found, ambiguous when a rival with another value is as good; None
    when none passes."""
    ranked = sorted((c for c in candidates if c.score >= threshold), key=lambda c: -c.score)
    if not ranked:
        return None
    best = ranked[0]
    rivals: list[ValueCandidate] = []
    seen = {best.text}
    for other in ranked[1:]:
        if other.score < best.score - AMBIGUITY_MARGIN:
            break
        if other.text not in seen:
            seen.add(other.text)
            rivals.append(other)
    if rivals:
        listed = [best, *rivals][:MAX_LISTED]
        more = len(rivals) + 1 - len(listed)
        message = (
            f"read_value({query!r}) is ambiguous: {len(rivals) + 1} values match about equally: "
            + "; ".join(c.describe() for c in listed)
            + (f"; and {more} more" if more else "")
        )
        return ValueResult(query=query, status="ambiguous", candidates=listed, message=message)
    return ValueResult(
        query=query,
        status="found",
        text=best.text,
        value=best.value,
        unit=best.unit,
        scale=best.scale,
        score=best.score,
        source=best.source,
        message=f"{best.describe()}",
    )


def lookup_value(
    query: str,
    tables: Sequence[TableSource],
    passages: Sequence[Passage] | Callable[[], Sequence[Passage]] = (),
) -> ValueResult:
    """Find the one value ``query`` names: a table cell by its headers, else a sentence of ``passages`` (read only
    when no cell qualifies, so it may be a function that searches; see the module docstring). Returns found,
    ambiguous or not_found; never raises for what it cannot find."""
    words = _tokens(query)
    if not words:
        return ValueResult(
            query=query,
            status="not_found",
            message=f"read_value({query!r}): the query has no words to look for (name the row and the column)",
        )
    sim = _Similarity()
    cells = _score_cells(words, tables, sim)
    decided = _decide(query, cells, THRESHOLD)
    if decided is not None:
        return decided
    if callable(passages):
        passages = passages()
    sentences = _score_sentences(words, passages, sim)
    decided = _decide(query, sentences, SENTENCE_THRESHOLD)
    if decided is not None:
        return decided
    near = sorted([*cells, *sentences], key=lambda c: -c.score)[:3]
    what = f"{len(tables)} table chunk(s) and {len(passages)} passage(s)"
    message = f"read_value({query!r}): not found in {what}"
    if near:
        message += "; nearest, below the threshold: " + "; ".join(c.describe() for c in near)
    return ValueResult(query=query, status="not_found", candidates=near, message=message)


# ------------------------------------------------------------------ the tool


def tables_in_collection(
    store: KnowledgeStore, collection: str, where: dict[str, Any] | None = None
) -> list[TableSource]:
    """Every table chunk of ``collection`` (among the chunks ``where`` selects: one document's, say): chunks whose
    metadata carries table rows; a chunk whose rows do not parse is left out (metadata is untrusted data)."""
    col = store.get_collection(collection)
    selected: dict[str, Any] = {"is_table": True} if where is None else {"$and": [{"is_table": True}, where]}
    out = []
    for cid, meta in sorted(store.all_metadata(col, where=selected).items()):
        rows = meta.get("table_rows")
        if not isinstance(rows, str):
            continue
        try:
            table, heading = table_from_json(rows)
        except ValueError:
            continue
        document = str(meta.get("name") or meta.get("source") or "")
        out.append(TableSource(table=table, heading=heading, document=document, chunk_id=cid))
    return out


def _read(store: KnowledgeStore, collection: str, k: int, where: dict[str, Any] | None, query: str) -> ValueResult:
    tables = tables_in_collection(store, collection, where)
    table_ids = {t.chunk_id for t in tables}

    def passages() -> list[Passage]:
        return [p for p in store.search_sync(query, k, collection, where) if p.id not in table_ids]

    result = lookup_value(query, tables, passages)
    if result.status == "not_found":
        raise ValueNotFound(result)
    if result.status == "ambiguous":
        raise AmbiguousValue(result)
    return result


def read_value_tool(
    get_store: Callable[[], KnowledgeStore], collection: str, k: int, where: dict[str, Any] | None = None
) -> StructuredTool:
    """The ``read_value`` tool over ``collection`` and the chunks ``where`` selects (all bound by the run, as for
    ``search_knowledge``); ``k`` passages are read for sentences."""

    def read_value(query: str, row: str = "", column: str = "", table: str = "", year: str = "") -> ValueResult:
        words = ReadValueArgs(query=query, row=row, column=column, table=table, year=year).words()
        return _read(get_store(), collection, k, where, words)

    async def read_value_async(
        query: str, row: str = "", column: str = "", table: str = "", year: str = ""
    ) -> ValueResult:
        words = ReadValueArgs(query=query, row=row, column=column, table=table, year=year).words()
        return await asyncio.to_thread(_read, get_store(), collection, k, where, words)

    return StructuredTool.from_function(
        func=read_value,
        coroutine=read_value_async,
        name="read_value",
        description="Read one value (a number or short text) from the documents' tables or sentences, by what it "
        "is: row, column (a year), table. Returns the value with its unit, scale and the cell it came from; "
        "fails with 'not found' or 'ambiguous' (listing the candidates) rather than guess.",
        args_schema=ReadValueArgs,
    )
