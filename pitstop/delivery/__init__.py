"""Progressive delivery, pure parts: release specs, the analysis/advance state machine, default PromQL,
Istio route computation, candidate Deployment rendering and the error-budget gate.

Everything here is deterministic and free of I/O: the `ProgressiveRelease` / `RegionWaves` workflows
(`workflows/delivery.py`) decide with these functions, and `activities/delivery.py` applies the results.

- `spec.py`: what a release is (`ReleaseSpec`, `AnalysisSpec`, `WavesSpec`) — the input of the workflows.
- `decisions.py`: `next_action(state, verdicts, policy) -> Advance | Hold | Rollback | Promote`.
- `promql.py`: default checks (request success rate, p95 latency per destination version) and templating.
- `routing.py`: VirtualService `http` routes for weights / header match / mirror; DestinationRule subsets.
- `workloads.py`: the candidate Deployment derived from the stable one; the promoted stable template.
- `budget.py`: SLO error budget remaining and the gate decision.
- `models.py`: activity inputs/outputs and the live status the workflows expose to queries.
- `carried.py`: what a release hands to its next run when it continues-as-new (`ReleaseInput.carried`).
- `inputs.py`: `ReleaseInput` (a release spec for one region + the carried state).

Imports flow one way (checked by import-linter): spec <- promql <- models <- decisions <- carried <- inputs.
"""
