"""What went wrong, in words: the text of a Temporal failure, for timelines, release events and `pitstop history`.

One helper for both shapes a failure comes in: the exceptions workflow code catches (`ActivityError` whose
cause is the activity's `ApplicationError`, ...) and the `Failure` messages of a recorded history (what
`workers/run_history.py` reads). Pure and duck-typed (this package does not import Temporal): a failure has a
`message` and a chain of causes (`__cause__` for exceptions, the `cause` field for history messages).
"""

from __future__ import annotations

from typing import Any

FAILURE_LINE_LIMIT = 300  # one timeline line: long enough for a Kubernetes API error, short enough to scan
MAX_CAUSES = 32  # links followed along a chain of causes: far more than Temporal nests; guards a cyclic chain

# Failures that only say where something failed; the text worth reading is their cause's.
_WRAPPER_EXCEPTIONS = frozenset({"ActivityError", "ChildWorkflowError"})
_WRAPPER_FIELDS = ("activity_failure_info", "child_workflow_execution_failure_info")


def failure_text(failure: Any) -> str:
    """The messages along `failure`'s chain of causes, outermost first, joined by ": ": wrappers left out, and a
    message already quoted by an outer one left out too (`ApplicationError(str(exc)) from exc` reads once).

    `ActivityError("Activity task failed")` caused by `ApplicationError("pods are forbidden")` reads
    "pods are forbidden". An exception without any message reads as its type's name; an empty history
    `Failure` (an unset field) reads as ""."""
    kept: list[str] = []
    for link in _chain(failure):
        message = "" if _is_wrapper(link) else _message(link)
        if message and not any(message in outer for outer in kept):
            kept.append(message)
    if kept:
        return ": ".join(kept)
    return type(failure).__name__ if isinstance(failure, BaseException) else ""


def failure_line(failure: Any, *, limit: int = FAILURE_LINE_LIMIT) -> str:
    """`failure_text`'s first line, cut at `limit` characters (a timeline entry, a one-line summary)."""
    return failure_text(failure).splitlines()[0][:limit]


def _chain(failure: Any) -> list[Any]:
    links: list[Any] = []
    current = failure
    while current is not None and len(links) < MAX_CAUSES:
        links.append(current)
        current = _cause(current)
    return links


def _cause(failure: Any) -> Any:
    if isinstance(failure, BaseException):
        return failure.__cause__
    has_field = getattr(failure, "HasField", None)
    if has_field is not None:  # a protobuf message: an unset `cause` still reads as an empty Failure
        return failure.cause if has_field("cause") else None
    return getattr(failure, "cause", None)


def _is_wrapper(failure: Any) -> bool:
    if isinstance(failure, BaseException):
        return type(failure).__name__ in _WRAPPER_EXCEPTIONS and failure.__cause__ is not None
    has_field = getattr(failure, "HasField", None)
    return has_field is not None and any(has_field(f) for f in _WRAPPER_FIELDS) and _cause(failure) is not None


def _message(failure: Any) -> str:
    message = getattr(failure, "message", None)
    if isinstance(message, str) and message:
        return message
    return str(failure) if isinstance(failure, BaseException) else ""
