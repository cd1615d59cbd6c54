"""Mutations of every shipped runbook for the validation fuzzer (hypothesis strategies), and how one case is judged.

Structural mutations (on the loaded data, written back as YAML): delete, duplicate or retype a field, random
YAML scalars (or lists/mappings) at random paths, rename step ids (to duplicates, to invalid ids), break
`needs` references, introduce `needs` cycles, odd `${{ }}` expressions. Text mutations (of the file's bytes):
random edits, duplicated/swapped/re-indented lines, YAML syntax fragments (anchors, aliases, tags, merge keys,
flow brackets, tabs, document markers), invalid UTF-8, and an alias bomb.

`validated_outcome(root, name, data)` writes the mutated file into `root` and validates it as
`pitstop runbooks validate` does (`validate_catalog` over the directory; the file on its own when the directory
scan does not take it for a runbook): problems or a pass, never another exception, every problem naming the
file, within `HANG_SECONDS`.
"""

from __future__ import annotations

from collections.abc import Mapping

import copy
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

from pitstop.runbook.validation import parse_runbook_file, validate_catalog
from tests.fixtures.worker_reach import DEFAULT_REACH

from .harness import HANG_SECONDS, ROOT, Hang, Outcome, escaped, paths_in, within

SHIPPED = [p for p in sorted((ROOT / "runbooks").glob("*.yaml"))
           if isinstance(data := yaml.safe_load(p.read_text()), dict) and "steps" in data]


def alias_bomb(levels: int = 9) -> str:
    """A "billion laughs": `levels` levels of 9 aliases each (9**9 expanded strings at 9 levels)."""
    lines = ['lol0: &lol0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, levels + 1):
        lines.append(f"lol{level}: &lol{level} [{','.join([f'*lol{level - 1}'] * 9)}]")
    return "\n".join(lines) + "\n"


yaml_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=30),
    st.sampled_from(["", "~", "null", "yes", "no", "on", "0x1F", "0o17", "1_000", ".inf", "-.nan", "2026-12-01",
                     "2026-12-01T10:00:00Z", "12:30:45", "${{", "}}", "${{ }}", "*", "&", "!", "|", ">", "- ", ": ",
                     "step", "steps", "needs"]))
yaml_values = st.recursive(yaml_scalars, lambda children: st.one_of(
    st.lists(children, max_size=4), st.dictionaries(st.text(max_size=12), children, max_size=4)), max_leaves=12)
expressions = st.one_of(
    st.sampled_from(["${{ inputs.nope }}", "${{ steps.nope.outputs.x }}", "${{ steps. }}", "${{ inputs.service",
                     "${{ ${{ inputs.service }} }}", "${{ steps.release.outputs }}", "${{}}", "$${{ x }}",
                     "${{ inputs.service | upper }}", "${{ 1 + }}", "${{ " + "(" * 500 + " }}", "${{ '\\' }}"]),
    st.text(max_size=40).map(lambda t: "${{ " + t + " }}"))
step_ids = st.one_of(st.sampled_from(["", "1abc", "a b", "release", "steps", "x" * 300, "dup", "é"]),
                     st.from_regex(r"\A[a-z][a-z0-9_-]{0,20}\Z"), st.text(max_size=20))
yaml_fragments = st.sampled_from([
    "&a ", "*a", "*nope", "!!python/object:os.system ", "!!binary ", "!!str ", "!custom ", "<<: *a\n", "{", "}",
    "[", "]", "- ", ": ", "\t", "---\n", "...\n", "%YAML 1.1\n", "? ", "|\n", ">-\n", "#", "'", '"', "\\",
    "\x00", "\ufeff", "\u2028", "${{ ", " }}", "needs: [", "steps:\n", "&a [*a]",
])


