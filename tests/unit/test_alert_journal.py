"""The webhook's intake journal (a real SQLite file in tmp_path) and its forwarder (delivery is our own
boundary here: a recording callable stands in for the signal-with-start; Temporal is covered by
tests/integration/test_webhook_journal.py)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from pathlib import Path

import pytest

from pitstop.alerts import Alert, AlertNotification
from pitstop.workers import alert_journal
from pitstop.workers.alert_journal import AlertForwarder, AlertJournal, JournalEntry, JournalFull, JournalInUse


def note(fingerprint: str, status: str = "firing") -> AlertNotification:
    alert = Alert.model_validate({
        "status": status, "labels": {"alertname": "Broken", "service": "trips"}, "annotations": {},
        "startsAt": "2026-11-25T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z", "fingerprint": fingerprint,
    })
    return AlertNotification(alert=alert, received_at=datetime(2026, 11, 25, 10, 1, tzinfo=timezone.utc))


async def test_appended_notifications_survive_a_reopen_until_deleted(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    journal = AlertJournal(path)
    assert await journal.open() == []
    ids = await asyncio.gather(*(journal.append(note(f"{i:04x}")) for i in range(50)))
    assert len(set(ids)) == 50 and journal.pending == 50
    journal.delete(ids[0])
    await journal.close()
    assert oct(path.stat().st_mode & 0o777) == "0o600"

    reopened = AlertJournal(path)
    entries = await reopened.open()
    assert [e.entry_id for e in entries] == sorted(ids[1:])
    assert entries[0].note == note("0001")  # the whole notification round-trips, aliases included
    assert reopened.pending == 49
    await reopened.close()


async def test_a_burst_of_appends_shares_few_commits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    journal = AlertJournal(tmp_path / "journal.db")
    await journal.open()
    commits = []
    original = journal._commit_sync

    def counting(notes: list[str], deletes: list[int]) -> list[int]:
        commits.append(len(notes))
        return original(notes, deletes)

    monkeypatch.setattr(journal, "_commit_sync", counting)
    await asyncio.gather(*(journal.append(note(f"{i:04x}")) for i in range(200)))
    assert sum(commits) == 200
    assert len(commits) <= 3, commits  # the first append commits alone; the rest wait for one or two more
    await journal.close()


async def test_a_second_process_on_the_same_journal_is_refused_with_the_path(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    first = AlertJournal(path)
    await first.open()
    # flock is per open file description, so a second open in this process stands for a second process
    with pytest.raises(JournalInUse, match=str(path)):
        await AlertJournal(path).open()
    await first.close()
    second = AlertJournal(path)
    await second.open()  # free again once the first is closed
    await second.close()


async def test_a_full_journal_refuses_more(tmp_path: Path) -> None:
    journal = AlertJournal(tmp_path / "journal.db", max_pending=3)
    await journal.open()
    for i in range(3):
        await journal.append(note(f"{i:04x}"))
    with pytest.raises(JournalFull, match="3 undelivered"):
        await journal.append(note("ffff"))
    await journal.close()


async def test_forwarder_keeps_order_per_incident_retries_failures_and_deletes_delivered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(alert_journal, "RETRY_INITIAL_SECONDS", 0.01)
    journal = AlertJournal(tmp_path / "journal.db")
    await journal.open()
    delivered: list[tuple[str, str]] = []
    failures = {"aaaa": 2}  # Temporal refuses the first two attempts for this incident

    async def deliver(n: AlertNotification) -> None:
        if failures.get(n.alert.fingerprint, 0) > 0:
            failures[n.alert.fingerprint] -= 1
            raise ConnectionError("temporal unavailable")
        await asyncio.sleep(0.001)
        delivered.append((n.alert.fingerprint, n.alert.status))

    forwarder = AlertForwarder(journal, deliver)
    for n in (note("aaaa"), note("bbbb"), note("aaaa", "resolved"), note("bbbb", "resolved")):
        forwarder.submit(JournalEntry(await journal.append(n), n))
    assert await forwarder.drain(5)
    assert forwarder.retries == 2 and forwarder.delivered == 4
    assert [s for f, s in delivered if f == "aaaa"] == ["firing", "resolved"]
    assert [s for f, s in delivered if f == "bbbb"] == ["firing", "resolved"]
    await journal.close()
    reopened = AlertJournal(tmp_path / "journal.db")
    assert await reopened.open() == []  # everything delivered was deleted
    await reopened.close()


async def test_undelivered_entries_stay_for_the_next_start(tmp_path: Path) -> None:
    journal = AlertJournal(tmp_path / "journal.db")
    await journal.open()

    async def never(n: AlertNotification) -> None:
        raise ConnectionError("temporal unavailable")

    forwarder = AlertForwarder(journal, never)
    n = note("cccc")
    forwarder.submit(JournalEntry(await journal.append(n), n))
    assert not await forwarder.drain(0.2)
    assert forwarder.backlog == 1
    await forwarder.stop()
    await journal.close()
    reopened = AlertJournal(tmp_path / "journal.db")
    assert [e.note for e in await reopened.open()] == [n]
    await reopened.close()
