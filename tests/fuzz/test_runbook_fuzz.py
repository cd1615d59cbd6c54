"""Fuzzing runbook validation: mutations of every shipped runbook (tests/fuzz/runbook_mutations.py) are
validated as `pitstop runbooks validate` does: problems naming the file or a pass, never another exception,
never a hang (each case bounded by a watchdog); an alias bomb is refused in well under a second."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import example, given

from tests.fuzz.harness import ROOT
from tests.fuzz.runbook_mutations import SHIPPED, alias_bomb, mutated_runbooks, validated_outcome

HELLO = (ROOT / "runbooks" / "hello.yaml").read_bytes()


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("runbooks")


def test_every_shipped_runbook_is_fuzzed_and_valid(root: Path) -> None:
    assert len(SHIPPED) >= 10, SHIPPED
    children = {p.name: p.read_bytes() for p in SHIPPED}  # a runbook may run another shipped one as its child
    for path in SHIPPED:
        outcome = validated_outcome(root, path.name, path.read_bytes(), siblings=children)
        assert outcome.kind == "ok", (path, outcome.detail)


DEEP_BRACKETS = HELLO.replace(b"${{ inputs.name }}", b"${{ " + b"(" * 400 + b"inputs.name" + b")" * 400 + b" }}")
LONG_OR = HELLO.replace(b"${{ inputs.shout }}", b"${{ " + b" or ".join([b"inputs.shout"] * 1000) + b" }}")


@given(mutated_runbooks())
@example(("hello.yaml", b"name: hello\nsteps: []\n" + alias_bomb().encode()))
@example(("hello.yaml", b"name: hello\n\xff\xfe steps: []\n"))  # was: UnicodeDecodeError
@example(("hello.yaml", b"\x1fname: hello\nsteps: []\n"))  # was: yaml.reader.ReaderError
@example(("hello.yaml", DEEP_BRACKETS))  # was: RecursionError while parsing
@example(("hello.yaml", LONG_OR))  # was: RecursionError while walking the expression's references
@example(("hello.yaml", HELLO.replace(b"    with:\n      message: right", b"    with:\n     ?  message: right")))
# the one above was: TypeError (a mapping as a mapping key); tests/unit/test_runbook_validation.py has the rest
def test_mutated_runbooks_get_problems_naming_the_file_or_pass(root: Path, case: tuple[str, bytes]) -> None:
    name, content = case
    outcome = validated_outcome(root, name, content)
    assert outcome.good, outcome.detail


def test_an_alias_bomb_in_a_shipped_runbook_is_refused_in_under_a_second(root: Path) -> None:
    content = (SHIPPED[0].read_text() + alias_bomb()).encode()
    started = time.monotonic()
    outcome = validated_outcome(root, SHIPPED[0].name, content)
    elapsed = time.monotonic() - started
    assert outcome.kind == "refused" and "alias bomb" in outcome.detail, outcome.detail
    assert elapsed < 1.0, elapsed