def _at(tree: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        tree = tree[part]
    return tree


def _steps(tree: Any) -> list[dict[str, Any]]:
    steps = tree.get("steps") if isinstance(tree, dict) else None
    return [s for s in steps if isinstance(s, dict)] if isinstance(steps, list) else []


@st.composite
def structural_mutation(draw: st.DrawFn, data: Any) -> bytes:
    """1-4 structural mutations of a runbook's data, dumped as YAML."""
    tree = copy.deepcopy(data)
    for _ in range(draw(st.integers(1, 4))):
        operation = draw(st.sampled_from(["delete", "duplicate", "retype", "scalar", "expression", "rename",
                                          "needs", "cycle"]))
        paths = [p for p in paths_in(tree) if p]
        steps = _steps(tree)
        if operation in ("delete", "duplicate", "retype", "scalar", "expression") and paths:
            path = draw(st.sampled_from(paths))
            parent = _at(tree, path[:-1])
            if operation == "delete":
                del parent[path[-1]]
            elif operation == "duplicate":
                if isinstance(parent, list):
                    parent.insert(path[-1], copy.deepcopy(parent[path[-1]]))
                else:
                    parent[f"{path[-1]}_"] = copy.deepcopy(parent[path[-1]])  # (a duplicate key: "line twice")
            elif operation == "retype":
                parent[path[-1]] = draw(yaml_values)
            elif operation == "scalar":
                target = _at(tree, path)
                if isinstance(target, dict):
                    target[draw(st.text(max_size=12))] = draw(yaml_scalars)
                else:
                    parent[path[-1]] = draw(yaml_scalars)
            else:
                parent[path[-1]] = draw(expressions)
        elif operation == "rename" and steps:
            step = draw(st.sampled_from(steps))
            others = [s.get("id") for s in steps if s is not step and isinstance(s.get("id"), str)]
            step["id"] = draw(st.one_of(step_ids, st.sampled_from(others))) if others else draw(step_ids)
        elif operation == "needs" and steps:
            step = draw(st.sampled_from(steps))
            step["needs"] = draw(st.one_of(step_ids, st.lists(step_ids, max_size=3), yaml_values))
        elif operation == "cycle" and steps:
            ring = draw(st.lists(st.sampled_from(range(len(steps))), min_size=1, max_size=4, unique=True))
            for here, there in zip(ring, ring[1:] + ring[:1]):
                needs = steps[here].get("needs")
                needs = [needs] if isinstance(needs, str) else list(needs) if isinstance(needs, list) else []
                steps[here]["needs"] = needs + [steps[there].get("id")]
    return yaml.safe_dump(tree, sort_keys=False, allow_unicode=draw(st.booleans())).encode("utf-8", "surrogatepass")


@st.composite
def text_mutation(draw: st.DrawFn, text: str) -> bytes:
    """1-4 edits of a runbook file's text (or bytes)."""
    lines = text.splitlines(keepends=True)
    data = text.encode()
    for _ in range(draw(st.integers(1, 4))):
        operation = draw(st.sampled_from(["insert", "delete", "replace", "fragment", "fragment", "line twice",
                                          "swap lines", "indent", "bytes", "alias bomb"]))
        if operation in ("line twice", "swap lines", "indent") and lines:
            at = draw(st.integers(0, len(lines) - 1))
            if operation == "line twice":
                lines.insert(at, lines[at])
            elif operation == "swap lines":
                other = draw(st.integers(0, len(lines) - 1))
                lines[at], lines[other] = lines[other], lines[at]
            else:
                shift = draw(st.sampled_from([" ", "  ", "\t", ""]))
                lines[at] = shift + lines[at].lstrip(" ") if draw(st.booleans()) else lines[at].lstrip(" ")
            data = "".join(lines).encode("utf-8", "surrogatepass")
            continue
        at = draw(st.integers(0, len(data)))
        if operation == "insert":
            data = data[:at] + draw(st.text(max_size=20)).encode("utf-8", "surrogatepass") + data[at:]
        elif operation == "delete":
            data = data[:at] + data[at + draw(st.integers(1, 40)):]
        elif operation == "replace":
            data = data[:at] + draw(st.text(max_size=10)).encode("utf-8", "surrogatepass") + data[at + draw(st.integers(1, 10)):]
        elif operation == "fragment":
            data = data[:at] + draw(yaml_fragments).encode() + data[at:]
        elif operation == "bytes":
            data = data[:at] + draw(st.binary(min_size=1, max_size=6)) + data[at:]
        else:
            data = data + b"\n" + alias_bomb().encode()
        lines = data.decode("utf-8", "replace").splitlines(keepends=True)
    return data


@st.composite
def mutated_runbooks(draw: st.DrawFn) -> tuple[str, bytes]:
    """(file name, mutated content) of one of the shipped runbooks."""
    path = draw(st.sampled_from(SHIPPED))
    text = path.read_text()
    if draw(st.booleans()):
        return path.name, draw(structural_mutation(yaml.safe_load(text)))
    return path.name, draw(text_mutation(text))


def validated_outcome(root: Path, name: str, content: bytes, siblings: Mapping[str, bytes] | None = None) -> Outcome:
    """Validate `content` written to `root/name` as `pitstop runbooks validate` does: alone in `root`, or beside
    `siblings` (the runbooks it runs as children)."""
    for old in root.iterdir():
        old.unlink()
    for sibling, text in (siblings or {}).items():
        (root / sibling).write_bytes(text)
    path = root / name
    path.write_bytes(content)

    def validate() -> tuple[bool, list[Any]]:
        catalog, problems = validate_catalog(root, reach=DEFAULT_REACH)
        if not catalog and not problems:  # the directory scan did not take it for a runbook: validate it alone
            runbook, problems = parse_runbook_file(path, reach=DEFAULT_REACH)
            return runbook is not None, problems
        return bool(catalog), problems

    try:
        passed, problems = within(HANG_SECONDS, validate)
    except Hang as exc:
        return Outcome("hang", str(exc))
    except Exception as exc:  # noqa: BLE001 - judged
        return escaped(exc)
    strangers = [str(p) for p in problems if p.file != str(path)]
    if strangers:
        return Outcome("misattributed", "; ".join(strangers)[:2000])
    if problems:
        return Outcome("refused", str(problems[0])[:300])
    if not passed:
        return Outcome("misattributed", "no runbook and no problem")
    return Outcome("ok")
