"""What a release carries across continue-as-new: the analysis loop's state and its latest records, and the
`ReleaseInput.carried` model as it crosses Temporal's pydantic data converter."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from temporalio.contrib.pydantic import pydantic_data_converter

from pitstop.analysis import Verdict
from pitstop.delivery.carried import MAX_CARRIED_RECORDS, CarriedRelease, ResumeAt
from pitstop.delivery.decisions import AnalysisPolicy, AnalysisState
from pitstop.delivery.models import DeploymentSnapshot, MeasurementRecord, ReleasePhase, ReleaseSnapshot, ReleaseStatus
from pitstop.delivery.inputs import ReleaseInput
from pitstop.delivery.spec import ReleaseSpec
from pitstop.workflows.delivery_analysis import AnalysisLoop

SPEC = ReleaseSpec.model_validate({"service": "geo", "namespace": "team-geo", "image": "r/geo:v2", "steps": [10, 50, 100]})


def status() -> ReleaseStatus:
    return ReleaseStatus(service="geo", namespace="team-geo", region="eu", strategy="canary", phase=ReleasePhase.PROGRESSING,
                         new_version="v2")


def record(run: int) -> MeasurementRecord:
    return MeasurementRecord(run=run, at="t", region="eu", weight=10, check="c", query="q", value=1.0, threshold=">= 0",
                             verdict=Verdict.PASS, explanation="ok")


def loop_with_records(count: int) -> AnalysisLoop:
    loop = AnalysisLoop(spec=SPEC, region="eu", policy=AnalysisPolicy.of(SPEC), status=status())
    loop.records = [record(i + 1) for i in range(count)]
    loop.total_runs = count
    loop.state = AnalysisState(step_index=1, passed_runs=2, failed_runs=1, total_runs=count, last_progress_at=5.0)
    return loop


def test_carry_keeps_the_latest_records_and_counts_the_dropped_ones() -> None:
    carried = loop_with_records(MAX_CARRIED_RECORDS + 50).carry()
    assert len(carried.records) == MAX_CARRIED_RECORDS and carried.dropped_records == 50
    assert carried.records[0].run == 51 and carried.records[-1].run == MAX_CARRIED_RECORDS + 50

    restored = AnalysisLoop(spec=SPEC, region="eu", policy=AnalysisPolicy.of(SPEC), status=status())
    restored.restore(carried)
    assert restored.state == carried.state and restored.total_runs == MAX_CARRIED_RECORDS + 50
    assert restored.status.measurements_dropped == 50 and restored.status.step_index == 1
    again = restored.carry()
    assert again.dropped_records == 50 and len(again.records) == MAX_CARRIED_RECORDS  # nothing new dropped


def test_carried_release_crosses_the_data_converter() -> None:
    snapshot = ReleaseSnapshot(http=[{"route": [{"destination": {"subset": "stable"}, "weight": 100}]}], subsets=[],
                               stable=DeploymentSnapshot(name="geo", replicas=3, template={"spec": {}}, version="v1"))
    carried = CarriedRelease(resume_at=ResumeAt.WARM_WINDOW, warm_deadline=1234.5, status=status(), snapshot=snapshot,
                             analysis=loop_with_records(3).carry(), finalize=True, lease_id="lease/eu/team-geo/geo",
                             lease_requested=True, earlier_runs=["r1"], earlier_events=99)
    request = ReleaseInput(release=SPEC, region="eu", history_limit=150, carried=carried)
    payload = pydantic_data_converter.payload_converter.to_payloads([request])
    back = pydantic_data_converter.payload_converter.from_payloads(payload, [ReleaseInput])[0]
    assert back == request and back.carried is not None and back.carried.snapshot.http == snapshot.http


def test_history_limit_has_a_floor() -> None:
    with pytest.raises(ValidationError, match="history_limit"):
        ReleaseInput(release=SPEC, region="eu", history_limit=10)
