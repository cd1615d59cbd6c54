"""`pitstop.failures`: the one text of a failure, from the exceptions workflow code catches and from the `Failure`
messages of a recorded history (built here with Temporal's own classes)."""

from __future__ import annotations

from temporalio.api.failure.v1 import ActivityFailureInfo, ApplicationFailureInfo, Failure
from temporalio.exceptions import ActivityError, ApplicationError, RetryState

from pitstop.failures import FAILURE_LINE_LIMIT, failure_line, failure_text


def _activity_error(cause: BaseException) -> ActivityError:
    wrapper = ActivityError("Activity task failed", scheduled_event_id=5, started_event_id=6, identity="worker",
                            activity_type="incident.plan", activity_id="1", retry_state=RetryState.NON_RETRYABLE_FAILURE)
    wrapper.__cause__ = cause
    return wrapper


def test_an_activity_error_reads_as_its_cause() -> None:
    assert failure_text(_activity_error(ApplicationError("pods are forbidden"))) == "pods are forbidden"


def test_a_message_quoted_by_the_outer_one_is_not_repeated() -> None:
    inner = ApplicationError("rules.yaml: line 3: unknown key 'foo'")
    outer = ApplicationError(str(inner), type="InvalidCatalog")
    outer.__cause__ = inner
    assert failure_text(_activity_error(outer)) == "rules.yaml: line 3: unknown key 'foo'"


def test_different_messages_along_the_chain_are_joined() -> None:
    inner = ApplicationError("connection refused")
    outer = ApplicationError("Prometheus unreachable")
    outer.__cause__ = inner
    assert failure_text(outer) == "Prometheus unreachable: connection refused"


def test_a_history_failure_reads_like_the_exception() -> None:
    app = Failure(message="step scale failed: forbidden", application_failure_info=ApplicationFailureInfo(type="StepFailed"))
    wrapper = Failure(message="Activity task failed", activity_failure_info=ActivityFailureInfo(activity_id="1"),
                      cause=Failure(message="forbidden", application_failure_info=ApplicationFailureInfo()))
    app.cause.CopyFrom(wrapper)
    assert failure_text(app) == "step scale failed: forbidden"
    assert failure_text(Failure(message="boom")) == "boom"


def test_a_failure_line_is_one_bounded_line_and_never_empty() -> None:
    long = ApplicationError("x" * 1000 + "\nsecond line")
    assert failure_line(_activity_error(long)) == "x" * FAILURE_LINE_LIMIT
    assert failure_text(_activity_error(ApplicationError(""))) == "ActivityError"  # the outer type, as before


def test_an_unset_history_failure_reads_as_nothing() -> None:
    assert failure_text(Failure()) == ""
