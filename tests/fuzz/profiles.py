"""Hypothesis profiles of the fuzzers: `ci` (the default: derandomized, so every CI run tries the same bounded
set of cases) and `bench` (random, many cases; bench/fuzz.py). `PITSTOP_FUZZ_PROFILE` picks one for pytest,
`PITSTOP_FUZZ_EXAMPLES` overrides the number of cases per test."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, Phase, settings

CI_EXAMPLES = 100  # per test; the CI fuzz is a few hundred cases in all

_quiet = list(HealthCheck)  # hostile inputs are large and slow by design
settings.register_profile("ci", max_examples=int(os.environ.get("PITSTOP_FUZZ_EXAMPLES", CI_EXAMPLES)),
                          derandomize=True, database=None, deadline=None, print_blob=True,
                          suppress_health_check=_quiet)
settings.register_profile("bench", max_examples=int(os.environ.get("PITSTOP_FUZZ_EXAMPLES", 10_000)),
                          derandomize=False, database=None, deadline=None, suppress_health_check=_quiet,
                          phases=[Phase.explicit, Phase.generate])  # counted, not shrunk


def load() -> None:
    settings.load_profile(os.environ.get("PITSTOP_FUZZ_PROFILE", "ci"))
