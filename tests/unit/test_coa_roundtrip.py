"""Property tests: ``parse_chain(render(c)) == c`` (and the same for the JSON form) for generated chains."""

from __future__ import annotations

import re

from conclave.workflows.coa import Chain, Concat, Lit, Ref, Step, calculator_step, parse_chain, render, render_json
from conclave.workflows.coa.parse import MATH_FUNCTIONS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ids = st.integers(min_value=1, max_value=120).map(lambda n: f"y{n}")
refs = ids.map(Ref)

# Prose may hold anything but what starts structure: brackets, braces, fences, "####" and the word "answer".
prose = (
    st.text(
        st.characters(exclude_characters="[]{}`#*", exclude_categories=("Cs", "Cc")) | st.just("\n"),
        max_size=30,
    )
    .map(str.strip)
    .filter(lambda s: "answer" not in s.lower())
)

# Strings in arguments are unrestricted (quotes, commas, parens, brackets, escapes, unicode), except that a string
# that is exactly a placeholder reads back as that placeholder.
free_text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="`"), max_size=20).filter(
    lambda s: re.fullmatch(r"[yY][0-9]+", s) is None
)
tricky_text = st.sampled_from(
    ["a, b", "(x, y)", 'say "hi"', "back\\slash", "y1 and y10", "[not a step = y1]", "f(1, 2) -> y3", "", "it's"]
)
strings = tricky_text | free_text
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | strings
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=5).filter(lambda k: k != "steps"), inner, max_size=3)
    ),
    max_leaves=6,
)
literals = json_values.map(Lit)
concats = st.lists(strings.map(Lit) | refs, min_size=2, max_size=4).map(lambda parts: Concat(tuple(parts)))
args = literals | refs | concats

names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True)
tool_names = names.filter(lambda n: n.casefold() != "calculator")


@st.composite
def tool_steps(draw: st.DrawFn, allow_concat: bool = True) -> Step:
    arg = args if allow_concat else (literals | refs)
    positional = tuple(draw(st.lists(arg, max_size=3)))
    kwargs = draw(st.dictionaries(names, arg, max_size=3)) if not (positional and not allow_concat) else {}
    return Step(id=draw(ids), tool=draw(tool_names), args=kwargs, positional=positional, thought=draw(prose))


operand = (
    st.integers(min_value=0, max_value=10**6).map(str)
    | st.decimals(min_value=0, max_value=1000, places=2, allow_nan=False, allow_infinity=False).map(str)
    | ids
)
expressions = st.lists(
    st.tuples(st.sampled_from([" + ", "-", " * ", " / ", "**", " % "]), operand), max_size=4
).flatmap(lambda rest: operand.map(lambda first: first + "".join(op + o for op, o in rest))) | st.tuples(
    st.sampled_from(sorted(MATH_FUNCTIONS)), operand, operand
).map(lambda t: f"{t[0]}({t[1]}, {t[2]})")
odd_expressions = st.text(st.characters(exclude_categories=("Cs", "Cc")), min_size=1, max_size=15).filter(
    lambda s: s == s.strip() and not re.search(r"\bY[0-9]+\b", s) and re.fullmatch(r"[yY][0-9]+", s) is None
)


@st.composite
def calc_steps(draw: st.DrawFn) -> Step:
    expression = draw(expressions | odd_expressions)
    return calculator_step(draw(ids), expression, thought=draw(prose))


answers = ids | st.tuples(ids, st.from_regex(r"[a-z]+( [a-z]+)?", fullmatch=True)).map(" ".join).filter(
    lambda s: "answer" not in s
)


@st.composite
def chains(draw: st.DrawFn, json_form: bool = False) -> Chain:
    step = calc_steps() | tool_steps(allow_concat=not json_form)
    steps = tuple(draw(st.lists(step, min_size=0 if not json_form else 1, max_size=5)))
    tail = "" if json_form else draw(prose)
    return Chain(steps=steps, answer=draw(answers), tail=tail)


@PROPERTY
@given(chains())
def test_text_form_round_trips(chain: Chain) -> None:
    text = render(chain)
    assert parse_chain(text) == chain, text


@PROPERTY
@given(chains(json_form=True))
def test_json_form_round_trips(chain: Chain) -> None:
    text = render_json(chain)
    assert parse_chain(text) == chain, text


def test_generated_chains_cover_the_hard_cases() -> None:
    """The strategies above can produce what the round trip must survive (guards against a too-tame strategy)."""
    rendered = render(
        Chain(
            steps=(
                Step("y1", "search", positional=(Lit('a, "b" (c)'),), args={"n": Lit(3)}, thought="see"),
                Step("y10", "max", positional=(Concat((Lit("x "), Ref("y1"))),)),
                calculator_step("y2", "y10 - y1"),
            ),
            answer="y2",
        )
    )
    assert '"a, \\"b\\" (c)"' in rendered and "[FUNC max(" in rendered and "[y10 - y1 = y2]" in rendered
    assert parse_chain(rendered).steps[2].refs() == ["y10", "y1"]
