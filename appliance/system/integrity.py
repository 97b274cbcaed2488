"""Integrity self-check (UPD-4): hash the running executable and its slot's files against the
signed manifest of the installed release (slots/<x>/release.opkg-header).

A onefile build carries its packaged files (templates, static, migrations, roots) inside
the executable, so hashing the executable covers them. The manifest's signature chain is
checked by the caller-supplied `load_manifest` (updates.verify.read_release, wired in
app.py: system sits beside updates and does not import it).

Invariants (what must never happen):
- "verified" is reported unless every file listed in a signature-checked manifest was
  hashed and matched, size and SHA-256.
- A development checkout is reported as verified: it says "development build, not
  verifiable".
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import msgspec

RELEASE = "release.opkg-header"


class ManifestFile(Protocol):
    @property
    def path(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def sha256(self) -> str: ...


class Manifest(Protocol):
    """What `load_manifest` returns (updates.verify's signed release manifest); read only."""

    @property
    def version(self) -> str: ...
    @property
    def files(self) -> Sequence[ManifestFile]: ...
VERIFIED, MISMATCH, DEVELOPMENT, UNVERIFIABLE = "verified", "mismatch", "development", "unverifiable"


class Report(msgspec.Struct, frozen=True, kw_only=True):
    status: str
    message: str
    version: str = ""
    files: int = 0
    checked_at: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == VERIFIED


def _sha256(path: Path) -> tuple[int, str]:
    h, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return size, h.hexdigest()


def check(*, frozen: bool, executable: Path, load_manifest: Callable[[Path], Manifest], now: float = 0.0) -> Report:
    """Compare the installed files with their signed manifest."""
    slot = Path(executable).resolve().parent
    release = slot / RELEASE
    if not release.exists():
        if not frozen:
            return Report(status=DEVELOPMENT, message="development build, not verifiable (running from a source "
                          "checkout, no signed manifest)", checked_at=now)
        return Report(status=UNVERIFIABLE, message=f"no signed manifest next to {Path(executable).name}: "
                      "this copy was not installed from a signed bundle", checked_at=now)
    try:
        manifest = load_manifest(release)
    except Exception as exc:  # any refusal of the manifest is a failed check, reported plainly
        return Report(status=MISMATCH, message=f"the signed manifest cannot be trusted: {getattr(exc, 'message', exc)}",
                      checked_at=now)
    for entry in manifest.files:
        path = slot / entry.path
        try:
            size, digest = _sha256(path)
        except OSError:
            return Report(status=MISMATCH, message=f"{entry.path} is missing or unreadable", version=manifest.version,
                          checked_at=now)
        if size != entry.size or digest != entry.sha256:
            return Report(status=MISMATCH, message=f"{entry.path} does not match the signed manifest",
                          version=manifest.version, checked_at=now)
    return Report(status=VERIFIED, message=f"all {len(manifest.files)} files match the signed manifest of "
                  f"{manifest.version}", version=manifest.version, files=len(manifest.files), checked_at=now)


def samples(report: Report) -> list:
    """/metrics samples (web/api/metrics.py source format): 1 verified, 0 mismatch, -1 not verifiable."""
    value = {VERIFIED: 1, MISMATCH: 0}.get(report.status, -1)
    return [("outpost_integrity_ok", "gauge", "Integrity self-check: 1 verified, 0 mismatch, -1 not verifiable.",
             {"status": report.status}, value)]
