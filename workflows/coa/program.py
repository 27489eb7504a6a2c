"""The program form of a chain: Python assignments, one quantity per line, parsed with :mod:`ast`, never executed.

::

    # pens Tom buys cost 3 dollars each
    pens_cost = 3 * 12
    # change from a 50 dollar bill
    change = 50 - pens_cost
    answer = change

A code model is most fluent in code (the program-aided idea, PAL), and this notation keeps what chain-of-abstraction
needs: variables are the placeholders (descriptive names or ``y1, y2, ...``; each is numbered ``yN`` in the chain by
the order of assignment, and the names are kept for rendering), a right-hand side is either arithmetic (one calculator
step) or one call of a registered tool (``adam = search_knowledge("what Adam combines")``), and no value is ever
written by the model. The comment lines above an assignment are its thought. ``answer = NAME`` names the result.

Only a whitelist of syntax is read: assignments to a plain name; numbers, strings, names, ``+ - * / ** % //``, unary
``-``/``+`` and parentheses; calls of registered tools and of the calculator's functions with literal, name (or, for
the calculator, arithmetic) arguments and keyword arguments that are the tool's parameters. Everything else (imports,
attributes, subscripts, lambdas, comprehensions, f-strings, ``:=``, ``+=``, …), a name assigned twice, a name never
assigned, deep nesting, huge lines and no ``answer = …`` line are errors whose messages go back to the model, all of
them at once. ``parse_program`` parses; :class:`ProgramStream` parses a streamed reply line by line, so that steps can
be handed to the reifier while the rest is still being decoded.
"""

from __future__ import annotations

import ast
import copy
import io
import re
import textwrap
import tokenize
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from conclave.workflows.coa.model import CALCULATOR, Arg, Chain, Concat, Lit, Ref, Step, expression_arg
from conclave.workflows.coa.parse import MATH_FUNCTIONS
from conclave.workflows.coa.validate import find_tool, tool_fields

from conclave.terminal import clip

__all__ = [
    "MAX_LINE_CHARS",
    "MAX_PROGRAM_CHARS",
    "MAX_STATEMENTS",
    "ProgramError",
    "ProgramStream",
    "extract_program",
    "looks_like_program",
    "parse_program",
    "render_program",
]

MAX_PROGRAM_CHARS = 20_000
MAX_LINE_CHARS = 1_000
MAX_STATEMENTS = 64
MAX_DEPTH = 24
CONSTANTS = frozenset({"pi", "e"})
ANSWER = "answer"

_FENCE_OPEN = re.compile(r"^[ \t]*```[ \t]*(?:python|py|python3)?[ \t]*$", re.IGNORECASE | re.MULTILINE)
_FENCE_ANY = re.compile(r"^[ \t]*```[^\n]*$", re.MULTILINE)
_ASSIGNMENT_LINE = re.compile(r"^[ \t]*[A-Za-z_]\w*[ \t]*=(?!=)")
_ARITH_OPS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow, ast.Mod, ast.FloorDiv)
_FORBIDDEN = {
    ast.Import: "imports",
    ast.ImportFrom: "imports",
    ast.Attribute: "attributes (a.b)",
    ast.Subscript: "subscripts (a[i])",
    ast.Lambda: "lambdas",
    ast.ListComp: "comprehensions",
    ast.SetComp: "comprehensions",
    ast.DictComp: "comprehensions",
    ast.GeneratorExp: "comprehensions",
    ast.JoinedStr: "f-strings",
    ast.NamedExpr: "the := operator",
    ast.AugAssign: "augmented assignments (x += 1)",
    ast.If: "if statements",
    ast.For: "loops",
    ast.While: "loops",
    ast.FunctionDef: "function definitions",
    ast.Return: "return",
    ast.List: "lists",
    ast.Tuple: "tuples",
    ast.Dict: "dicts",
    ast.Set: "sets",
    ast.Compare: "comparisons",
    ast.BoolOp: "and/or",
    ast.IfExp: "conditional expressions",
    ast.Starred: "*args",
    ast.Await: "await",
    ast.ClassDef: "classes",
    ast.With: "with statements",
    ast.Try: "try statements",
    ast.Delete: "del",
    ast.Global: "global",
    ast.Nonlocal: "nonlocal",
    ast.Assert: "assert",
    ast.Raise: "raise",
    ast.AnnAssign: "annotated assignment",
    ast.Slice: "slices",
}
_OP_SYMBOLS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**", ast.Mod: "%", ast.FloorDiv: "//"}
_HINT = "write one assignment per line: name = arithmetic, or name = tool(arguments); finish with answer = name"


