"""Backup (and new store) passphrases given as files, for scripted and scheduled use."""

from __future__ import annotations

import os
from pathlib import Path

from appliance.backup.errors import BackupError


def read_passphrase_file(path: Path) -> bytes:
    """A passphrase from a file readable by its owner only; one trailing newline is ignored."""
    try:
        st = os.stat(path)
        data = Path(path).read_bytes()
    except OSError as exc:
        raise BackupError(f"cannot read the passphrase file {path}: {exc.strerror}") from None
    if st.st_mode & 0o077:
        raise BackupError(f"the passphrase file {path} is readable by group or others; chmod 600 it first")
    if data.endswith(b"\n"):
        data = data[:-1]
        if data.endswith(b"\r"):
            data = data[:-1]
    if not data:
        raise BackupError(f"the passphrase file {path} is empty")
    return data
