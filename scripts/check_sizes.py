"""Size check: the longest classes in workflows/ and the longest functions in workflows/, activities/, workers/.

Workflow classes should stay within MAX_WORKFLOW_CLASS_LINES (a reader holds the class in their head) and
functions within MAX_FUNCTION_LINES. Prints the longest of each and every one over its limit.
Report-only by default (exit 0); `--strict` exits 1 when something is over a limit.

Usage: python scripts/check_sizes.py [--strict] [--top N]
Lines are counted from a definition's first decorator to its last line, docstrings and comments included.
"""

from __future__ import annotations

import argparse
import ast
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLASS_DIRS = ("workflows",)
FUNCTION_DIRS = ("workflows", "activities", "workers")
MAX_WORKFLOW_CLASS_LINES = 250
MAX_FUNCTION_LINES = 60


@dataclass(frozen=True)
class Definition:
    path: str
    name: str  # qualified: Class.method, outer.<locals>.inner
    line: int
    lines: int

    def __str__(self) -> str:
        return f"{self.lines:5d}  {self.path}:{self.line}  {self.name}"


def _span(node: ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) -> tuple[int, int]:
    first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    return first, (node.end_lineno or node.lineno) - first + 1


def definitions(path: Path) -> tuple[list[Definition], list[Definition]]:
    """(classes, functions) defined in one file, nested ones included."""
    relative = str(path.relative_to(ROOT))
    classes: list[Definition] = []
    functions: list[Definition] = []

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                first, lines = _span(child)
                classes.append(Definition(relative, prefix + child.name, first, lines))
                walk(child, f"{prefix}{child.name}.")
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first, lines = _span(child)
                functions.append(Definition(relative, prefix + child.name, first, lines))
                walk(child, f"{prefix}{child.name}.<locals>.")
            else:
                walk(child, prefix)

    walk(ast.parse(path.read_text(), filename=relative), "")
    return classes, functions


def collect(dirs: tuple[str, ...], kind: int) -> list[Definition]:
    found: list[Definition] = []
    for directory in dirs:
        for path in sorted((ROOT / directory).rglob("*.py")):
            found.extend(definitions(path)[kind])
    return sorted(found, key=lambda d: (-d.lines, d.path, d.line))


def report(title: str, found: list[Definition], limit: int, top: int) -> list[Definition]:
    over = [d for d in found if d.lines > limit]
    print(f"{title} (limit {limit} lines; {len(over)} over):")
    for definition in found[: max(top, len(over))]:
        print(f"  {definition}{'   <-- over' if definition.lines > limit else ''}")
    return over


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--strict", action="store_true", help="exit 1 when a class or function is over its limit")
    parser.add_argument("--top", type=int, default=10, help="how many of the longest to list (default 10)")
    args = parser.parse_args(argv)
    over = report("longest classes in " + ", ".join(CLASS_DIRS), collect(CLASS_DIRS, 0), MAX_WORKFLOW_CLASS_LINES, args.top)
    over += report(
        "longest functions in " + ", ".join(FUNCTION_DIRS), collect(FUNCTION_DIRS, 1), MAX_FUNCTION_LINES, args.top
    )
    if over and args.strict:
        print(f"{len(over)} definitions over their limit", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