class ProgramError(ValueError):
    """A program-form chain that cannot be read; ``errors`` lists every fault, each as a message for the model."""

    def __init__(self, errors: list[str]):
        unique = list(dict.fromkeys(errors))
        # The layout rule once, after the faults (not repeated in every message the model reads).
        self.errors = unique if any(_HINT in e for e in unique) else [*unique, f"the rule: {_HINT}"]
        super().__init__("; ".join(self.errors))

    @property
    def message(self) -> str:
        return str(self)


# ------------------------------------------------------------------------------------------------ the code block


def looks_like_program(text: str) -> bool:
    """Whether a reply is in the program form (a python fence, or assignment lines) rather than JSON or text."""
    if _FENCE_OPEN.search(text):
        return True
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")) or "```json" in text:
        return False
    return any(_ASSIGNMENT_LINE.match(line) for line in text.splitlines())


def extract_program(text: str) -> str:
    """The code of a reply: the first fenced block (a missing closing fence is tolerated; a doubled opening fence is
    skipped), or, without fences, the lines from the first assignment on, prose lines dropped."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    fences = list(_FENCE_ANY.finditer(text))
    if fences:
        start = fences[0].end()
        index = 1
        # A doubled opening fence (```python then ```python again) opens once.
        while (
            index < len(fences)
            and not text[start : fences[index].start()].strip()
            and _FENCE_OPEN.fullmatch(fences[index].group(0))
            and fences[index].group(0).strip() != "```"
        ):
            start = fences[index].end()
            index += 1
        end = fences[index].start() if index < len(fences) else len(text)
        return textwrap.dedent(text[start:end]).strip("\n")
    lines = text.split("\n")
    kept: list[str] = []
    depth = 0
    for line in lines:
        if depth > 0 or _is_code_line(line, bool(kept)):
            kept.append(line)
            depth = max(0, depth + line.count("(") + line.count("[") - line.count(")") - line.count("]"))
    while kept and not kept[-1].strip():
        kept.pop()
    return textwrap.dedent("\n".join(kept)).strip("\n") if kept else text.strip()


_BLOCK_KEYWORDS = re.compile(r"^(for|while|if|elif|else|def|class|with|try|except|finally|async)\b")


def _is_code_line(line: str, started: bool) -> bool:
    """Whether a line outside fences is code rather than prose around it (code is never executed either way)."""
    stripped = line.strip()
    if not stripped:
        return started
    if stripped.startswith("#"):
        return True
    if started and line[:1] in " \t":
        return True  # indented: a body or a continuation
    if _ASSIGNMENT_LINE.match(stripped) or (stripped.endswith(":") and _BLOCK_KEYWORDS.match(stripped)):
        return True  # an assignment that does not parse is kept, so that its error is reported
    if stripped.count("(") + stripped.count("[") > stripped.count(")") + stripped.count("]"):
        return bool(_ASSIGNMENT_LINE.match(stripped)) or bool(re.match(r"^[A-Za-z_]\w*\s*\(", stripped))
    try:
        ast.parse(stripped)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return not re.fullmatch(r"[A-Za-z_]\w*", stripped)  # a lone word is prose ("Done")


# ---------------------------------------------------------------------------------------------------- parsing


@dataclass
class _Statement:
    line: int
    name: str
    value: ast.expr
    thought: str


def _comments(code: str) -> dict[int, str]:
    """line number -> the comment text on that line (comments are not in the AST)."""
    found: dict[int, str] = {}
    try:
        for tok in tokenize.generate_tokens(io.StringIO(code).readline):
            if tok.type == tokenize.COMMENT:
                found[tok.start[0]] = tok.string.lstrip("#").strip()
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass
    return found


