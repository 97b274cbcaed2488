"""Encrypted single-file backups and verified, atomic restore (UPD-5).

Modules, from the bottom up:
- `errors`: the failure modes (BackupError, BackupFormatError, BackupDiskFullError).
- `format`: the file format (version 1): header, then chunks sealed by `crypto.stream`
  under a key derived from the backup passphrase (argon2id, `crypto.kdf`).
- `archive`: what goes into the sealed tar stream (`create`) and what may come out of
  it (`extract`, regular files and directories only).
- `restore`: `verify` and `restore` (stage, check, then swap the data directory).
- `passphrase`: the passphrase file rule (owner-only, one trailing newline ignored).
- `scheduler`: scheduled backups into [backup] directory, with retention.
- `jobs`: backups started from the UI, followed by polling.
- `service`: `BackupService`, the one entry point for the CLI, the UI and the scheduler;
  every backup is audited (backup.create or backup.failure).

Invariants (what must never happen):
- A backup that does not fully verify changes anything in the target data directory.
- Plaintext of the backup reaches disk outside the 0700 staging directory, or a
  passphrase or key reaches a message or log.
- A partial backup file is left under its final name (temp file, fsync, rename).
- The file format changes: files written by earlier releases must keep restoring
  (tests/backup/test_format_v1.py holds one and checks the writer byte for byte).
"""
