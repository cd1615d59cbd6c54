"""Validation of runbook files before anything runs: every problem names the file, line, step and field.

`parse_runbook(text, file)` checks one file: YAML syntax, the format, duplicate ids, unknown step types and
arguments, argument types (literal values and typed references), references to unknown inputs, steps and
outputs, `needs` on unknown steps and cycles, and what the runbook would reach (`reach`, from the settings of
whoever validates: a worker at `runbook.load`, the CLI before a start): env vars outside `security.env_allowlist`,
literal URLs outside `security.allowed_hosts`, `debug.*` steps where they are disabled.
`validate_catalog(dir)` adds cross-file checks (a `runbook` step naming an unknown runbook or missing its required
inputs). `resolve_inputs` checks a run's inputs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from pitstop import bounded_yaml

from . import dag, expressions
from .model import InputSpec, Runbook, Step
from .reach import AuthorReach
from .registry import load_step_types
from .step_types import ENV_VAR_NAME, OUTBOUND_URL, StepType
from .yaml_source import SourceDoc, YamlSyntaxError, load

_INPUT_JSON_TYPE = {
    "string": "string", "integer": "integer", "number": "number",
    "boolean": "boolean", "list": "array", "object": "object",
}


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    message: str
    step: str | None = None
    field: str | None = None

    def __str__(self) -> str:
        where = [f"step {self.step!r}"] if self.step else []
        where += [f"field {self.field!r}"] if self.field else []
        return f"{self.file}:{self.line}: {', '.join(where) + ': ' if where else ''}{self.message}"


class RunbookInvalid(ValueError):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


class _Checker:
    """Collects problems for one parsed file."""

    def __init__(self, file: str, doc: SourceDoc, reach: AuthorReach) -> None:
        self.file, self.doc, self.reach = file, doc, reach
        self.problems: list[Problem] = []

    def add(self, path: tuple[Any, ...], message: str, step: str | None = None, field: str | None = None) -> None:
        self.problems.append(Problem(self.file, self.doc.line(path), message, step, field))

    def step_id_at(self, path: tuple[Any, ...]) -> str | None:
        if len(path) >= 2 and path[0] == "steps" and isinstance(path[1], int):
            steps = self.doc.data.get("steps") if isinstance(self.doc.data, dict) else None
            if isinstance(steps, list) and path[1] < len(steps) and isinstance(steps[path[1]], dict):
                return str(steps[path[1]].get("id", f"#{path[1] + 1}"))
        return None


def parse_runbook(text: str, file: str = "<runbook>", *, reach: AuthorReach) -> tuple[Runbook | None, list[Problem]]:
    """Parse and validate one runbook file; the runbook is None when there are problems."""
    try:
        doc = load(text)
    except YamlSyntaxError as exc:
        return None, [Problem(file, exc.line, str(exc))]
    check = _Checker(file, doc, reach)
    if not isinstance(doc.data, dict):
        check.add((), "a runbook is a mapping with `name`, `steps` and optionally `inputs`, `target`")
        return None, check.problems
    try:
        runbook = Runbook.model_validate(doc.data)
    except ValidationError as exc:
        for error in exc.errors():
            path = tuple(error["loc"])
            step = check.step_id_at(path)
            field = ".".join(str(p) for p in (path[2:] if step else path))
            check.add(path, error["msg"], step, field or None)
        return None, check.problems
    _check_runbook(check, runbook)
    return (None if check.problems else runbook), check.problems


def _check_runbook(check: _Checker, runbook: Runbook) -> None:
    step_types = load_step_types()
    _check_inputs(check, runbook)
    seen: dict[str, int] = {}
    for index, step in enumerate(runbook.steps):
        if step.id in seen:
            check.add(("steps", index, "id"), f"duplicate step id (first defined as step #{seen[step.id] + 1})", step.id, "id")
        seen.setdefault(step.id, index)
    graph = {s.id: s.needs for s in runbook.steps}
    for index, step in enumerate(runbook.steps):
        for n, need in enumerate(step.needs):
            if need not in seen:
                check.add(("steps", index, "needs", n), f"needs unknown step {need!r}{_known(seen)}", step.id, "needs")
        _check_step(check, runbook, index, step, step_types, graph)
    cycle = dag.find_cycle(graph)
    if cycle:
        check.add(("steps", seen[cycle[0]], "needs"), f"dependency cycle: {' -> '.join(cycle)}", cycle[0], "needs")
    if runbook.target:
        for name in ("service", "namespace", "region", "cluster"):
            _check_refs(check, runbook, ("target", name), getattr(runbook.target, name), None, graph, step_types, False)


def _check_inputs(check: _Checker, runbook: Runbook) -> None:
    for name, spec in runbook.inputs.items():
        if not spec.required and spec.default is not None:
            problem = input_type_problem(spec, spec.default)
            if problem:
                check.add(("inputs", name, "default"), problem, None, f"inputs.{name}.default")


def _check_step(
    check: _Checker, runbook: Runbook, index: int, step: Step,
    step_types: dict[str, type[StepType]], graph: dict[str, list[str]],
) -> None:
    base = ("steps", index)
    step_type = step_types.get(step.uses)
    if step_type is None:
        check.add(base + ("uses",), f"unknown step type {step.uses!r}{_known(step_types)}", step.id, "uses")
    else:
        _check_reach(check, base, step, step_type, step.with_)
        _check_args(check, runbook, base + ("with",), step, step_type, step.with_, graph, step_types, self_ok=False)
    fan_out = step.for_each is not None
    if step.if_ is not None and not isinstance(step.if_, bool):
        _check_expr(check, runbook, base + ("if",), expressions.condition_text(step.if_), step, graph, step_types, fan_out)
    if step.for_each is not None and isinstance(step.for_each.items, str):
        items = step.for_each.items
        inner = expressions.whole(items)
        if inner is None:
            check.add(base + ("for_each", "items"), "items must be a list or one `${{ ... }}` expression", step.id, "for_each.items")
        else:
            _check_expr(check, runbook, base + ("for_each", "items"), inner, step, graph, step_types, False)
    if step.compensate is not None:
        comp_type = step_types.get(step.compensate.uses)
        path = base + ("compensate",)
        if comp_type is None:
            check.add(path + ("uses",), f"unknown step type {step.compensate.uses!r}{_known(step_types)}", step.id, "compensate.uses")
        else:
            _check_reach(check, path, step, comp_type, step.compensate.with_)
            _check_args(check, runbook, path + ("with",), step, comp_type, step.compensate.with_, graph, step_types, self_ok=True)


def _check_reach(check: _Checker, base: tuple[Any, ...], step: Step, step_type: type[StepType], args: dict[str, Any]) -> None:
    """The step type is allowed here, and the env vars and literal URLs its arguments name are within reach."""
    field_prefix = ".".join(str(p) for p in base[2:])
    problem = check.reach.step_type_problem(step_type.name, debug=step_type.debug)
    if problem:
        check.add(base + ("uses",), problem, step.id, ".".join(filter(None, [field_prefix, "uses"])))
    for path, kind, value in _reached(step_type.args_model, args, base + ("with",)):
        field = ".".join(str(p) for p in path[2:])
        if kind == "url":
            problem = None if expressions.find(value) else check.reach.url_problem(value)
        elif expressions.find(value):
            problem = "an environment variable name must be written literally, so that it can be checked"
        else:
            problem = check.reach.env_problem(value)
        if problem:
            check.add(path, problem, step.id, field)


def _reached(model: type[BaseModel], args: Any, path: tuple[Any, ...]) -> Iterable[tuple[tuple[Any, ...], str, str]]:
    """(path, "env" or "url", value) of every string argument marked ENV_VAR_NAME / OUTBOUND_URL, nested models too."""
    if not isinstance(args, dict):
        return
    for name, value in args.items():
        info = model.model_fields.get(name) if isinstance(name, str) else None
        if info is None:
            continue
        kind = _reach_kind(info)
        if kind is not None and isinstance(value, str):
            yield path + (name,), kind, value
        elif kind == "env" and isinstance(value, dict):
            yield from ((path + (name, k), kind, v) for k, v in value.items() if isinstance(v, str))
        nested = _nested_model(info)
        if nested is not None:
            yield from _reached(nested, value, path + (name,))


def _reach_kind(info: FieldInfo) -> str | None:
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    if all(extra.get(k) == v for k, v in ENV_VAR_NAME.items()):
        return "env"
    if all(extra.get(k) == v for k, v in OUTBOUND_URL.items()):
        return "url"
    return None


def _nested_model(info: FieldInfo) -> type[BaseModel] | None:
    """The pydantic model of a field typed `Model` or `Model | None`."""
    candidates = [info.annotation, *getattr(info.annotation, "__args__", ())]
    return next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)


def _check_args(
    check: _Checker, runbook: Runbook, path: tuple[Any, ...], step: Step, step_type: type[StepType],
    args: dict[str, Any], graph: dict[str, list[str]], step_types: dict[str, type[StepType]], self_ok: bool,
) -> None:
    """Unknown/missing arguments and literal types via the args model; typed references via JSON types."""
    field_prefix = ".".join(str(p) for p in path[2:])
    fan_out = step.for_each is not None
    dynamic: set[str] = set()
    for name, value in args.items():
        texts = expressions.strings_in(value)
        if not texts:
            continue
        dynamic.add(name)
        for text in texts:
            _check_expr(check, runbook, path + (name,), text, step, graph, step_types, fan_out, self_ok)
        inner = expressions.whole(value) if isinstance(value, str) else None
        if inner is not None and name in step_type.args_model.model_fields:
            inferred = _infer_type(runbook, inner, step_types)
            allowed = _field_json_types(step_type.args_model, name)
            if inferred and allowed and not _compatible(inferred, allowed):
                check.add(path + (name,), f"type mismatch: {inner.strip()!r} is {inferred}, the argument takes {' or '.join(sorted(allowed))}", step.id, f"{field_prefix}.{name}")
    try:
        step_type.args_model.model_validate({k: (None if k in dynamic else v) for k, v in args.items()})
    except ValidationError as exc:
        for error in exc.errors():
            loc = tuple(error["loc"])
            if loc and loc[0] in dynamic:
                continue
            message = error["msg"]
            if error["type"] == "extra_forbidden":
                message = f"unknown argument {loc[0]!r} for step type {step_type.name!r} (arguments: {', '.join(step_type.args_model.model_fields) or 'none'})"
            elif error["type"] == "missing":
                message = f"missing required argument {loc[0]!r} for step type {step_type.name!r}"
            check.add(path + loc, message, step.id, ".".join([field_prefix, *map(str, loc)]))


def _check_expr(
    check: _Checker, runbook: Runbook, path: tuple[Any, ...], text: str, step: Step | None,
    graph: dict[str, list[str]], step_types: dict[str, type[StepType]], fan_out: bool, self_ok: bool = False,
) -> None:
    step_id = step.id if step else None
    field = ".".join(str(p) for p in (path[2:] if step else path))
    try:
        node = expressions.parse(text)
    except expressions.ExpressionError as exc:
        check.add(path, str(exc), step_id, field)
        return
    visible = dag.ancestors(graph, step.id) | ({step.id} if self_ok else set()) if step else set()
    for ref in expressions.refs(node):
        problem = _ref_problem(runbook, ref, visible, step_types, fan_out, step is not None)
        if problem:
            check.add(path, problem, step_id, field)


def _check_refs(check: _Checker, runbook: Runbook, path: tuple[Any, ...], value: Any, step: Step | None,
                graph: dict[str, list[str]], step_types: dict[str, type[StepType]], fan_out: bool) -> None:
    for text in expressions.strings_in(value):
        _check_expr(check, runbook, path, text, step, graph, step_types, fan_out)


def _ref_problem(runbook: Runbook, ref: expressions.Ref, visible: set[str],
                 step_types: dict[str, type[StepType]], fan_out: bool, in_step: bool) -> str | None:
    root, rest = ref.path[0], ref.path[1:]
    if root == "inputs":
        if not rest:
            return None
        if rest[0] not in runbook.inputs:
            return f"unknown input {rest[0]!r}{_known(runbook.inputs)}"
        return None
    if root == "item":
        return None if fan_out else "`item` is only defined in a step with `for_each`"
    if root == "run":
        return None if len(rest) == 1 and rest[0] in ("id", "dry_run", "runbook") else "`run` has `id`, `runbook` and `dry_run`"
    if not in_step:
        return "only `inputs` may be referenced here"
    if not rest:
        return "reference a step as `steps.<id>.outputs.<field>` or `steps.<id>.status`"
    target = runbook.step(str(rest[0]))
    if target is None:
        return f"reference to unknown step {rest[0]!r}{_known([s.id for s in runbook.steps])}"
    if target.id not in visible:
        return f"step {target.id!r} is referenced but not in `needs` (directly or transitively), so it may not have run yet"
    if len(rest) < 2 or rest[1] not in ("outputs", "status"):
        return f"a step exposes `outputs` and `status`, not {'.'.join(map(str, rest[1:])) or 'itself'!r}"
    step_type = step_types.get(target.uses)
    if rest[1] == "outputs" and len(rest) >= 3 and step_type is not None:
        if rest[2] not in step_type.result_model.model_fields:
            return f"step {target.id!r} ({target.uses}) has no output {rest[2]!r}{_known(step_type.result_model.model_fields)}"
    return None


def _infer_type(runbook: Runbook, text: str, step_types: dict[str, type[StepType]]) -> str | None:
    try:
        node = expressions.parse(text)
    except expressions.ExpressionError:
        return None
    if isinstance(node, expressions.BinOp) and node.op not in ("and", "or") or isinstance(node, expressions.Not):
        return "boolean"
    if not isinstance(node, expressions.Ref):
        return None
    path = node.path
    if path[0] == "inputs" and len(path) == 2 and path[1] in runbook.inputs:
        return _INPUT_JSON_TYPE[runbook.inputs[str(path[1])].type]
    if path[0] == "steps" and len(path) == 4 and path[2] == "outputs":
        target = runbook.step(str(path[1]))
        step_type = step_types.get(target.uses) if target else None
        if step_type and target and target.for_each is None and path[3] in step_type.result_model.model_fields:
            types = _field_json_types(step_type.result_model, str(path[3]))
            return next(iter(types)) if types and len(types) == 1 else None
    return None


def _field_json_types(model: type[BaseModel], name: str) -> set[str] | None:
    """JSON types a model field accepts; None when anything goes."""
    schema = model.model_json_schema()
    prop = schema.get("properties", {}).get(name)
    if prop is None:
        return None
    return _schema_types(prop, schema.get("$defs", {}))


def _schema_types(prop: dict[str, Any], defs: dict[str, Any]) -> set[str] | None:
    if "$ref" in prop:
        return _schema_types(defs.get(prop["$ref"].rsplit("/", 1)[-1], {}), defs)
    if "anyOf" in prop or "oneOf" in prop:
        found: set[str] = set()
        for option in prop.get("anyOf", prop.get("oneOf", [])):
            types = _schema_types(option, defs)
            if types is None:
                return None
            found |= types
        return found
    if "enum" in prop or "const" in prop:
        values = prop.get("enum", [prop.get("const")])
        return {"null" if v is None else _INPUT_JSON_TYPE[python_type_name(v)] for v in values}
    kind = prop.get("type")
    if kind is None:
        return None
    return set(kind) if isinstance(kind, list) else {kind}


def _compatible(inferred: str, allowed: set[str]) -> bool:
    return inferred in allowed or (inferred == "integer" and "number" in allowed)


def python_type_name(value: Any) -> str:
    """The runbook input type of a plain value."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, dict):
        return "object"
    return "string"