def _check_size(code: str) -> list[str]:
    errors = []
    if len(code) > MAX_PROGRAM_CHARS:
        errors.append(f"the program is {len(code):,} characters long; keep it under {MAX_PROGRAM_CHARS:,}")
    long_lines = [n for n, line in enumerate(code.split("\n"), 1) if len(line) > MAX_LINE_CHARS]
    if long_lines:
        errors.append(f"line {long_lines[0]} is longer than {MAX_LINE_CHARS} characters: one short quantity per line")
    return errors


def _syntax(code: str) -> ast.Module:
    try:
        return ast.parse(code, mode="exec")
    except SyntaxError as exc:
        if isinstance(exc, IndentationError):
            # A program is flat assignments, so a stray indent (a small model's common slip) carries no meaning:
            # read the lines flush left. A real block is still refused, by the node checks or as the original error.
            try:
                return ast.parse("\n".join(line.lstrip() for line in code.split("\n")), mode="exec")
            except (SyntaxError, RecursionError, MemoryError, ValueError):
                pass
        where = f"line {exc.lineno}" + (f", column {exc.offset}" if exc.offset else "")
        raise ProgramError([f"not valid Python at {where}: {exc.msg}; {_HINT}"]) from None
    except (RecursionError, MemoryError, ValueError) as exc:
        raise ProgramError([f"the program cannot be read ({type(exc).__name__}): {_HINT}"]) from None


def _statements(module: ast.Module, code: str) -> tuple[list[_Statement], list[str]]:
    comments = _comments(code)
    lines = code.split("\n")
    out: list[_Statement] = []
    errors: list[str] = []
    previous_end = 0
    for node in module.body:
        if len(out) >= MAX_STATEMENTS:
            errors.append(f"the program has more than {MAX_STATEMENTS} statements: solve it in fewer steps")
            break
        thought_lines = [comments[n] for n in range(previous_end + 1, node.lineno) if n in comments and comments[n]]
        previous_end = node.end_lineno or node.lineno
        where = f"line {node.lineno}"
        if isinstance(node, ast.Assign):
            if len(node.targets) != 1 or not isinstance(node.targets[0], ast.Name):
                errors.append(f"{where}: assign to one plain name (name = ...), not {_source(lines, node)!r}")
                continue
            target, value = node.targets[0].id, node.value
            shown = formatted_name(value)
            if shown is not None and shown == target:
                # x = f"{x:.2f}%": the quantity formatted for display. It computes nothing; rounding and the unit or
                # scale are the answer's to write (workflows/coa/scale.py, the writer), so the line is no step.
                continue
            if shown is not None and target == ANSWER:
                value = ast.Name(id=shown, ctx=ast.Load())  # answer = f"{change:.2f}%": the answer is `change`
            out.append(_Statement(node.lineno, target, value, " ".join(thought_lines)))
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            continue  # a docstring or a bare string: prose, ignored
        elif (
            isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Call)
            and isinstance(node.value.func, ast.Name)
            and node.value.func.id == "print"
        ):
            # How a code model shows a result (Qwen2.5-Coder writes `print(answer)` after most knowledge lookups):
            # it computes nothing, so it is no step; nothing is ever run.
            continue
        elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name) and type(node.op) in _OP_SYMBOLS:
            # A small model writes `x += 1` again and again when told only that it is not allowed: show the rewrite.
            name, op = node.target.id, _OP_SYMBOLS[type(node.op)]
            errors.append(
                f"{where}: {_source(lines, node)!r} changes {name} in place; give the new quantity its own "
                f"name instead: {name}_2 = {name} {op} {ast.unparse(node.value)}"
            )
        else:
            kind = _FORBIDDEN.get(type(node), type(node).__name__)
            errors.append(
                f"{where}: {kind} are not allowed"
                if type(node) in _FORBIDDEN
                else f"{where}: only assignments are allowed, not {_source(lines, node)!r}"
            )
    return out, errors


