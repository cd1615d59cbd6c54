"""Rightsizing, capacity and cost, as pure code (no I/O): usage models (`usage`), recommendation strategies
(`strategies`, `simple` = KRR's, `vpa` = the VPA recommender's; per-team `policy`), node plans (`binpack`),
forecasts (`forecast`), cost and chargeback (`cost`) and the report (`report`, `render`).

`activities.capacity` reads Prometheus and the Kubernetes API and feeds these; `workers.cli_capacity` and the
`capacity.*` steps (`pitstop.steps.capacity`) call them.
"""