def input_type_problem(spec: InputSpec, value: Any) -> str | None:
    actual = python_type_name(value)
    if value is None or actual == spec.type or (spec.type == "number" and actual == "integer"):
        problem = None
    else:
        problem = f"type mismatch: expected {spec.type}, got {actual} {value!r}"
    if problem is None and spec.enum is not None and value not in spec.enum:
        problem = f"{value!r} is not one of {spec.enum}"
    return problem


def resolve_inputs(runbook: Runbook, given: dict[str, Any], file: str = "") -> dict[str, Any]:
    """Defaults applied and types checked; raises RunbookInvalid naming every bad or missing input."""
    problems: list[str] = []
    for name in given:
        if name not in runbook.inputs:
            problems.append(f"unknown input {name!r}{_known(runbook.inputs)}")
    resolved: dict[str, Any] = {}
    for name, spec in runbook.inputs.items():
        if name not in given:
            if spec.required:
                problems.append(f"missing required input {name!r} ({spec.type}{': ' + spec.description if spec.description else ''})")
            resolved[name] = spec.default
            continue
        problem = input_type_problem(spec, given[name])
        if problem:
            problems.append(f"input {name!r}: {problem}")
        resolved[name] = given[name]
    if problems:
        where = file or runbook.name
        raise RunbookInvalid([Problem(where, 1, f"runbook {runbook.name!r}: {p}", None, "inputs") for p in problems])
    return resolved


