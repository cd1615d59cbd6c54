"""The safe expression language: parsing, evaluation, rendering, errors."""

from __future__ import annotations

import pytest

from pitstop.runbook import expressions as ex

CTX = {
    "inputs": {"n": 3, "who": "ops", "regions": ["eu", "us"], "flag": True},
    "steps": {
        "a": {"status": "succeeded", "outputs": {"ok": True, "count": 2}},
        "fan": {"status": "succeeded", "outputs": [{"changed": True}, {"changed": False}]},
    },
    "item": "eu",
    "run": {"id": "r1", "dry_run": False},
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("inputs.n", 3),
        ("inputs.n == 3", True),
        ("inputs.n != 3", False),
        ("inputs.n >= 4 or inputs.flag", True),
        ("not inputs.flag", False),
        ("!inputs.flag || steps.a.outputs.ok && true", True),
        ("item in inputs.regions", True),
        ("'ap' not in ['eu', \"us\"]", True),
        ("steps.a.status == 'succeeded'", True),
        ("steps.fan.outputs.changed", [True, False]),
        ("inputs.regions[1]", "us"),
        ("inputs.missing", None),
        ("steps.nope.outputs.x", None),
        ("(inputs.n > 1) and (inputs.n < 5)", True),
        ("[1, 2.5, null, false]", [1, 2.5, None, False]),
        ("'it\\'s'", "it's"),
    ],
)
def test_evaluate(text: str, expected: object) -> None:
    assert ex.evaluate(ex.parse(text), CTX) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty expression"),
        ("inputs.n ==", "unexpected end"),
        ("__import__('os')", "unknown name '__import__'"),
        ("inputs.n; rm", "unexpected character ';'"),
        ("(inputs.n", "expected ')' at the end"),
        ("inputs.", "unexpected end"),
        ("inputs.n inputs.n", "unexpected 'inputs'"),
    ],
)
def test_parse_errors(text: str, message: str) -> None:
    with pytest.raises(ex.ExpressionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ex.parse(text)


def test_render_keeps_types_and_interpolates() -> None:
    value = {"n": "${{ inputs.n }}", "s": "x-${{ inputs.n }}-${{ run.dry_run }}", "l": ["${{ item }}", 1]}
    assert ex.render(value, CTX) == {"n": 3, "s": "x-3-false", "l": ["eu", 1]}


def test_refs_and_conditions() -> None:
    node = ex.parse("steps.a.outputs.ok and inputs.n > 1")
    assert [r.path for r in ex.refs(node)] == [("steps", "a", "outputs", "ok"), ("inputs", "n")]
    assert ex.truthy("${{ inputs.flag }}", CTX) is True
    assert ex.truthy("inputs.n == 4", CTX) is False
    assert ex.truthy(None, CTX) is True
    assert ex.truthy(False, CTX) is False


def test_comparing_incompatible_types_is_an_expression_error() -> None:
    with pytest.raises(ex.ExpressionError, match="cannot compare"):
        ex.evaluate(ex.parse("inputs.who < 3"), CTX)


def test_two_expressions_in_one_text_are_each_rendered() -> None:
    """A string holding two `${{ }}` is a text with two expressions, not one expression spanning both."""
    context = {"inputs": {"service": "trip", "region": "eu"}}
    assert ex.whole("${{ inputs.service }} in ${{ inputs.region }}") is None
    assert ex.render("${{ inputs.service }} in ${{ inputs.region }}", context) == "trip in eu"
    assert ex.render("${{ inputs.service }}${{ inputs.region }}", context) == "tripeu"
    assert ex.whole(" ${{ inputs.service }} ") == " inputs.service "
