"""Chaos Toolkit material for pitstop: the runner, experiments and the extensions they need.

- `runner.py`: runs one phase of an experiment with chaoslib in a child process (docs/chaos.md).
- `chaos/experiments/`: a catalog of Chaos Toolkit experiments (unchanged JSON format) for the sandbox fleet
  (pod kill, dependency latency, HTTP aborts, node NotReady, degraded region); see its README.
- `chaos.istio`: Istio fault-injection actions and probes under chaostoolkit-istio's function names and
  arguments (`chaos.istio.fault.actions.add_delay_fault`, ...), over pitstop's Kubernetes JSON client;
  an experiment written for chaostoolkit-istio runs with `chaosistio` replaced by `chaos.istio`.
- `chaos.prometheus`: `query_value`, a numeric Prometheus probe for hypotheses' range tolerances.
"""
