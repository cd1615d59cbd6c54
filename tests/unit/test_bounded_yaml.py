"""The bounded YAML loader: alias bombs, absurd nesting, oversized and recursive files are refused quickly with
a message naming the file; ordinary YAML (anchors and merge keys included) loads as `yaml.safe_load` does."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from pitstop import bounded_yaml
from pitstop.bounded_yaml import MAX_YAML_BYTES, MAX_YAML_DEPTH, MAX_YAML_NODES, YamlRefused
from pitstop.config import ConfigFileError, Settings
from pitstop.remediation import RemediationError, load_catalog
from pitstop.runbook.validation import RunbookInvalid, load_runbook_file, validate_catalog
from tests.fixtures.worker_reach import DEFAULT_REACH


def alias_bomb(levels: int = 9) -> str:
    """The classic "billion laughs": 9 levels of 9 aliases each = 9**9 (387 million) expanded strings."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, levels + 1):
        refs = ",".join([f"*a{level - 1}"] * 9)
        lines.append(f"a{level}: &a{level} [{refs}]")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_in_well_under_a_second_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb())
    assert path.stat().st_size < 1000
    started = time.monotonic()
    with pytest.raises(YamlRefused) as refused:
        bounded_yaml.load_file(path)
    assert time.monotonic() - started < 0.5
    assert str(refused.value).startswith(f"{path}:")
    assert f"more than {MAX_YAML_NODES} YAML nodes once aliases are expanded" in str(refused.value)


def test_the_runbook_validator_catalog_and_config_refuse_it_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bomb = alias_bomb().replace("a0:", "name: bomb\nsteps: []\na0:", 1)
    runbooks = tmp_path / "runbooks"
    runbooks.mkdir()
    (runbooks / "bomb.yaml").write_text(bomb)
    started = time.monotonic()
    _, problems = validate_catalog(runbooks, reach=DEFAULT_REACH)
    with pytest.raises(RunbookInvalid) as invalid:
        load_runbook_file(runbooks / "bomb.yaml", reach=DEFAULT_REACH)
    assert "alias bomb" in str(invalid.value) and "bomb.yaml:" in str(invalid.value)
    catalog = tmp_path / "remediation-catalog.yaml"
    catalog.write_text(alias_bomb())
    with pytest.raises(RemediationError, match=r"remediation-catalog.yaml: cannot read .*alias bomb.* \(line \d+\)"):
        load_catalog(catalog)
    config = tmp_path / "config.yaml"
    config.write_text(alias_bomb())
    monkeypatch.setenv("PITSTOP_CONFIG", str(config))
    with pytest.raises(ConfigFileError, match=r"config.yaml: .*alias bomb.* \(line \d+\)"):
        Settings()
    assert time.monotonic() - started < 2.0
    assert [p.file for p in problems] == [str(runbooks / "bomb.yaml")]
    assert "alias bomb" in problems[0].message


def test_deep_nesting_is_refused_written_out_or_through_aliases(tmp_path: Path) -> None:
    deep = "[" * 10_000 + "]" * 10_000  # would otherwise exhaust Python's recursion
    with pytest.raises(YamlRefused, match=f"deep.yaml:1: nested more than {MAX_YAML_DEPTH} levels deep"):
        bounded_yaml.load_text(deep, source="deep.yaml")
    block = "".join(f"{'  ' * i}k{i}:\n" for i in range(MAX_YAML_DEPTH + 5)) + "  " * (MAX_YAML_DEPTH + 5) + "x\n"
    with pytest.raises(YamlRefused, match="nested more than"):
        bounded_yaml.load_text(block, source="block.yaml")
    half = MAX_YAML_DEPTH // 2 + 2
    through_aliases = f"a: &a {'[' * half}1{']' * half}\nb: {'[' * half}*a{']' * half}\n"
    with pytest.raises(YamlRefused, match="through aliases"):
        bounded_yaml.load_text(through_aliases, source="alias-deep.yaml")
    ok = "[" * (MAX_YAML_DEPTH - 1) + "1" + "]" * (MAX_YAML_DEPTH - 1)
    assert bounded_yaml.load_text(ok) == yaml.safe_load(ok)


def test_an_oversized_file_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    path.write_text("x: " + "y" * MAX_YAML_BYTES + "\n")
    started = time.monotonic()
    with pytest.raises(YamlRefused, match=rf"huge.yaml:1: {MAX_YAML_BYTES + 4} bytes is more than the limit"):
        bounded_yaml.load_file(path)
    with pytest.raises(RunbookInvalid, match="huge.yaml:1: .*bytes is more than the limit"):
        load_runbook_file(path, reach=DEFAULT_REACH)
    assert time.monotonic() - started < 0.5


def test_a_recursive_alias_is_refused() -> None:
    with pytest.raises(YamlRefused, match="alias \\*a is used inside its own anchor"):
        bounded_yaml.load_text("a: &a [1, *a]\n", source="loop.yaml")


def test_ordinary_yaml_with_anchors_and_merge_keys_loads_like_safe_load() -> None:
    text = """
defaults: &defaults {retries: 3, timeout: 10s}
steps:
  - {<<: *defaults, id: a}
  - {<<: *defaults, id: b, retries: 1}
list: &l [1, 2.5, true, null, "s", 2026-01-01]
again: *l
"""
    assert bounded_yaml.load_text(text) == yaml.safe_load(text)
    assert bounded_yaml.load_text("") is None


def test_many_aliases_below_the_bound_are_fine() -> None:
    text = alias_bomb(levels=4)  # 9**5 = 59,049 strings, below the bound
    assert len(bounded_yaml.load_text(text)["a4"]) == 9


def test_invalid_yaml_names_the_line() -> None:
    with pytest.raises(YamlRefused, match=r"bad.yaml:3: not valid YAML"):
        bounded_yaml.load_text("a: 1\nb: [2\nc: 3\n: :\n", source="bad.yaml")