def refusal_message(runbook: str, invalid: RunbookInvalid) -> str:
    """Why a run was refused before any step: printed by `pitstop run`, and the failure of a run started
    elsewhere (e.g. the Web UI's start form) whose runbook or inputs do not validate."""
    return f"{runbook} is not valid; nothing was started:\n{invalid}"


def _known(names: Iterable[Any]) -> str:
    listed = sorted(str(n) for n in names)
    if not listed:
        return ""
    shown = ", ".join(listed[:12]) + (", ..." if len(listed) > 12 else "")
    return f" (known: {shown})"


# ---------------------------------------------------------------- files and catalogs


def parse_runbook_file(path: Path, *, reach: AuthorReach) -> tuple[Runbook | None, list[Problem]]:
    """`parse_runbook` of a file; a file larger than `bounded_yaml.MAX_YAML_BYTES` is refused unread."""
    try:
        text = bounded_yaml.read_text(path)
    except bounded_yaml.YamlRefused as exc:
        return None, [Problem(str(path), exc.line, exc.reason)]
    return parse_runbook(text, str(path), reach=reach)


def load_runbook_file(path: Path, *, reach: AuthorReach) -> Runbook:
    runbook, problems = parse_runbook_file(path, reach=reach)
    if problems or runbook is None:
        raise RunbookInvalid(problems)
    return runbook


