"""Backups started from the UI: run in a thread, followed by polling, downloaded by their owner.

Jobs live in memory only (forgotten at restart); at most one runs at a time.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable

import msgspec

from appliance.backup.errors import BackupError
from appliance.errors import OutpostError


class BackupJob(msgspec.Struct, kw_only=True):
    """A backup started from the UI, followed by polling."""

    id: str
    state: str = "running"  # running | done | failed
    started_at: float = 0.0
    file: str = ""
    size: int = 0
    error: str = ""
    owner: str = ""  # the session that started it (web layer: only it may download the file)
    proved_at: float = 0.0  # when that session last proved who it is for this job (password + code)


class JobBoard:
    """The UI's backup jobs of this process."""

    def __init__(self) -> None:
        self.jobs: dict[str, BackupJob] = {}

    def start(self, work: Callable[[], tuple[int, str]], *, started_at: float, owner: str,
              proved_at: float) -> BackupJob:
        """Run `work()` -> (size, file name) in a thread; finished jobs are forgotten when a new one starts."""
        if any(j.state == "running" for j in self.jobs.values()):
            raise BackupError("a backup is already running; wait for it to finish")
        job = BackupJob(id=secrets.token_urlsafe(12), started_at=started_at, owner=owner, proved_at=proved_at)
        self.jobs = {k: v for k, v in self.jobs.items() if v.state == "running"} | {job.id: job}

        def run() -> None:
            try:
                job.size, job.file = work()
                job.state = "done"
            except OutpostError as exc:
                job.error, job.state = exc.message, "failed"
            except Exception:  # noqa: BLE001 - reported to the user, never silently lost
                job.error, job.state = "the backup failed unexpectedly; see the appliance log", "failed"

        threading.Thread(target=run, name="outpost-backup", daemon=True).start()
        return job
