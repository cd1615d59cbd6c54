"""The webhook's intake journal: where an alert notification becomes durable before the webhook answers 200.

A notification the webhook has not seen before (a new alert, or a status change) is appended to a SQLite
file (`<state_dir>/webhook-journal.db`, WAL, synchronous=FULL: the commit is fsynced) and only then
acknowledged. `AlertForwarder` then delivers it to its Incident workflow (signal-with-start) in the background
and deletes it from the journal once Temporal has it. So the answer never waits for Temporal, and while
Temporal is down or slow the webhook keeps accepting alerts; they reach their incidents when it is back. On
start the forwarder replays whatever the journal still holds (a crash, a kill -9, a Temporal outage).

Delivery is at least once (a crash between the signal and the delete re-sends that notification, which the
Incident workflow counts as one more repeat) and in order per incident (firing before resolved).

Appends are group-committed: requests arriving while a commit is in progress share the next one, so a burst
of new alerts costs a few fsyncs, not one each. All SQLite work runs on one dedicated thread.

One process owns a journal file (an exclusive lock on `<journal>.lock`); a second webhook on the same state
dir fails at start with a message naming the file. The journal is bounded (`max_pending`): when it is full,
`JournalFull` is raised and the webhook answers 503 so Alertmanager retries.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import sqlite3
import time
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

from pitstop.alerts import AlertNotification

log = logging.getLogger("pitstop.webhook.journal")

T = TypeVar("T")

DEFAULT_MAX_PENDING = 100_000
RETRY_INITIAL_SECONDS = 0.5
RETRY_MAX_SECONDS = 30.0


class JournalFull(Exception):
    """The journal holds `max_pending` undelivered notifications (Temporal has been away for a long time)."""


class JournalInUse(Exception):
    """Another process holds the journal's lock."""


@dataclass(frozen=True)
class JournalEntry:
    entry_id: int
    note: AlertNotification
    journaled_at: float = field(default_factory=time.monotonic)


class AlertJournal:
    """An append/delete log of undelivered notifications in one SQLite file, used from one event loop."""

    def __init__(self, path: Path, *, max_pending: int = DEFAULT_MAX_PENDING) -> None:
        self.path = path
        self.max_pending = max_pending
        self.pending = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="alert-journal")
        self._db: sqlite3.Connection | None = None
        self._lock_file: IO[bytes] | None = None
        self._appends: list[tuple[AlertNotification, asyncio.Future[int]]] = []
        self._deletes: list[int] = []
        self._committer: asyncio.Task[None] | None = None

    async def open(self) -> list[JournalEntry]:
        """Lock and open (creating) the journal; the entries still undelivered, oldest first."""
        return await self._run(self._open_sync)

    def _open_sync(self) -> list[JournalEntry]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = open(str(self.path) + ".lock", "ab")  # noqa: SIM115 - held for the journal's lifetime
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise JournalInUse(f"another pitstop webhook is using the alert journal {self.path} "
                               "(give each webhook its own PITSTOP_STATE_DIR or PITSTOP_WEBHOOK__JOURNAL)") from None
        self._lock_file = lock
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        os.chmod(self.path, 0o600)  # alert labels and annotations are operational data
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE IF NOT EXISTS pending (id INTEGER PRIMARY KEY AUTOINCREMENT, note TEXT NOT NULL)")
        self._db = db
        rows = db.execute("SELECT id, note FROM pending ORDER BY id").fetchall()
        entries = []
        for entry_id, raw in rows:
            try:
                entries.append(JournalEntry(entry_id, AlertNotification.model_validate_json(raw)))
            except ValueError as exc:  # written by an incompatible version: keep it, say so, never crash
                log.error("alert journal entry %d in %s is unreadable and is kept there: %s", entry_id, self.path, exc)
        self.pending = len(rows)
        return entries

    async def append(self, note: AlertNotification) -> int:
        """Durably record `note` (returns once the commit holding it is fsynced); its entry id."""
        if self._db is None:
            raise RuntimeError("the alert journal is not open")
        if self.pending + len(self._appends) >= self.max_pending:
            raise JournalFull(f"the alert journal {self.path} holds {self.pending} undelivered notifications")
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._appends.append((note, done))
        self._start_committer()
        return await asyncio.shield(done)

    def delete(self, entry_id: int) -> None:
        """Forget a delivered entry (committed with the next batch; losing it only means one re-delivery)."""
        self._deletes.append(entry_id)
        self._start_committer()

    def _start_committer(self) -> None:
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_batches())

    async def _commit_batches(self) -> None:
        while self._appends or self._deletes:
            appends, self._appends = self._appends, []
            deletes, self._deletes = self._deletes, []
            try:
                ids = await self._run(self._commit_sync, [a.model_dump_json() for a, _ in appends], deletes)
            except Exception as exc:  # noqa: BLE001 - the waiting requests answer 503; deletes are retried
                for _, done in appends:
                    if not done.done():
                        done.set_exception(exc)
                self._deletes.extend(deletes)
                log.error("could not write the alert journal %s: %s", self.path, exc)
                if not self._appends:
                    return
                continue
            self.pending += len(ids) - len(deletes)
            for (_, done), entry_id in zip(appends, ids, strict=True):
                if not done.done():
                    done.set_result(entry_id)

    def _commit_sync(self, notes: list[str], deletes: list[int]) -> list[int]:
        assert self._db is not None
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            ids = [int(db.execute("INSERT INTO pending (note) VALUES (?)", (raw,)).lastrowid or 0) for raw in notes]
            db.executemany("DELETE FROM pending WHERE id = ?", [(i,) for i in deletes])
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return ids

    async def close(self) -> None:
        if self._committer is not None:
            await asyncio.gather(self._committer, return_exceptions=True)
        if self._deletes:
            await self._commit_batches()
        await self._run(self._close_sync)
        self._executor.shutdown(wait=True)

    def _close_sync(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)


