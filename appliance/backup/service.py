"""`BackupService`: on-demand and scheduled backups of a running appliance, each audited (BAK codes).

The CLI (`outpost backup`), the UI (a job per backup) and the scheduler all write through
`create`, so the passphrase minimum and the audit record are the same for all three.
"""

from __future__ import annotations

from pathlib import Path

from appliance.audit.events import Event
from appliance.audit.models import Actor
from appliance.audit.service import AuditService
from appliance.backup import archive
from appliance.backup.jobs import BackupJob, JobBoard
from appliance.backup.scheduler import prune, run_schedule, scheduled_name
from appliance.clock import Clock
from appliance.config import BackupConfig
from appliance.crypto import kdf
from appliance.errors import OutpostError
from appliance.store.connection import Database


class BackupService:
    """On-demand and scheduled backups of a running appliance, each audited (BAK codes)."""

    UI_DIR = "backups"
    UI_KEEP = 3

    def __init__(self, db: Database, data_dir: Path, config: BackupConfig, clock: Clock, *,
                 config_path: Path | None, app_version: str) -> None:
        self._db, self._dir, self._config, self._clock = db, Path(data_dir), config, clock
        self._audit = AuditService(db, clock)  # a backup is a file: recorded right after, on its own
        self._config_path, self._version = config_path, app_version
        self._board = JobBoard()

    def create(self, out_path: Path, passphrase: bytes, *, actor: Actor, via: str,
               params: kdf.KdfParams | None = None) -> int:
        """Write a backup (blocking: call from a thread); audited as backup.create or backup.failure."""
        target = Path(out_path).name
        try:
            kdf.check_new_passphrase(passphrase)  # the one minimum: CLI, UI and scheduler all come here
            size = archive.create(self._db, self._dir, Path(out_path), passphrase, config_path=self._config_path,
                                  app_version=self._version, params=params)
        except OutpostError as exc:
            self._audit.record_refusal_sync(Event.BACKUP_FAILURE, actor=actor, outcome="failure", target=target,
                                            details={"via": via, "reason": exc.code})
            raise
        self._audit.record_alone_sync(Event.BACKUP_CREATE, actor=actor, target=target,
                                      details={"via": via, "bytes": size})
        return size

    # UI jobs: the file goes to [backup] directory, or <data dir>/backups, for download.
    def output_dir(self) -> Path:
        directory = Path(self._config.directory) if self._config.directory else self._dir / self.UI_DIR
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        return directory

    @property
    def jobs(self) -> dict[str, BackupJob]:
        return self._board.jobs

    def start_job(self, passphrase: bytes, *, actor: Actor, owner: str = "", proved_at: float = 0.0,
                  params: kdf.KdfParams | None = None) -> BackupJob:
        """Start a backup in a thread for the UI; the job says when its file is ready."""
        kdf.check_new_passphrase(passphrase)  # at once, so the form can say so (create() checks again)
        out = self.output_dir() / scheduled_name(self._clock.now())

        def work() -> tuple[int, str]:
            size = self.create(out, passphrase, actor=actor, via="ui", params=params)
            if not self._config.directory:
                prune(self.output_dir(), self.UI_KEEP)
            return size, out.name

        return self._board.start(work, started_at=self._clock.now(), owner=owner, proved_at=proved_at)

    def download_path(self, job: BackupJob) -> Path | None:
        """The file a finished job wrote, or None (failed, running, or pruned since)."""
        if job.state != "done" or not job.file:
            return None
        path = self.output_dir() / job.file
        return path if path.is_file() else None

    async def scheduler(self) -> None:
        """Run forever: a backup into [backup] directory every interval_hours, keeping `keep`."""
        def write(out: Path, passphrase: bytes) -> int:
            return self.create(out, passphrase, actor=Actor.system(), via="schedule")

        await run_schedule(write, self._config, self._clock)