def _source(lines: list[str], node: ast.AST) -> str:
    line = lines[getattr(node, "lineno", 1) - 1] if lines else ""
    return line.strip()[:80]


def _depth(node: ast.AST, limit: int) -> bool:
    """Whether ``node`` nests deeper than ``limit`` (iteratively: no recursion on hostile input)."""
    stack = [(node, 0)]
    while stack:
        current, depth = stack.pop()
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(current))
    return False


class _Converter:
    """Statements -> steps, with every fault collected."""

    def __init__(self, statements: list[_Statement], tools: Mapping[str, Any] | None):
        self.statements = statements
        self.tools = tools
        self.ids: dict[str, str] = {}
        self.errors: list[str] = []

    def tool_name(self, name: str) -> str | None:
        if self.tools is None:
            return None if name in MATH_FUNCTIONS else name
        return find_tool(name, self.tools)

    def convert(self, *, require_answer: bool = True) -> Chain:
        seen: dict[str, int] = {}
        for st in self.statements:
            if st.name in seen:
                self.errors.append(
                    f"line {st.line}: {st.name!r} is assigned twice (first on line {seen[st.name]}): "
                    "give every quantity its own name"
                )
                continue
            seen[st.name] = st.line
            if st.name != ANSWER or not isinstance(st.value, ast.Name):
                self.ids[st.name] = f"y{len(self.ids) + 1}"
        if require_answer and ANSWER not in seen:
            self.errors.append("the program has no `answer = ...` line: end with answer = the name of the result")
        steps: list[Step] = []
        answer = ""
        for st in self.statements:
            if st.name in seen and seen[st.name] != st.line:
                continue
            if _depth(st.value, MAX_DEPTH):
                self.errors.append(f"line {st.line}: the expression is nested too deeply; split it into more lines")
                continue
            if st.name == ANSWER and not isinstance(st.value, ast.Name) and _is_sentence(st.value):
                # answer = name + " was known as ...": a sentence around a quantity. The writer words the answer,
                # so the quantity it names is the answer (a re-plan would cost a model call to say the same).
                named = [n.id for n in ast.walk(st.value) if isinstance(n, ast.Name)]
                st = replace(st, value=ast.Name(id=named[-1], ctx=ast.Load()))
            if st.name == ANSWER and isinstance(st.value, ast.Name):
                target = st.value.id
                if target not in self.ids:
                    self.errors.append(f"line {st.line}: answer names {target!r}, which is never assigned")
                else:
                    answer = self.ids[target]
                continue
            step = self.step(st)
            if step is not None:
                steps.append(step)
                if st.name == ANSWER:
                    answer = step.id
        if self.errors:
            raise ProgramError(self.errors)
        names = {step_id: name for name, step_id in self.ids.items()}
        return Chain(steps=tuple(steps), answer=answer, names=names)

    def step(self, st: _Statement) -> Step | None:
        step_id = self.ids[st.name]
        value = st.value
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id not in MATH_FUNCTIONS:
            return self.tool_step(st, step_id, value)
        expression = self.arithmetic(value, st.line)
        if expression is None:
            return None
        return Step(id=step_id, tool=CALCULATOR, args={"expression": expression_arg(expression)}, thought=st.thought)

    def tool_step(self, st: _Statement, step_id: str, call: ast.Call) -> Step | None:
        assert isinstance(call.func, ast.Name)
        name = self.tool_name(call.func.id)
        if name is None:
            offered = ", ".join(sorted(self.tools or {})) if self.tools is not None else ""
            self.errors.append(
                f"line {st.line}: {call.func.id!r} is not a tool" + (f" (tools: {offered})" if offered else "")
            )
            return None
        if name == CALCULATOR:
            if len(call.args) != 1 or call.keywords:
                self.errors.append(f"line {st.line}: write arithmetic directly (x = 3 * 4), not calculator(...)")
                return None
            inner = call.args[0]
            text = inner.value if isinstance(inner, ast.Constant) and isinstance(inner.value, str) else None
            expression = text if text is not None else self.arithmetic(inner, st.line)
            if expression is None:
                return None
            if text is not None:
                for var, ref in self.ids.items():
                    expression = re.sub(rf"\b{re.escape(var)}\b", ref, expression)
            return Step(
                id=step_id, tool=CALCULATOR, args={"expression": expression_arg(expression)}, thought=st.thought
            )
        positional = tuple(a for a in (self.tool_arg(arg, st.line) for arg in call.args) if a is not None)
        args: dict[str, Arg] = {}
        fields = tool_fields(self.tools[name]) if self.tools is not None else None
        for keyword in call.keywords:
            if keyword.arg is None:
                self.errors.append(f"line {st.line}: **kwargs are not allowed in a tool call")
                continue
            if fields is not None and keyword.arg not in fields:
                self.errors.append(
                    f"line {st.line}: {name} has no parameter {keyword.arg!r}; its parameters are: "
                    f"{', '.join(fields) or 'none'}"
                )
                continue
            converted = self.tool_arg(keyword.value, st.line)
            if converted is not None:
                args[keyword.arg] = converted
        if len(positional) != len(call.args):
            return None
        return Step(id=step_id, tool=name, args=args, positional=positional, thought=st.thought)

    def tool_arg(self, node: ast.expr, line: int) -> Arg | None:
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, (str, int, float))
            and not isinstance(node.value, bool)
        ):
            return Lit(node.value)
        if isinstance(node, ast.Name):
            ref = self.ref(node.id, line)
            return Ref(ref) if ref else None
        if (
            isinstance(node, ast.UnaryOp)
            and isinstance(node.op, ast.USub)
            and isinstance(node.operand, ast.Constant)
            and isinstance(node.operand.value, (int, float))
            and not isinstance(node.operand.value, bool)
        ):
            return Lit(-node.operand.value)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            parts = self.concat(node, line)
            return Concat(tuple(parts)) if parts is not None else None
        self.errors.append(
            f"line {line}: a tool argument is a literal or a name (or strings joined with +), not {_kind(node)}"
        )
        return None

    def concat(self, node: ast.expr, line: int) -> list[Lit | Ref] | None:
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            left, right = self.concat(node.left, line), self.concat(node.right, line)
            return None if left is None or right is None else left + right
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return [Lit(node.value)]
        if isinstance(node, ast.Name):
            ref = self.ref(node.id, line)
            return [Ref(ref)] if ref else None
        self.errors.append(f"line {line}: join strings and names with +, not {_kind(node)}")
        return None

    def ref(self, name: str, line: int) -> str | None:
        if name in self.ids:
            return self.ids[name]
        self.errors.append(f"line {line}: {name!r} is used but never assigned")
        return None

    def arithmetic(self, node: ast.expr, line: int) -> str | None:
        """Calculator text for an arithmetic expression, names replaced by their placeholders (checked against the
        whitelist, then written back with Python's own minimal parentheses)."""
        problems: list[str] = []
        self._check_arith(node, problems, line)
        if problems:
            self.errors.extend(dict.fromkeys(problems))
            return None
        return ast.unparse(_ToCalculator(self.ids).visit(copy.deepcopy(node)))

    def _check_arith(self, node: ast.expr, problems: list[str], line: int) -> None:
        """Every fault of an arithmetic expression against the whitelist, into ``problems``."""
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
                problems.append(
                    f"line {line}: arithmetic takes numbers, not {node.value!r}"
                    + ("; a text argument belongs in a tool call" if isinstance(node.value, str) else "")
                )
        elif isinstance(node, ast.Name):
            if node.id not in CONSTANTS or node.id in self.ids:
                self.ref(node.id, line)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            self._check_arith(node.operand, problems, line)
        elif isinstance(node, ast.BinOp):
            self._check_arith(node.left, problems, line)
            self._check_arith(node.right, problems, line)
            if not isinstance(node.op, _ARITH_OPS):
                problems.append(
                    f"line {line}: the operator {type(node.op).__name__} is not arithmetic the calculator "
                    "knows (use + - * / ** % //)"
                )
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id not in MATH_FUNCTIONS:
                problems.append(
                    f"line {line}: a tool call must be the whole right-hand side: give {node.func.id}(...) its own line"
                )
                return
            if node.keywords:
                problems.append(f"line {line}: {node.func.id}() takes no keyword arguments here")
            for arg in node.args:
                self._check_arith(arg, problems, line)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "math"
        ):
            problems.append(f"line {line}: write {node.func.attr}(...), not math.{node.func.attr}(...) (no imports)")
        else:
            problems.append(f"line {line}: {_kind(node)} are not allowed in arithmetic")