def runbook_files(root: Path) -> list[Path]:
    """YAML files under `root` that are runbooks: a directory scan skips other YAML documents (e.g. the
    remediation catalog), i.e. top-level mappings with neither `name` nor `steps`. A file given directly is
    always validated as a runbook."""
    if root.is_file():
        return [root]
    return sorted(
        p for p in root.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file() and _looks_like_runbook(p)
    )


def _looks_like_runbook(path: Path) -> bool:
    try:
        data = load(bounded_yaml.read_text(path)).data
    except (YamlSyntaxError, bounded_yaml.YamlRefused):
        return True  # report the syntax error
    return not isinstance(data, dict) or "name" in data or "steps" in data


def validate_catalog(root: Path, *, reach: AuthorReach) -> tuple[dict[str, tuple[Path, Runbook]], list[Problem]]:
    """Every runbook file under `root`, plus cross-file checks of `runbook` steps."""
    catalog: dict[str, tuple[Path, Runbook]] = {}
    problems: list[Problem] = []
    for path in runbook_files(root):
        runbook, found = parse_runbook_file(path, reach=reach)
        problems += found
        if runbook is None:
            continue
        if runbook.name in catalog:
            problems.append(Problem(str(path), 1, f"runbook name {runbook.name!r} already used by {catalog[runbook.name][0]}", None, "name"))
            continue
        catalog[runbook.name] = (path, runbook)
    if root.is_dir():
        problems += _check_children(catalog)
    return catalog, problems