Deliver = Callable[[AlertNotification], Awaitable[object]]


class AlertForwarder:
    """Delivers journal entries to Temporal: in order per incident, concurrently across incidents, retried
    with backoff (0.5 s doubling to 30 s) until delivered; deletes each from the journal once delivered."""

    def __init__(self, journal: AlertJournal, deliver: Deliver, *, max_concurrent: int = 32) -> None:
        self.journal = journal
        self._deliver = deliver
        self._queues: dict[str, deque[JournalEntry]] = {}
        self._drainers: dict[str, asyncio.Task[None]] = {}
        self._slots = asyncio.Semaphore(max_concurrent)
        self.delivered = 0
        self.retries = 0
        self.forward_seconds: deque[float] = deque(maxlen=1000)  # journaled -> in Temporal, latest deliveries

    def submit(self, entry: JournalEntry) -> None:
        incident = entry.note.incident_id
        self._queues.setdefault(incident, deque()).append(entry)
        if incident not in self._drainers:
            self._drainers[incident] = asyncio.create_task(self._drain(incident))

    @property
    def backlog(self) -> int:
        return sum(len(q) for q in self._queues.values())

    @property
    def oldest_seconds(self) -> float:
        """Age of the oldest undelivered notification (0.0 when none): a growing value means Temporal is away."""
        heads = [q[0].journaled_at for q in self._queues.values() if q]
        return time.monotonic() - min(heads) if heads else 0.0

    async def _drain(self, incident: str) -> None:
        queue = self._queues[incident]
        try:
            while queue:
                entry = queue[0]
                await self._deliver_until_done(entry)
                self.forward_seconds.append(time.monotonic() - entry.journaled_at)
                queue.popleft()
                self.journal.delete(entry.entry_id)
                self.delivered += 1
        finally:
            self._queues.pop(incident, None)
            self._drainers.pop(incident, None)

    async def _deliver_until_done(self, entry: JournalEntry) -> None:
        delay = RETRY_INITIAL_SECONDS
        while True:
            try:
                async with self._slots:
                    await self._deliver(entry.note)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - kept in the journal and retried; never dropped
                self.retries += 1
                log.warning("could not deliver %s (%s) to Temporal, retrying in %.1fs: %s",
                            entry.note.incident_id, entry.note.alert.status, delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)

    async def drain(self, timeout: float) -> bool:
        """Wait up to `timeout` for the backlog to be delivered; what is left stays in the journal."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self._drainers:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return False
            await asyncio.wait(list(self._drainers.values()), timeout=remaining)  # never cancels them
        return True

    async def stop(self) -> None:
        for task in list(self._drainers.values()):
            task.cancel()
        await asyncio.gather(*list(self._drainers.values()), return_exceptions=True)
