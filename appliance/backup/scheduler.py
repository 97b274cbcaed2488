"""Scheduled backups: one file every [backup] interval_hours into [backup] directory, keeping `keep`.

Files are named by their UTC time (outpost-backup-YYYYmmddTHHMMSSZ.opbk), so names sort
by age and the newest file's mtime says when the next one is due.

Invariants (what must never happen):
- A failing schedule floods the audit log: after a failure the next try waits
  SCHEDULE_RETRY_SECONDS (each failure is audited by the service as backup.failure).
- Retention deletes anything but scheduled backup files.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

from appliance.backup.format import SUFFIX, unlink_quietly
from appliance.backup.passphrase import read_passphrase_file
from appliance.clock import Clock
from appliance.config import BackupConfig
from appliance.errors import OutpostError

SCHEDULE_RETRY_SECONDS = 900.0  # after a failed scheduled backup
_log = logging.getLogger("outpost.backup")


def scheduled_name(now: float) -> str:
    return "outpost-backup-" + time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now)) + SUFFIX


def list_backups(directory: Path) -> list[Path]:
    """Scheduled backup files in `directory`, oldest first (names sort by time)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.glob(f"outpost-backup-*{SUFFIX}") if p.is_file())


def prune(directory: Path, keep: int) -> list[Path]:
    """Delete the oldest scheduled backups beyond `keep`; return what was deleted."""
    files = list_backups(directory)
    doomed = files[:-keep] if keep > 0 else files
    for path in doomed:
        unlink_quietly(path)
    return doomed


def due(directory: Path, interval_hours: int, now: float) -> bool:
    files = list_backups(directory)
    return not files or files[-1].stat().st_mtime + interval_hours * 3600 <= now


async def run_schedule(write: Callable[[Path, bytes], int], config: BackupConfig, clock: Clock) -> None:
    """Run forever: `write(out_path, passphrase)` (blocking, audited) whenever a backup is due.

    Returns at once when [backup] directory is empty (no scheduled backups).
    """
    if not config.directory:
        return
    while True:
        directory = Path(config.directory)
        wait = 60.0
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            if due(directory, config.interval_hours, clock.now()):
                passphrase = read_passphrase_file(Path(config.passphrase_file))
                await asyncio.to_thread(write, directory / scheduled_name(clock.now()), passphrase)
                prune(directory, config.keep)
        except (OutpostError, OSError) as exc:
            # The service audited it as backup.failure; the log says why, so the admin can fix it.
            # Retried less often, so a lasting problem does not flood the audit log.
            reason = exc.message if isinstance(exc, OutpostError) else (exc.strerror or str(exc))
            _log.error("scheduled backup failed", extra={"reason": reason})
            wait = SCHEDULE_RETRY_SECONDS
        await asyncio.sleep(wait)