class _ToCalculator(ast.NodeTransformer):
    """Names -> placeholders, ``a // b`` -> ``floor(a / b)`` (the calculator's notation)."""

    def __init__(self, ids: Mapping[str, str]):
        self.ids = ids

    def visit_Name(self, node: ast.Name) -> ast.AST:
        return ast.Name(id=self.ids.get(node.id, node.id), ctx=ast.Load())

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        self.generic_visit(node)
        if isinstance(node.op, ast.FloorDiv):
            return ast.Call(
                func=ast.Name(id="floor", ctx=ast.Load()),
                args=[ast.BinOp(left=node.left, op=ast.Div(), right=node.right)],
                keywords=[],
            )
        return node


def formatted_name(node: ast.expr) -> str | None:
    """The quantity an f-string only displays (``f"{change:.2f}%"``, ``f"${total} million"``): its one replacement
    field is a plain name, with at most a format spec; None for anything else."""
    if not isinstance(node, ast.JoinedStr):
        return None
    fields = [v for v in node.values if isinstance(v, ast.FormattedValue)]
    if len(fields) != 1 or not isinstance(fields[0].value, ast.Name):
        return None
    spec = fields[0].format_spec
    if spec is not None and not all(isinstance(v, ast.Constant) for v in getattr(spec, "values", [])):
        return None
    return fields[0].value.id


