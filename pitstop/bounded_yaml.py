"""The one YAML loader for user files (runbooks, the remediation catalog, the config file, fleet specs):
PyYAML's safe loader with bounds, so hostile or broken input is refused quickly with a clear message.

Bounds (documented in docs/limits.md):
- `MAX_YAML_BYTES`: a larger file is refused before it is read;
- `MAX_YAML_NODES`: scalars, sequences and mappings counted as if every alias were expanded, so an alias
  bomb (a few hundred bytes naming anchors that name anchors, "billion laughs") is refused while it is
  being composed, long before anything walks its millions of expanded nodes;
- `MAX_YAML_DEPTH`: nesting, also through aliases (and far below Python's recursion limit);
- an alias inside its own anchor (a recursive structure) is refused;
- a file that is not UTF-8 is refused (`read_text`, `load_file`).

`compose` returns the node tree (line numbers: pitstop/runbook/yaml_source.py builds on it), `load_text`
and `load_file` plain data. Refusals raise `YamlRefused` (a ValueError) naming the source and the line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

MAX_YAML_BYTES = 1_048_576  # 1 MiB: the largest shipped runbook or catalog is a few KiB
MAX_YAML_NODES = 100_000  # after alias expansion
MAX_YAML_DEPTH = 64  # nested sequences/mappings; a runbook needs about 8


class YamlRefused(ValueError):
    """YAML refused: too large, too deep, an alias bomb, or not valid YAML. `str()` names source and line."""

    def __init__(self, source: str, reason: str, line: int = 1) -> None:
        super().__init__(f"{source}:{line}: {reason}")
        self.source = source
        self.reason = reason
        self.line = line


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader whose composer measures every node: expanded size and height, nesting on the way down."""

    def __init__(self, text: str, *, source: str) -> None:
        super().__init__(text)
        self.source = source
        self._depth = 0
        self._measured: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded nodes, height)

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            anchored = self.anchors.get(event.anchor)
            if anchored is not None and id(anchored) not in self._measured:
                raise self._refuse(event.start_mark, f"alias *{event.anchor} is used inside its own anchor "
                                                     "(recursive YAML is not supported)")
        elif self._depth >= MAX_YAML_DEPTH:
            raise self._refuse(event.start_mark, f"nested more than {MAX_YAML_DEPTH} levels deep")
        self._depth += 1
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if node is None:  # pragma: no cover - PyYAML returns a node for every event it composes
            raise self._refuse(None, "empty node")
        if id(node) not in self._measured:  # new; an alias returns its (measured) anchor's node
            self._measure(node)
        return node

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        """A value a tag's constructor cannot make (`!!int abc`, `!!timestamp 2026-13-45`) is a YAML error at
        its line, not a bare ValueError."""
        try:
            return super().construct_object(node, deep=deep)
        except ValueError as exc:
            raise yaml.constructor.ConstructorError(None, None, f"cannot read {node.tag} value: {exc}",
                                                    node.start_mark) from None

    def _measure(self, node: yaml.Node) -> None:
        if isinstance(node, yaml.MappingNode):
            children = [child for pair in node.value for child in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        else:
            children = []
        measures = [self._measured[id(child)] for child in children]
        size = 1 + sum(m[0] for m in measures)
        height = 1 + max((m[1] for m in measures), default=0)
        if size > MAX_YAML_NODES:
            raise self._refuse(node.start_mark, f"more than {MAX_YAML_NODES} YAML nodes once aliases are expanded "
                                                "(an alias bomb?)")
        if height > MAX_YAML_DEPTH:
            raise self._refuse(node.start_mark, f"nested more than {MAX_YAML_DEPTH} levels deep (through aliases)")
        self._measured[id(node)] = (size, height)

    def _refuse(self, mark: Any, reason: str) -> YamlRefused:
        return YamlRefused(self.source, reason, (mark.line + 1) if mark else 1)


def _check_size(size: int, source: str) -> None:
    if size > MAX_YAML_BYTES:
        raise YamlRefused(source, f"{size} bytes is more than the limit of {MAX_YAML_BYTES} bytes for a YAML file")


def _run(text: str, source: str, construct: bool) -> Any:
    _check_size(len(text.encode("utf-8", "surrogatepass")), source)
    try:
        loader = _BoundedLoader(text, source=source)  # checks every character first
    except yaml.reader.ReaderError as exc:
        raise YamlRefused(source, f"not valid YAML: character #x{exc.character:04x} at offset {exc.position} "
                                  f"is not allowed ({exc.reason})", text.count("\n", 0, exc.position) + 1) from None
    try:
        node = loader.get_single_node()
        if not construct or node is None:
            return node
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise YamlRefused(source, f"not valid YAML: {problem}", (mark.line + 1) if mark else 1) from exc
    finally:
        loader.dispose()


def compose(text: str, *, source: str = "<yaml>") -> yaml.Node | None:
    """The document's node tree (None for an empty document), within the bounds."""
    node: yaml.Node | None = _run(text, source, construct=False)
    return node


def load_text(text: str, *, source: str = "<yaml>") -> Any:
    """Plain data (like `yaml.safe_load`), within the bounds."""
    return _run(text, source, construct=True)


def read_text(path: Path) -> str:
    """A YAML file's text; refused unread when it is larger than `MAX_YAML_BYTES`, refused when not UTF-8."""
    _check_size(path.stat().st_size, str(path))
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise YamlRefused(str(path), f"not UTF-8 text: invalid byte 0x{data[exc.start]:02x} at offset {exc.start}",
                          data.count(b"\n", 0, exc.start) + 1) from None


def load_file(path: Path) -> Any:
    """Plain data of a YAML file (like `yaml.safe_load(path.read_text())`), within the bounds."""
    return load_text(read_text(path), source=str(path))
