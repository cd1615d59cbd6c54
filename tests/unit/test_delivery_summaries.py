"""The one-line summaries a release step shows in `pitstop run` / `pitstop status` and the audit timeline."""

from __future__ import annotations

from pitstop.delivery.models import ReleasePhase, WavesPhase, ReleaseOutcome, WavesOutcome, release_summary, waves_summary


def outcome(region: str, phase: ReleasePhase, **values: object) -> ReleaseOutcome:
    return ReleaseOutcome.model_validate({"region": region, "phase": phase, "promoted": phase is ReleasePhase.SUCCEEDED,
                                          "rolled_back": phase is ReleasePhase.ROLLED_BACK, "new_version": "2.0.0", **values})


def test_release_summaries() -> None:
    assert release_summary(outcome("eu-central", ReleasePhase.SUCCEEDED, analysis_runs=7)) == \
        "promoted 2.0.0 in eu-central after 7 analysis runs (0 failed)"
    assert release_summary(outcome("eu-central", ReleasePhase.ROLLED_BACK, analysis_runs=3, failed_runs=2,
                                   reason="failure threshold reached")) == \
        "rolled back 2.0.0 in eu-central after 3 analysis runs (2 failed): failure threshold reached"
    assert release_summary(outcome("us-east", ReleasePhase.FAILED, reason="error budget exhausted")) == \
        "release 2.0.0 in us-east failed: error budget exhausted"


def test_waves_summaries() -> None:
    regions = {"eu-central": outcome("eu-central", ReleasePhase.SUCCEEDED, analysis_runs=4),
               "us-east": outcome("us-east", ReleasePhase.SUCCEEDED, analysis_runs=5)}
    done = WavesOutcome(phase=WavesPhase.SUCCEEDED, promoted_regions=["eu-central", "us-east"], regions=regions)
    assert waves_summary(done) == "promoted 2.0.0 in eu-central, us-east (9 analysis runs, 0 failed)"
    halted = WavesOutcome(phase=WavesPhase.ROLLED_BACK, failed_region="us-east", reason="failure threshold reached",
                          rolled_back_regions=["us-east", "eu-central"],
                          regions={"us-east": outcome("us-east", ReleasePhase.ROLLED_BACK, failed_runs=2)})
    assert waves_summary(halted) == "halted 2.0.0 in us-east: failure threshold reached; rolled back us-east, eu-central"
