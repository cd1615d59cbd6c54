"""DR drill records (pure): RTO, RPO and failback time from the drill's marks, a skipped drill with its reason, and
the report's trend lines."""

from __future__ import annotations

from pitstop.dr import drill_record, report_lines


def test_a_recovered_drill_records_rto_rpo_and_failback_time() -> None:
    record = drill_record(region="eu-central", started_at="2026-12-05T03:00:00+00:00",
                          restored_at="2026-12-05T03:00:42.5+00:00", finished_at="2026-12-05T03:03:00+00:00",
                          rpo_values=[1.5, None, 4.0])
    assert (record.outcome, record.rto_seconds, record.rpo_seconds, record.failback_seconds) == ("recovered", 42.5, 4.0, 137.5)
    assert drill_record(region="x", started_at="2026-12-05T03:00:00+00:00", restored_at="2026-12-05T03:00:01+00:00",
                        finished_at="2026-12-05T03:00:02+00:00", rpo_values=[None]).rpo_seconds is None


def test_a_busy_region_records_a_skipped_drill_with_its_reason() -> None:
    record = drill_record(region="us-east", started_at="", restored_at="", finished_at="", rpo_values=[],
                          skipped_reason="us-east: 1 service lease(s) in use: lease/us-east/team-a/trip")
    assert record.outcome == "skipped" and "lease/us-east/team-a/trip" in record.reason and record.rto_seconds is None


def test_report_lines_are_a_trend_per_region_oldest_first() -> None:
    late = drill_record(region="eu-central", started_at="2026-12-06T03:00:00+00:00", restored_at="2026-12-06T03:00:30+00:00",
                        finished_at="2026-12-06T03:01:00+00:00", rpo_values=[2.0])
    early = drill_record(region="eu-central", started_at="2026-12-05T03:00:00+00:00", restored_at="2026-12-05T03:00:50+00:00",
                         finished_at="2026-12-05T03:02:00+00:00", rpo_values=[])
    lines = report_lines([late, early])
    assert lines[1].startswith("eu-central") and "2026-12-05" in lines[1] and "50.0" in lines[1] and lines[1].count(" - ") >= 1
    assert "2026-12-06" in lines[2] and "30.0" in lines[2] and "2.0" in lines[2]
