"""The safe expression language of runbooks: `${{ inputs.replicas }}`, `${{ steps.check.outputs.ok }}`.

A tiny tokenizer and recursive-descent parser, evaluated over plain data. No `eval`, no attribute access on
Python objects, no function calls. Grammar:

    expr    := or
    or      := and (("or" | "||") and)*
    and     := not (("and" | "&&") not)*
    not     := ("not" | "!") not | compare
    compare := primary (("==" | "!=" | "<" | "<=" | ">" | ">=" | "in" | "not in") primary)?
    primary := literal | path | "(" expr ")" | "[" (expr ("," expr)*)? "]"
    path    := name ("." name | "[" integer "]")*
    literal := number | 'string' | "string" | true | false | null

Roots: `inputs.<name>`, `steps.<id>.outputs.<field>`, `steps.<id>.status`, `item` (inside `for_each`),
`run.id`, `run.dry_run`. A whole-string expression keeps its type (`"${{ inputs.replicas }}"` is an int);
expressions embedded in text are interpolated as strings. Bounds (docs/limits.md): at most
`MAX_EXPRESSION_TOKENS` tokens and `MAX_EXPRESSION_DEPTH` nested brackets/`not`s, so parsing and evaluation
never approach Python's recursion limit.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Union

ROOTS = ("inputs", "steps", "item", "run")
MAX_EXPRESSION_TOKENS = 256  # a runbook's expressions have a few dozen at most
MAX_EXPRESSION_DEPTH = 32  # nested "(", "[" and "not"

_EXPR = re.compile(r"\$\{\{(.*?)\}\}", re.DOTALL)
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<number>-?\d+(?:\.\d+)?)
      | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
      | (?P<op>==|!=|<=|>=|&&|\|\||[<>!()\[\],.])
      | (?P<name>[A-Za-z_][A-Za-z0-9_-]*)
    )""",
    re.VERBOSE,
)
_COMPARE = ("==", "!=", "<", "<=", ">", ">=", "in", "not in")


class ExpressionError(ValueError):
    """An expression that cannot be parsed or evaluated; the message says where."""


PathSegment = Union[str, int]


@dataclass(frozen=True)
class Literal:
    value: Any


@dataclass(frozen=True)
class Ref:
    path: tuple[PathSegment, ...]

    def dotted(self) -> str:
        return "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else p) for i, p in enumerate(self.path))


@dataclass(frozen=True)
class ListExpr:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    operand: Node


@dataclass(frozen=True)
class BinOp:
    op: str  # and, or, ==, !=, <, <=, >, >=, in, not in
    left: Node
    right: Node


Node = Union[Literal, Ref, ListExpr, Not, BinOp]


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if not match:
            raise ExpressionError(f"unexpected character {text[pos:].strip()[0]!r} in expression {text.strip()!r}")
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        pos = match.end()
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text.strip()
        self.tokens = _tokenize(text)
        self.pos = 0
        self.depth = 0
        if len(self.tokens) > MAX_EXPRESSION_TOKENS:
            raise self.fail(f"{len(self.tokens)} tokens is more than the limit of {MAX_EXPRESSION_TOKENS}")

    def fail(self, what: str) -> ExpressionError:
        return ExpressionError(f"{what} in expression {self.text!r}")

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise self.fail("unexpected end" if value is None else f"expected {value!r} at the end")
        if value is not None and token[1] != value:
            raise self.fail(f"expected {value!r}, found {token[1]!r}")
        self.pos += 1
        return token

    def at(self, *values: str) -> bool:
        token = self.peek()
        return token is not None and token[1] in values and token[0] in ("op", "name")

    def parse(self) -> Node:
        if not self.tokens:
            raise ExpressionError("empty expression")
        node = self.parse_or()
        if self.peek() is not None:
            raise self.fail(f"unexpected {self.peek()[1]!r}")  # type: ignore[index]
        return node

    def parse_or(self) -> Node:
        node = self.parse_and()
        while self.at("or", "||"):
            self.take()
            node = BinOp("or", node, self.parse_and())
        return node

    def parse_and(self) -> Node:
        node = self.parse_not()
        while self.at("and", "&&"):
            self.take()
            node = BinOp("and", node, self.parse_not())
        return node

    def nested(self) -> None:
        self.depth += 1
        if self.depth > MAX_EXPRESSION_DEPTH:
            raise self.fail(f"nested more than {MAX_EXPRESSION_DEPTH} levels deep")

    def parse_not(self) -> Node:
        if self.at("not", "!"):
            self.take()
            self.nested()
            node = Not(self.parse_not())
            self.depth -= 1
            return node
        return self.parse_compare()

    def parse_compare(self) -> Node:
        left = self.parse_primary()
        if self.at("==", "!=", "<", "<=", ">", ">=", "in"):
            op = self.take()[1]
            return BinOp(op, left, self.parse_primary())
        if self.at("not") and self.pos + 1 < len(self.tokens) and self.tokens[self.pos + 1][1] == "in":
            self.pos += 2
            return BinOp("not in", left, self.parse_primary())
        return left

    def parse_primary(self) -> Node:
        kind, value = self.take()
        if kind == "number":
            return Literal(float(value) if "." in value else int(value))
        if kind == "string":
            return Literal(re.sub(r"\\(.)", r"\1", value[1:-1]))
        if value in ("(", "["):
            self.nested()
            node = self.parse_bracketed(value)
            self.depth -= 1
            return node
        if kind == "name":
            constants = {"true": True, "false": False, "null": None}
            if value in constants:
                return Literal(constants[value])
            return self.parse_path(value)
        raise self.fail(f"unexpected {value!r}")

    def parse_bracketed(self, opening: str) -> Node:
        """`( expr )` or `[ expr, ... ]`, the opening bracket taken."""
        if opening == "(":
            node = self.parse_or()
            self.take(")")
            return node
        items: list[Node] = []
        while not self.at("]"):
            items.append(self.parse_or())
            if not self.at("]"):
                self.take(",")
        self.take("]")
        return ListExpr(tuple(items))

    def parse_path(self, root: str) -> Ref:
        if root not in ROOTS:
            raise self.fail(f"unknown name {root!r} (use {', '.join(ROOTS)})")
        path: list[PathSegment] = [root]
        while self.at(".", "["):
            if self.take()[1] == ".":
                kind, name = self.take()
                if kind != "name":
                    raise self.fail(f"expected a name after '.', found {name!r}")
                path.append(name)
            else:
                kind, index = self.take()
                if kind == "number" and "." not in index:
                    path.append(int(index))
                elif kind == "string":
                    path.append(index[1:-1])
                else:
                    raise self.fail(f"expected an index, found {index!r}")
                self.take("]")
        return Ref(tuple(path))


