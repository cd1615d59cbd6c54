"""Load YAML keeping line numbers: plain data plus a map from each value's path to its 1-based line.

Paths are tuples of keys and list indexes, e.g. `("steps", 2, "with", "replicas")`. Parsing goes through the
bounded loader (pitstop/bounded_yaml.py): alias bombs, absurd nesting and oversized text are refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from pitstop import bounded_yaml

Path = tuple[Any, ...]


@dataclass
class SourceDoc:
    data: Any
    lines: dict[Path, int] = field(default_factory=dict)

    def line(self, path: Path) -> int:
        """Line of the nearest enclosing value that has one (1 when nothing is known)."""
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), 1)


class YamlSyntaxError(ValueError):
    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.line = line


def load(text: str) -> SourceDoc:
    """Within the bounds of pitstop/bounded_yaml.py (size, nodes after alias expansion, depth)."""
    try:
        node = bounded_yaml.compose(text)
    except bounded_yaml.YamlRefused as exc:
        raise YamlSyntaxError(exc.reason, exc.line) from exc
    doc = SourceDoc(data=None)
    if node is None:
        return doc
    doc.data = _build(node, (), doc.lines)
    return doc


MERGE_TAG = "tag:yaml.org,2002:merge"


def _build(node: yaml.Node, path: Path, lines: dict[Path, int]) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in _merged_pairs(node):
            key = _scalar(key_node)
            try:
                hash(key)
            except TypeError:
                raise YamlSyntaxError("not valid YAML: a mapping key must be a plain value, not a mapping or a "
                                      "list", key_node.start_mark.line + 1) from None
            result[key] = _build(value_node, path + (key,), lines)
            lines[path + (key,)] = key_node.start_mark.line + 1  # a key's line, not its value's
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, path + (i,), lines) for i, item in enumerate(node.value)]
    return _scalar(node)


def _merged_pairs(node: yaml.MappingNode) -> list[tuple[yaml.Node, yaml.Node]]:
    """The mapping's (key, value) nodes with merge keys (`<<: *base`) expanded as `yaml.safe_load` does:
    merged pairs first (of several merged mappings, the first wins), the mapping's own pairs override them."""
    merged: list[tuple[yaml.Node, yaml.Node]] = []
    own: list[tuple[yaml.Node, yaml.Node]] = []
    for key_node, value_node in node.value:
        if key_node.tag != MERGE_TAG:
            own.append((key_node, value_node))
            continue
        sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
        if not all(isinstance(source, yaml.MappingNode) for source in sources):
            raise YamlSyntaxError("not valid YAML: a merge key (<<) needs a mapping or a list of mappings",
                                  key_node.start_mark.line + 1)
        for source in reversed(sources):
            merged += _merged_pairs(source)
    return merged + own


def _scalar(node: yaml.Node) -> Any:
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    except (yaml.YAMLError, ValueError) as exc:  # an unknown tag, `!!int abc`, an unhashable key inside a key
        problem = getattr(exc, "problem", None) or str(exc)
        raise YamlSyntaxError(f"not valid YAML: {problem}", node.start_mark.line + 1) from None
    finally:
        loader.dispose()
