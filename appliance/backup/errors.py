"""The ways a backup or a restore fails; each message says why and holds no secret."""

from __future__ import annotations

from appliance.errors import OutpostError


class BackupError(OutpostError):
    """A backup cannot be written or a backup file cannot be restored; the message says why."""

    code = "backup_error"
    status = 400


class BackupFormatError(BackupError):
    """Not a backup, an unsupported version, damaged, truncated, or the wrong passphrase."""

    code = "backup_invalid"


class BackupDiskFullError(BackupError):
    """Not enough disk space to write a backup, or to unpack one for verification."""

    code = "backup_disk_full"
    status = 507
