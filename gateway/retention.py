"""Retention of finished jobs: older than N days, or over a disk budget (oldest first), removed with their files.

    TABAGENT_RETENTION_DAYS=30     finished jobs (done, failed, cancelled) older than 30 days go
    TABAGENT_DISK_BUDGET=200GiB    above this, the oldest finished jobs go until it fits

The budget counts what the records say the jobs' files take (`disk_bytes`: a queued or
running job's upload, a done job's artifacts), so a sweep is a few SQL queries, never a
walk of the volume. Queued and running jobs are never removed: when they alone are over
the budget the sweep says so in the log. Each removal deletes the record first (only if
it is still finished) and then the folder, so replicas sweeping at once never remove a
job twice, and a crash in between leaves a folder without a record, which the next sweep
removes once it is older than any upload in flight could be.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import shutil
import time
from pathlib import Path

from gateway.store import JobStore, now

log = logging.getLogger(__name__)

STRAY_SECONDS = 3600.0      # a folder without a record this old is no upload in flight on any replica
STRAY_CHECK_SECONDS = 600.0  # how often a sweep looks for stray folders (a walk of the jobs folder)
SWEEP_BATCH = 200


def remove_path(path: Path) -> None:
    """Remove a file or a folder tree; nothing if it is not there."""
    with contextlib.suppress(FileNotFoundError):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink()


class Retention:
    """Removes finished jobs past their age or over the disk budget.

    Args:
        store: the job store.
        root: the folder holding one folder per job.
        days: finished jobs older than this many days are removed (0 = kept forever).
        budget: bytes the jobs' files may take (0 = no budget).
    """

    def __init__(self, store: JobStore, root: Path, days: float = 0.0, budget: int = 0) -> None:
        self.store = store
        self.root = root
        self.days = days
        self.budget = budget
        self._strays_checked = -STRAY_CHECK_SECONDS

    @property
    def enabled(self) -> bool:
        return bool(self.days or self.budget)

    def sweep(self) -> list[str]:
        """One pass (blocking): expired jobs, then the budget, then stray folders.

        Returns:
            The ids of the jobs removed.
        """
        removed: list[str] = []
        if self.days:
            cutoff = now() - dt.timedelta(days=self.days)
            while batch := self.store.finished_before(cutoff, SWEEP_BATCH):
                gone = [r.id for r in batch if self._remove(r.id)]
                removed += gone
                if not gone:
                    break
        if self.budget:
            used = self.store.disk_usage()
            while used > self.budget:
                batch = self.store.finished_before(None, SWEEP_BATCH)
                if not batch:
                    log.warning("jobs take %d bytes, over the %d-byte budget, and none is finished to remove",
                                used, self.budget)
                    break
                progress = False
                for r in batch:
                    if used <= self.budget:
                        break
                    if self._remove(r.id):
                        removed.append(r.id)
                        used -= r.disk_bytes
                        progress = True
                if not progress:
                    break
        if removed:
            log.info("retention: removed %d finished job(s)", len(removed))
        if time.monotonic() - self._strays_checked >= STRAY_CHECK_SECONDS:
            self._strays_checked = time.monotonic()
            self.remove_strays(STRAY_SECONDS)
            for batch_id in self.store.empty_batches():
                self.store.delete_batch(batch_id)
        return removed

    def _remove(self, job_id: str) -> bool:
        if not self.store.delete_finished(job_id):
            return False  # another replica removed it, or it is not finished
        remove_path(self.root / job_id)
        return True

    def remove_strays(self, older_than: float) -> int:
        """Remove job folders without a record, last changed more than `older_than` seconds ago.

        Returns:
            How many were removed.
        """
        if not self.root.is_dir():
            return 0
        known = self.store.ids()
        cutoff = time.time() - older_than
        n = 0
        for path in self.root.iterdir():
            if path.name in known:
                continue
            try:
                if older_than and path.stat().st_mtime > cutoff:
                    continue
            except FileNotFoundError:
                continue
            remove_path(path)  # an upload that never became a job (a crash mid-request)
            n += 1
        return n