def parse(text: str) -> Node:
    """Parse the inside of `${{ ... }}` (or a bare condition)."""
    return _Parser(text).parse()


def find(text: str) -> list[str]:
    """The expressions (inner text) embedded in a string."""
    return [m.group(1) for m in _EXPR.finditer(text)]


def whole(text: str) -> str | None:
    """The inner expression when the whole string is exactly one `${{ ... }}`.

    `"${{ a }} and ${{ b }}"` is two expressions in a text, not one whose inner text is `a }} and ${{ b`
    (a full match of the pattern alone would stretch its lazy group across both).
    """
    stripped = text.strip()
    matches = list(_EXPR.finditer(stripped))
    if len(matches) == 1 and matches[0].span() == (0, len(stripped)):
        return matches[0].group(1)
    return None


def refs(node: Node) -> list[Ref]:
    if isinstance(node, Ref):
        return [node]
    if isinstance(node, ListExpr):
        return [r for item in node.items for r in refs(item)]
    if isinstance(node, Not):
        return refs(node.operand)
    if isinstance(node, BinOp):
        return refs(node.left) + refs(node.right)
    return []


def strings_in(value: Any) -> list[str]:
    """Every expression text inside a nested value (dicts, lists, strings)."""
    if isinstance(value, str):
        return find(value)
    if isinstance(value, dict):
        return [e for v in value.values() for e in strings_in(v)]
    if isinstance(value, list):
        return [e for v in value for e in strings_in(v)]
    return []


def lookup(path: tuple[PathSegment, ...], context: dict[str, Any]) -> Any:
    """Follow a path through plain data; a missing key or index is `null`."""
    current: Any = context
    for segment in path:
        if isinstance(current, dict):
            current = current.get(segment) if isinstance(segment, str) else None
        elif isinstance(current, list) and isinstance(segment, int):
            current = current[segment] if -len(current) <= segment < len(current) else None
        elif isinstance(current, list) and isinstance(segment, str):
            current = [lookup((segment,), c) for c in current]  # field over a fan-out's items
        else:
            return None
    return current


def evaluate(node: Node, context: dict[str, Any]) -> Any:
    if isinstance(node, Literal):
        return node.value
    if isinstance(node, Ref):
        return lookup(node.path, context)
    if isinstance(node, ListExpr):
        return [evaluate(i, context) for i in node.items]
    if isinstance(node, Not):
        return not evaluate(node.operand, context)
    if node.op == "and":
        return evaluate(node.left, context) and evaluate(node.right, context)
    if node.op == "or":
        return evaluate(node.left, context) or evaluate(node.right, context)
    return _compare(node.op, evaluate(node.left, context), evaluate(node.right, context))


def _compare(op: str, left: Any, right: Any) -> bool:
    try:
        if op == "==":
            return bool(left == right)
        if op == "!=":
            return bool(left != right)
        if op in ("in", "not in"):
            found = left in right if right is not None else False
            return found if op == "in" else not found
        if left is None or right is None:
            return False
        return bool({"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[op])
    except TypeError as exc:
        raise ExpressionError(f"cannot compare {left!r} {op} {right!r}") from exc


def render(value: Any, context: dict[str, Any]) -> Any:
    """Substitute every expression in a nested value; whole-string expressions keep their type."""
    if isinstance(value, str):
        inner = whole(value)
        if inner is not None:
            return evaluate(parse(inner), context)
        return _EXPR.sub(lambda m: _as_text(evaluate(parse(m.group(1)), context)), value)
    if isinstance(value, dict):
        return {k: render(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, context) for v in value]
    return value


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def condition_text(condition: str | bool) -> str:
    """A step's `if:` as expression text: `${{ x }}` and bare `x` are both accepted."""
    if isinstance(condition, bool):
        return "true" if condition else "false"
    inner = whole(condition)
    return inner if inner is not None else condition


def truthy(condition: str | bool | None, context: dict[str, Any]) -> bool:
    if condition is None:
        return True
    return bool(evaluate(parse(condition_text(condition)), context))