def _check_children(catalog: dict[str, tuple[Path, Runbook]]) -> list[Problem]:
    problems: list[Problem] = []
    for path, runbook in catalog.values():
        for step in runbook.steps:
            if step.uses != "runbook":
                continue
            name = step.with_.get("name")
            if not isinstance(name, str) or expressions.find(name):
                continue
            line = _step_line(path, step.id)
            if name not in catalog:
                problems.append(Problem(str(path), line, f"unknown runbook {name!r}{_known(catalog)}", step.id, "with.name"))
                continue
            child = catalog[name][1]
            given = step.with_.get("inputs") or {}
            for input_name, spec in child.inputs.items():
                if spec.required and input_name not in given:
                    problems.append(Problem(str(path), line, f"missing required input {input_name!r} of runbook {name!r}", step.id, "with.inputs"))
            for input_name in given:
                if input_name not in child.inputs:
                    problems.append(Problem(str(path), line, f"unknown input {input_name!r} of runbook {name!r}{_known(child.inputs)}", step.id, "with.inputs"))
    return problems


def _step_line(path: Path, step_id: str) -> int:
    doc = load(bounded_yaml.read_text(path))
    for index, step in enumerate(doc.data.get("steps", [])):
        if isinstance(step, dict) and step.get("id") == step_id:
            return doc.line(("steps", index))
    return 1
