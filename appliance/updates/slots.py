"""A/B install slots under an install root (UPD-3).

    <root>/slots/a/outpost, release.opkg-header   (one complete release per slot)
    <root>/slots/b/...
    <root>/current  -> slots/a       (symlink; what the launcher or systemd starts)
    <root>/previous -> slots/b
    <root>/state.json                (an update in flight; written atomically)

Invariants (what must never happen):
- `current` names a slot that is incomplete: a slot is written under a temporary name,
  fsynced, then renamed into place, and only then may `current` point at it.
- `current` is changed non-atomically: a new symlink is made under a temporary name and
  renamed over it (rename(2) is atomic), then the directory is fsynced.
- The active slot is overwritten: installs go to the inactive slot only.
"""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

import msgspec

from appliance.store.atomic import fsync_dir, write_atomic

SLOTS = ("a", "b")
PROGRAM = "outpost"
RELEASE = "release.opkg-header"


class State(msgspec.Struct, kw_only=True):
    """An update in flight. phase: idle | installing | switched | rolling_back."""

    phase: str = "idle"
    version: str = ""         # the version being installed
    target: str = ""          # the slot it goes to
    from_slot: str = ""       # the slot it came from
    snapshot: str = ""        # database snapshot taken before the switch
    result: str = ""          # outcome of the last update, for status
    reason: str = ""


class Layout:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.current_link = self.root / "current"
        self.previous_link = self.root / "previous"
        self.state_file = self.root / "state.json"
        self.pid_file = self.root / "launcher.pid"

    def slot_dir(self, slot: str) -> Path:
        assert slot in SLOTS
        return self.root / "slots" / slot

    def _link(self, link: Path) -> str | None:
        try:
            target = os.readlink(link)
        except OSError:
            return None
        name = Path(target).name
        return name if name in SLOTS else None

    def current(self) -> str | None:
        return self._link(self.current_link)

    def previous(self) -> str | None:
        return self._link(self.previous_link)

    def inactive(self) -> str:
        return "b" if self.current() == "a" else "a"

    def program(self, slot: str | None = None) -> Path | None:
        slot = slot or self.current()
        return self.slot_dir(slot) / PROGRAM if slot else None

    def state(self) -> State:
        try:
            return msgspec.json.decode(self.state_file.read_bytes(), type=State)
        except (OSError, msgspec.DecodeError, msgspec.ValidationError):
            return State()

    def save(self, state: State) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        write_atomic(self.state_file, msgspec.json.encode(state), mode=0o600)

    def install(self, slot: str, files: list[tuple[str, bytes | None, bool, int, int]], source: Path,
                header: bytes) -> None:
        """Write a complete slot: files as (path, _, executable, offset, size) copied from `source`
        (the verified staged bundle), plus the release header; fsync; rename into place."""
        slots = self.root / "slots"
        slots.mkdir(parents=True, exist_ok=True, mode=0o755)
        tmp = slots / f".{slot}.{secrets.token_hex(4)}.tmp"
        tmp.mkdir(mode=0o755)
        with open(source, "rb") as src:
            for path, _, executable, offset, size in files:
                dest = tmp / path
                dest.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                             0o755 if executable else 0o644)
                with os.fdopen(fd, "wb") as out:
                    src.seek(offset)
                    left = size
                    while left:
                        chunk = src.read(min(1 << 20, left))
                        out.write(chunk)
                        left -= len(chunk)
                    os.fchmod(out.fileno(), 0o755 if executable else 0o644)
                    out.flush()
                    os.fsync(out.fileno())
        write_atomic(tmp / RELEASE, header, mode=0o644)
        fsync_dir(tmp)
        final = self.slot_dir(slot)
        if final.exists():
            if self.previous() == slot:  # the slot we are about to replace is no longer a fallback
                self.previous_link.unlink(missing_ok=True)
            old = slots / f".{slot}.{secrets.token_hex(4)}.old"
            os.rename(final, old)
            shutil.rmtree(old, ignore_errors=True)
        os.rename(tmp, final)
        fsync_dir(slots)

    def _point(self, link: Path, slot: str) -> None:
        tmp = self.root / f".{link.name}.{secrets.token_hex(4)}.tmp"
        os.symlink(f"slots/{slot}", tmp)
        os.replace(tmp, link)
        fsync_dir(self.root)

    def switch(self, slot: str) -> None:
        """Make `slot` current and the old current previous (each one atomic rename)."""
        old = self.current()
        if old and old != slot:
            self._point(self.previous_link, old)
        self._point(self.current_link, slot)

    def cleanup_temporaries(self) -> None:
        slots = self.root / "slots"
        if slots.is_dir():
            for entry in slots.iterdir():
                if entry.name.startswith("."):
                    shutil.rmtree(entry, ignore_errors=True)
