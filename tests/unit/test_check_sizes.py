"""scripts/check_sizes.py: class and function spans, and the runbook engine's modules within the limits."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("check_sizes", ROOT / "scripts" / "check_sizes.py")
assert _spec is not None and _spec.loader is not None
check_sizes = importlib.util.module_from_spec(_spec)
sys.modules["check_sizes"] = check_sizes
_spec.loader.exec_module(check_sizes)

RUNBOOK_ENGINE = ["runbook.py", "runbook_state.py", "runbook_steps.py", "runbook_fan_out.py", "runbook_lifecycle.py",
                  "runbook_visibility.py", "step_calls.py", "saga.py", "approvals.py"]


def test_spans_count_decorators_and_nested_definitions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "sample.py"
    source.write_text(
        "import functools\n"            # 1
        "\n"                            # 2
        "@functools.total_ordering\n"   # 3
        "class Shape:\n"                # 4
        "    @property\n"               # 5
        "    def area(self):\n"         # 6
        "        def inner():\n"        # 7
        "            return 1\n"        # 8
        "        return inner()\n"      # 9
        "\n"                            # 10
        "async def top():\n"            # 11
        "    pass\n"                    # 12
    )
    monkeypatch.setattr(check_sizes, "ROOT", tmp_path)
    classes, functions = check_sizes.definitions(source)
    assert [(c.name, c.line, c.lines) for c in classes] == [("Shape", 3, 7)]
    assert sorted((f.name, f.line, f.lines) for f in functions) == [
        ("Shape.area", 5, 5), ("Shape.area.<locals>.inner", 7, 2), ("top", 11, 2),
    ]


def test_runbook_engine_within_limits() -> None:
    for name in RUNBOOK_ENGINE:
        classes, functions = check_sizes.definitions(ROOT / "workflows" / name)
        assert all(c.lines <= check_sizes.MAX_WORKFLOW_CLASS_LINES for c in classes), classes
        assert all(f.lines <= check_sizes.MAX_FUNCTION_LINES for f in functions), [str(f) for f in functions]


def test_strict_fails_only_over_a_limit(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(check_sizes, "MAX_FUNCTION_LINES", 10_000)
    monkeypatch.setattr(check_sizes, "MAX_WORKFLOW_CLASS_LINES", 10_000)
    assert check_sizes.main(["--strict"]) == 0
    monkeypatch.setattr(check_sizes, "MAX_FUNCTION_LINES", 1)
    assert check_sizes.main([]) == 0  # report-only by default
    assert check_sizes.main(["--strict"]) == 1
    assert "<-- over" in capsys.readouterr().out