def _is_sentence(node: ast.expr) -> bool:
    """Strings and names joined with + , with at least one of each (``x + " is the answer"``)."""
    parts: list[ast.expr] = []

    def flatten(n: ast.expr) -> bool:
        if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Add):
            return flatten(n.left) and flatten(n.right)
        parts.append(n)
        return isinstance(n, ast.Name) or (isinstance(n, ast.Constant) and isinstance(n.value, str))

    return (
        flatten(node)
        and any(isinstance(p, ast.Name) for p in parts)
        and any(isinstance(p, ast.Constant) for p in parts)
    )


def _kind(node: ast.AST) -> str:
    return _FORBIDDEN.get(type(node), f"{type(node).__name__} expressions")


def parse_program(text: str, tools: Mapping[str, Any] | None = None) -> Chain:
    """A reply in the program form -> a :class:`Chain` (ids ``y1..`` in assignment order, names kept in
    ``chain.names``); :class:`ProgramError` with every fault otherwise. ``tools`` (name -> tool) lets tool names and
    keyword parameters be checked here; without it, any non-math call is taken as a tool call for the validator."""
    code = extract_program(text)
    if not code.strip():
        raise ProgramError([f"there is no program in the reply: {_HINT}"])
    errors = _check_size(code)
    if errors:
        raise ProgramError(errors)
    statements, errors = _statements(_syntax(code), code)
    converter = _Converter(statements, tools)
    converter.errors.extend(errors)
    return converter.convert()


_SEARCH_LINE = re.compile(r"^\s*([A-Za-z_]\w*)\s*=\s*search_knowledge\s*\(")


def salvage_lookups(text: str, tools: Mapping[str, Any] | None = None) -> Chain | None:
    """A lookup question's program whose searches are sound but whose other lines cannot run (``x.split()[1]``,
    ``len(x)``, text through the calculator, a name assigned twice): the chain of its searches alone, answering with
    the last, or None when they do not stand on their own. Reading the passages is the writer's part, so nothing the
    model meant to look up is lost; the re-plans that would repeat the same slip (Qwen2.5-Coder-1.5B did, three times
    in a row, on a third of HotpotQA questions) are saved."""
    lines = extract_program(text).split("\n")
    kept: list[str] = []
    last = None
    for i, line in enumerate(lines):
        match = _SEARCH_LINE.match(line)
        if match is None or match.group(1) == ANSWER:
            continue
        if i and lines[i - 1].lstrip().startswith("#"):
            kept.append(lines[i - 1].strip())
        kept.append(line.strip())
        last = match.group(1)
    if last is None:
        return None
    try:
        return parse_program("\n".join([*kept, f"{ANSWER} = {last}"]), tools)
    except ProgramError:
        return None


