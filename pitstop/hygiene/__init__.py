"""Fleet hygiene, pure parts: the nightly read-only checks across every region (runbook `fleet-hygiene`).

- `inventory.py`: `RegionInventory`, the compact facts `kubernetes.inventory` reads from one region's cluster
  (Deployments, PodDisruptionBudgets, VirtualServices, DestinationRules), and their extraction from API JSON.
- `checks.py`: `findings(inventories) -> list[Finding]`: requests/limits, readiness probes, `latest` tags,
  single replicas without a PodDisruptionBudget, PodDisruptionBudgets that block every eviction, images that
  differ between regions, routes to undefined subsets. The module docstring defines each rule.
- `report.py`: `hygiene_report(inventories)`: one report per team, Markdown and JSON (`hygiene.report`).

The step models (`Finding`, `TeamReport`, `HygieneReport`) live with the step type in `pitstop/steps/hygiene.py`.
"""
