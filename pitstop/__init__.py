"""pitstop: durable runbooks for Kubernetes fleets, executed by Temporal.

This package holds what workflows, activities and entry points share: configuration (`config`),
models that cross process boundaries (`models`), and pure decision code. It performs no I/O at import.
"""

__version__ = "0.1.0"