# ------------------------------------------------------------------------------------------------ streaming


@dataclass
class ProgramStream:
    """Parses a streamed program-form reply as it arrives: :meth:`feed` returns the steps completed by a delta (each
    once, with its final ``yN`` id), so a step whose inputs are ready can be reified while the rest is decoded.
    :meth:`finish` parses the whole text (the authority: same chain as :func:`parse_program`). ``closed`` turns true
    at the closing fence, where decoding can stop."""

    tools: Mapping[str, Any] | None = None
    text: str = ""
    closed: bool = False
    looping: str | None = None
    """Why decoding should stop now: the reply has started repeating itself (a line written for the third time, or a
    name assigned again, an error no later line can repair). A small model in such a loop runs to its token limit."""
    _emitted: list[Step] = field(default_factory=list)
    _parsed: int = -1  # length of the complete lines last parsed: a delta that completes no line re-parses nothing

    def feed(self, delta: str) -> list[Step]:
        if self.closed:
            return []
        self.text += delta
        body = self.text.replace("\r\n", "\n").replace("\r", "\n")
        fences = list(_FENCE_ANY.finditer(body))
        if fences:
            start = fences[0].end()
            closing = next(
                (f for f in fences[1:] if f.group(0).strip() == "```" and body[start : f.start()].strip()), None
            )
            if closing is not None:
                self.closed = True
                body = body[: closing.start()]
        # Only complete lines count: the last line may still be growing.
        complete = body[: body.rfind("\n") + 1] if not self.closed else body + "\n"
        if len(complete) == self._parsed:
            # Sentences too: a prose reply repeating itself on one line completes no line until its token limit.
            self.looping = self.looping or repeated_sentence(body)
            return []
        self._parsed = len(complete)
        self.looping = repetition(complete) or repeated_sentence(body)
        try:
            chain = _prefix_chain(complete, self.tools)
        except ProgramError:
            return []
        # Complete lines that parse hold complete statements (a call spanning lines does not parse until it closes),
        # and ids follow the order of assignment, so a step once seen keeps its id.
        fresh = list(chain.steps[len(self._emitted) :])
        self._emitted.extend(fresh)
        return fresh

    def finish(self) -> Chain:
        return parse_program(self.text, self.tools)

    @property
    def steps(self) -> list[Step]:
        return list(self._emitted)


_ASSIGNED = re.compile(r"^[ \t]*([A-Za-z_]\w*)[ \t]*=(?!=)")
# x = f"{x:.2f}%": a quantity formatted for display, not a second assignment (the parser drops the line).
_SELF_FORMAT = re.compile(r"^[ \t]*([A-Za-z_]\w*)[ \t]*=[ \t]*[rR]?[fF][rR]?([\"'])[^{]*\{\1(?=[:!}])")
REPEATS = 3
"""How many times the same line may appear before a reply counts as looping (a program repeats short lines such as
``)`` legitimately, so only lines with a word in them are counted)."""


def repetition(code: str) -> str | None:
    """Why ``code`` (complete lines of a program reply) is looping, or None: a name assigned a second time, or the
    same line written :data:`REPEATS` times."""
    counts: Counter[str] = Counter()
    assigned: set[str] = set()
    for line in code.splitlines():
        match = _ASSIGNED.match(line)
        if match and not _SELF_FORMAT.match(line):
            name = match.group(1)
            if name in assigned:
                return f"{name!r} is assigned again"
            assigned.add(name)
        text = " ".join(line.split())
        if re.search(r"[A-Za-z]", text) and not text.startswith("```"):
            counts[text] += 1
            if counts[text] >= REPEATS:
                return f"the line {clip(text, 60)!r} is written {REPEATS} times"
    return None


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n")


