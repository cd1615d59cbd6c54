"""How an API client lets pitstop observe its requests (metrics, trace spans) without knowing either.

`KubeJson` (activities/kube_api.py) and `PrometheusProvider` (activities/metrics.py) wrap each request in
`observer(call)`: a context manager entered before the request and left after it, with `call.status` set to the
answer's HTTP status (0 when no answer came). The observers are built in `workers/` (`workers/metrics.py`,
`workers/tracing.py`) and handed to the clients by `workers/clients.py`; without one a client does no extra work.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass

from pitstop.api_backoff import UNREACHABLE_STATUS


@dataclass
class ApiCall:
    """One request as an observer sees it; `status` is set once the answer's status line arrived."""

    system: str  # "kubernetes", "prometheus"
    method: str
    path: str
    status: int = UNREACHABLE_STATUS


CallObserver = Callable[[ApiCall], AbstractContextManager[object]]


def chained(*observers: CallObserver | None) -> CallObserver | None:
    """One observer entering each given one in turn (None when none is given)."""
    present = [o for o in observers if o is not None]
    if len(present) <= 1:
        return present[0] if present else None

    @contextmanager
    def observe(call: ApiCall) -> Iterator[ApiCall]:
        with ExitStack() as stack:
            for observer in present:
                stack.enter_context(observer(call))
            yield call

    return observe
