"""The backfill's day files (`<work_dir>/history-YYYYMMDD.om`, ~350 MiB each for the default sandbox) never stay on
disk: each is deleted once promtool converted it, and all of them when promtool fails (real promtool)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pitstop.sandbox.fleet import expand_fleet, load_fleet_spec
from pitstop.sandbox.history import HistoricalPod, HistoryError, backfill_history



@pytest.fixture(autouse=True)
def _promtool() -> None:
    if shutil.which("promtool") is None:
        pytest.fail("promtool missing: apt-get install -y --no-install-recommends prometheus", pytrace=False)


def test_converted_day_files_are_deleted(tmp_path: Path) -> None:
    services = expand_fleet(load_fleet_spec(), services=2)
    result = backfill_history(services=services, regions=["eu-central"], tsdb_dir=tmp_path / "tsdb",
                              work_dir=tmp_path / "work", days=2, step_seconds=300)
    assert result.files == 3  # two days from mid-day: three UTC days
    assert list((tmp_path / "work").glob("*.om")) == []
    assert result.tsdb_bytes > 0 and any((tmp_path / "tsdb").glob("*/meta.json"))


def test_day_files_are_deleted_when_promtool_fails(tmp_path: Path) -> None:
    service = expand_fleet(load_fleet_spec(), services=1)[0]
    unparsable = HistoricalPod(namespace=service.team, pod='a"b', container=service.name, app=service.name)
    with pytest.raises(HistoryError, match="create-blocks-from openmetrics"):
        backfill_history(services=[service], regions=["eu-central"], tsdb_dir=tmp_path / "tsdb",
                         work_dir=tmp_path / "work", days=2, step_seconds=300,
                         pods_by_region={"eu-central": [unparsable]})
    assert list((tmp_path / "work").glob("*.om")) == []
