"""Test-wide fixtures: real Temporal (tests/fixtures/temporal.py), the kube sandbox, monitoring."""

import importlib.util

pytest_plugins = [
    name
    for name in ("tests.fixtures.temporal", "tests.fixtures.kube", "tests.fixtures.monitoring", "tests.fixtures.flux")
    if importlib.util.find_spec(name) is not None
]
