"""Verify a backup, and restore one into a data directory atomically.

Restore (server stopped): decrypt and extract the WHOLE file into a staging directory
next to the target, check every chunk, the tar structure and that the database opens
with its key; only then rename the current data directory aside, rename the staged one
into place, and delete the old one. Any failure before the renames leaves the target
untouched and removes the staging directory.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path

from appliance import paths
from appliance.backup import archive
from appliance.backup.errors import BackupError
from appliance.backup.format import Header
from appliance.store.atomic import fsync_dir

RESTORED_CONFIG = paths.RESTORED_CONFIG_NAME


def verify(backup: Path, passphrase: bytes, scratch_parent: Path) -> Header:
    """Decrypt and check a whole backup in a scratch directory, then delete the scratch copy."""
    scratch = Path(scratch_parent) / f".verify-{secrets.token_hex(6)}"
    scratch.mkdir(mode=0o700)
    try:
        header = archive.extract(backup, passphrase, scratch)
        archive.check_layout(scratch)
        return header
    finally:
        archive.remove_tree(scratch)


def restore(backup: Path, data_dir: Path, passphrase: bytes, *,
            check_open: Callable[[Path], None] | None = None) -> Header:
    """Replace `data_dir` with the backup's content, only after it verified completely.

    `check_open(staged_dir)` may open the staged database to prove the key opens it
    (raise to refuse). The current directory is renamed aside and deleted only after
    the staged one is in place; on any failure before that, nothing changed.
    """
    backup, data_dir = Path(backup), Path(data_dir).absolute()
    if not backup.is_file():
        raise BackupError(f"the backup file {backup} does not exist")
    parent = data_dir.parent
    parent.mkdir(parents=True, exist_ok=True)
    staged = parent / f".{data_dir.name}.restore-{secrets.token_hex(6)}"
    staged.mkdir(mode=0o700)
    try:
        header = _stage(backup, passphrase, staged, check_open)
        if data_dir.is_dir():
            _link_other_entries(data_dir, staged)
        _sync_tree(staged)
    except BaseException:
        archive.remove_tree(staged)
        raise
    _swap(staged, data_dir)
    return header


def _stage(backup: Path, passphrase: bytes, staged: Path, check_open: Callable[[Path], None] | None) -> Header:
    header = archive.extract(backup, passphrase, staged)
    archive.check_layout(staged)
    if (staged / archive.CONFIG_NAME).exists():
        os.replace(staged / archive.CONFIG_NAME, staged / RESTORED_CONFIG)
    for path in [staged, *staged.rglob("*")]:
        os.chmod(path, 0o700 if path.is_dir() else 0o600)
    if check_open is not None:
        check_open(staged)
    for leftover in paths.DataDir(staged).db_snapshots():
        leftover.unlink()  # a check_open that migrated leaves a snapshot; it is not part of the backup
    return header


def _swap(staged: Path, data_dir: Path) -> None:
    """Rename the current directory aside, the staged one into place; put the old one back on failure."""
    parent = data_dir.parent
    old = parent / f".{data_dir.name}.old-{secrets.token_hex(6)}"
    had_old = data_dir.exists()
    if had_old:
        os.rename(data_dir, old)
    try:
        os.rename(staged, data_dir)
    except BaseException:
        if had_old:
            os.rename(old, data_dir)
        archive.remove_tree(staged)
        raise
    fsync_dir(parent)
    if had_old:
        archive.remove_tree(old)


def _link_other_entries(current: Path, staged: Path) -> None:
    """Carry over what a backup does not hold (e.g. installed update slots) by hard links.

    Links, not moves: the current directory stays complete until the swap.
    """
    db = archive.DB_FILE
    replaced = {db, f"{db}-wal", f"{db}-shm", *archive.INCLUDED_DIRS, paths.SETUP_CODE_NAME, RESTORED_CONFIG}
    for entry in current.iterdir():
        if entry.name in replaced or entry.name.startswith(f"{db}.pre-") or entry.name.startswith("."):
            continue
        target = staged / entry.name
        if entry.is_symlink() or target.exists():
            continue
        if entry.is_file():
            os.link(entry, target)
        elif entry.is_dir():
            shutil.copytree(entry, target, copy_function=os.link, symlinks=True)


def _sync_tree(root: Path) -> None:
    for path in [*root.rglob("*")]:
        if path.is_file():
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    for path in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        fsync_dir(path)
