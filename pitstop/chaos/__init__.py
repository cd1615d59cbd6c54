"""Chaos experiments: pure pieces shared by the chaos workflow, its activities and the CLI.

- `model`: the request/outcome models, the experiment summary, and the checks pitstop adds before anything runs
  (provider modules and process providers against the worker's allowlists, secrets only as references);
- `phases`: Chaos Toolkit's status semantics and rollback strategies as pure decisions;
- `journal`: the journal in the shape `chaos run --journal-path` writes, and its one-line summary;
- `score`: the resilience score (Krkn: critical 3, warning 1, passed weight / total weight);
- `blast`: the blast-radius decisions (share of a service's pods, never two services on one call path).

Validation of the experiment itself is chaoslib's (`ensure_experiment_is_valid`, run by `chaos/runner.py`).
"""
