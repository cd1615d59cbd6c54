"""pitstop: durable runbooks for Kubernetes fleets, executed by Temporal.

This package holds what workflows, activities and entry points share: configuration (`config`),
models that cross process boundaries (`models`), and pure decision code. It performs no I/O at import.

The owner's top-level folders are installed under pitstop's name, so that pitstop never puts packages called
`workflows`, `activities`, `workers`, `sandbox` or `chaos` into a user's environment: `pitstop/workflows`,
`pitstop/activities`, `pitstop/workers`, `pitstop/sandbox` and `pitstop/chaos_toolkit` are symbolic links to
those folders (the layout on disk stays as the owner fixed it; the wheel holds real files under `pitstop/`).
Import them as `pitstop.workflows`, ... — never by their top-level names (tests/unit/test_installed_names.py).
"""

__version__ = "0.1.0"
