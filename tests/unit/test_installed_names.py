"""pitstop installs one top-level package, `pitstop`: the owner's folders are reached through links inside it.

`workflows/`, `activities/`, `workers/`, `sandbox/` and `chaos/` stay at the repository's top level; the links
`pitstop/<name>` make them `pitstop.workflows`, ... A module imported by its top-level name would be a second
copy of the same file under another name (in a source checkout both resolve), so no file may do that.
"""

from __future__ import annotations

import configparser
import os
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINKS = {"workflows": "workflows", "activities": "activities", "workers": "workers", "sandbox": "sandbox",
         "chaos_toolkit": "chaos"}
OLD_IMPORT = re.compile(r"^\s*(?:from|import)\s+(workflows|activities|workers|sandbox|chaos)\b", re.M)
OLD_MAIN = re.compile(r"-m[\"']?,?\s*[\"']?(workflows|activities|workers|sandbox|chaos)\.\w")
SOURCE_DIRS = ["pitstop", "workflows", "activities", "workers", "sandbox", "chaos", "tests", "bench", "scripts"]


def _python_files() -> list[Path]:
    """Every Python file once, by its real path (the links inside pitstop/ are not followed)."""
    files: list[Path] = []
    for folder in SOURCE_DIRS:
        for directory, _subdirs, names in os.walk(ROOT / folder):  # os.walk does not follow links
            files.extend(Path(directory) / n for n in names if n.endswith(".py"))
    return files


def test_the_links_point_at_the_owners_folders() -> None:
    for link, folder in LINKS.items():
        path = ROOT / "pitstop" / link
        assert path.is_symlink(), f"pitstop/{link} should be a link to ../{folder}"
        assert path.resolve() == (ROOT / folder).resolve()


def test_the_wheel_installs_only_pitstop() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"] == ["pitstop"]
    assert project["project"]["scripts"]["pitstop"].startswith("pitstop.workers.")


def test_no_file_uses_a_top_level_name() -> None:
    offenders = []
    for path in _python_files():
        text = path.read_text()
        for pattern in (OLD_IMPORT, OLD_MAIN):
            offenders += [f"{path.relative_to(ROOT)}: {m.group(0).strip()}" for m in pattern.finditer(text)]
    for path in [ROOT / "Makefile", ROOT / "Dockerfile", ROOT / "docker-compose.yml", *ROOT.glob("scripts/*.sh"),
                 *ROOT.glob("deploy/*.yaml"), *ROOT.glob("chaos/experiments/*.json")]:
        offenders += [f"{path.relative_to(ROOT)}: {m.group(0)}" for m in OLD_MAIN.finditer(path.read_text())]
        offenders += [f"{path.relative_to(ROOT)}: {m.group(0)}"
                      for m in re.finditer(r"\"module\": \"(chaos|sandbox)\.[\w.]+\"", path.read_text())]
    assert offenders == [], "import these as pitstop.<name>:\n" + "\n".join(offenders)


def test_the_pure_core_contract_lists_every_core_module() -> None:
    """import-linter cannot say "pitstop except its linked folders", so the contract lists the core's modules."""
    core = {p.stem if p.suffix == ".py" else p.name for p in (ROOT / "pitstop").iterdir()
            if p.name not in LINKS and p.name not in {"__init__.py", "__pycache__"}
            and (p.suffix == ".py" or (p / "__init__.py").exists())}
    config = configparser.ConfigParser()
    config.read(ROOT / ".importlinter")
    listed = {m.removeprefix("pitstop.") for m in config["importlinter:contract:shared-core-is-pure"]
              ["source_modules"].split()}
    assert listed == core, f"missing from the contract: {sorted(core - listed)}; not in pitstop/: {sorted(listed - core)}"