def repeated_sentence(text: str) -> str | None:
    """Why ``text`` is looping within its lines, or None: a sentence of four words or more written :data:`REPEATS`
    times (SmolLM2 repeats one prose sentence on a single line until its token limit)."""
    counts: Counter[str] = Counter()
    for sentence in _SENTENCE_END.split(text):
        words = sentence.split()
        if len(words) < 4 or not re.search(r"[A-Za-z]", sentence):
            continue
        key = " ".join(words)
        counts[key] += 1
        if counts[key] >= REPEATS:
            return f"the sentence {clip(key, 60)!r} is written {REPEATS} times"
    return None


def _prefix_chain(code: str, tools: Mapping[str, Any] | None) -> Chain:
    """The steps of a program prefix (no answer line needed yet); ProgramError when the prefix does not parse."""
    source = extract_program(code)
    if not source.strip():
        return Chain(steps=(), answer="")
    statements, errors = _statements(_syntax(source), source)
    if errors:
        raise ProgramError(errors)
    return _Converter([s for s in statements if s.name != ANSWER], tools).convert(require_answer=False)


# ---------------------------------------------------------------------------------------------------- render


def render_program(chain: Chain, *, names: Mapping[str, str] | None = None, thoughts: bool = True) -> str:
    """The chain in the program form (a fenced Python block); ``parse_program(render_program(c))`` gives ``c`` back
    up to ids. Names come from ``names``, else ``chain.names``, else the placeholders themselves."""
    mapping = dict(chain.names)
    mapping.update(names or {})
    known = {step.id for step in chain.steps}
    use = {sid: _identifier(mapping.get(sid, sid), sid) for sid in known}
    lines = []
    for step in chain.steps:
        if thoughts and step.thought.strip():
            lines.append("# " + " ".join(step.thought.split()))
        lines.append(f"{use[step.id]} = {_rhs(step, use)}")
    answer = chain.answer.strip()
    target = use.get(answer, answer if answer.isidentifier() else repr(answer))
    lines.append(f"answer = {target}")
    return "```python\n" + "\n".join(lines) + "\n```"


def _identifier(name: str, fallback: str) -> str:
    return name if name.isidentifier() and name != ANSWER else fallback


def _rhs(step: Step, use: Mapping[str, str]) -> str:
    def sub(text: str) -> str:
        return re.sub(r"\by[0-9]+\b", lambda m: use.get(m.group(0), m.group(0)), text)

    if step.tool == CALCULATOR and set(step.args) <= {"expression"} and not step.positional:
        arg = step.args.get("expression", Lit(""))
        if isinstance(arg, Ref):
            return use.get(arg.id, arg.id)
        if isinstance(arg, Lit):
            python = _as_python(str(arg.value))
            # Calculator notation Python cannot read (15% of 80) stays a calculator call with the text as it was.
            return sub(python) if python is not None else f"calculator({str(arg.value)!r})"
    parts = [_arg_text(a, use) for a in step.positional]
    parts += [f"{k}={_arg_text(a, use)}" for k, a in step.args.items()]
    return f"{step.tool}({', '.join(parts)})"


_THOUSANDS = re.compile(r"(?<![\w.])(\d{1,3})((?:,\d{3})+)(?![\d])")


def _as_python(expression: str) -> str | None:
    """A calculator expression as program-form arithmetic (thousands separators dropped), or None if it is not."""
    candidate = _THOUSANDS.sub(lambda m: m.group(1) + m.group(2).replace(",", ""), expression.strip())
    try:
        probe = re.sub(r"\by[0-9]+\b", "1", candidate)  # placeholders stand for numbers here
        chain = parse_program(f"v = {probe}\nanswer = v")
    except ProgramError:
        return None
    if len(chain.steps) != 1 or chain.steps[0].tool != CALCULATOR:
        return None
    return candidate


def _arg_text(arg: Arg, use: Mapping[str, str]) -> str:
    if isinstance(arg, Ref):
        return use.get(arg.id, arg.id)
    if isinstance(arg, Concat):
        return " + ".join(_arg_text(p, use) for p in arg.parts)
    return repr(arg.value)
