"""Child-process entry that runs ONE phase of a chaos experiment with chaoslib (which needs the main thread).

Usage: python -m pitstop.chaos_toolkit.runner INPUT_JSON OUTPUT_JSONL

INPUT_JSON holds `{"phase": ..., "experiment": {...}, "index": N, "dry_run": bool}` (`pitstop.chaos.model.PhaseInput`
fields). Every finished activity or probe is appended to OUTPUT_JSONL at once (`{"run": {...}}`), so the
parent (`activities/chaos.py`) reports progress while the phase runs and keeps what finished if it is stopped; the
last line is `{"result": {...}}` (`PhaseResult` fields). Phases:
- `validate`: chaoslib's `ensure_experiment_is_valid` (its message as `error`);
- `steady-state`: `run_steady_state_hypothesis`;
- `method`: each method activity through `execute_activity`, in order (background activities run in order too);
- `rollback`: the rollback at `index`, through `execute_activity`.
Configuration and secrets are loaded here, from this process' environment (the parent passes only what the
experiment names and the worker's allowlist permits), never from the parent's input.
"""

from __future__ import annotations

import json
import logging
import platform
import sys
from pathlib import Path
from typing import Any


def _write(out: Path, record: dict[str, Any]) -> None:
    with out.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, default=str) + "\n")
        handle.flush()


def run_phase(phase: str, experiment: dict[str, Any], index: int, dry_run: bool, out: Path) -> dict[str, Any]:
    from chaoslib import __version__
    from chaoslib.activity import execute_activity
    from chaoslib.caching import cache_activities
    from chaoslib.configuration import load_configuration
    from chaoslib.exceptions import ChaosException, InterruptExecution
    from chaoslib.experiment import ensure_experiment_is_valid
    from chaoslib.hypothesis import run_steady_state_hypothesis
    from chaoslib.secret import load_secrets
    from chaoslib.types import Dry

    result: dict[str, Any] = {"phase": phase, "chaoslib_version": __version__, "platform": platform.platform(),
                              "node": platform.node()}
    if phase == "validate":
        try:
            ensure_experiment_is_valid(experiment)
        except ChaosException as exc:
            result["error"] = str(exc)
        result["experiment"] = experiment
        return result
    configuration = load_configuration(experiment.get("configuration", {}))
    secrets = load_secrets(experiment.get("secrets", {}), configuration)
    cache_activities(experiment)
    dry = Dry.ACTIVITIES if dry_run else None
    if phase == "steady-state":
        result["steady_state"] = run_steady_state_hypothesis(experiment, configuration, secrets, dry=dry, event_registry=None)
        return result
    activities = experiment.get("method") or [] if phase == "method" else [(experiment.get("rollbacks") or [])[index]]
    runs: list[dict[str, Any]] = []
    try:
        for activity in activities:
            run = execute_activity(experiment, activity, configuration=configuration, secrets=secrets, dry=dry)
            runs.append(run)
            _write(out, {"run": run})
    except InterruptExecution as exc:
        result.update(interrupted=True, error=str(exc))
    except Exception as exc:  # chaoslib ends such a method `aborted`
        result["error"] = f"{type(exc).__name__}: {exc}"
    result["runs"] = runs
    return result


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    request = json.loads(Path(argv[1]).read_text(encoding="utf-8"))
    out = Path(argv[2])
    result = run_phase(request["phase"], request["experiment"], int(request.get("index", 0)),
                       bool(request.get("dry_run")), out)
    _write(out, {"result": result})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
