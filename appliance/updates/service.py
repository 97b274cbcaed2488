"""UpdateService: the updates capability as the running appliance (web UI) uses it.

Invariants (what must never happen):
- The UI reads a bundle from outside [updates] media_dir (the mounted USB stick): the
  path is resolved and must stay under it, and staging refuses symlinks anyway.
- An update step happens without its audit record (records are written by the same
  call that does the step, through the running database's writer).
"""

from __future__ import annotations

from pathlib import Path

from appliance.audit import log as audit
from appliance.audit.models import Actor
from appliance.config import UpdatesConfig
from appliance.errors import ValidationError
from appliance.updates import roots
from appliance.updates.apply import Updater

BUNDLE_SUFFIX = ".opkg"


class UpdateService:
    def __init__(self, db, config: UpdatesConfig, data_dir: Path, clock, trust: roots.TrustStore | None = None) -> None:
        self.db, self.config, self.data_dir, self.clock = db, config, Path(data_dir), clock
        self.trust = trust or roots.builtin()

    @property
    def development_build(self) -> bool:
        return self.trust.development_only

    @property
    def staging_dir(self) -> Path:
        return Path(self.config.staging_dir) if self.config.staging_dir else self.data_dir / "updates" / "staging"

    def updater(self, actor: Actor) -> Updater:
        def record(action: str, outcome: str, details: dict) -> None:
            now = self.clock.now()
            self.db.write_sync(lambda conn: audit.record(conn, ts=now, action=action, actor=actor, outcome=outcome,
                                                         details=details))

        return Updater(install_root=Path(self.config.install_root), staging_dir=self.staging_dir, trust=self.trust,
                       max_bundle_bytes=self.config.max_bundle_bytes, health_timeout=self.config.health_timeout_seconds,
                       audit=record, clock=self.clock.now)

    def media_bundles(self) -> list[str]:
        """Bundle files on the medium (two levels deep: /media/<stick>/<file>), for the picker."""
        media = Path(self.config.media_dir)
        found = []
        for pattern in (f"*{BUNDLE_SUFFIX}", f"*/*{BUNDLE_SUFFIX}"):
            try:
                found += [str(p.relative_to(media)) for p in media.glob(pattern)]
            except OSError:
                pass
        return sorted(found)[:100]

    def media_path(self, relative: str) -> Path:
        """The file `relative` under media_dir; ValidationError if it would leave it."""
        media = Path(self.config.media_dir).resolve()
        if not relative or len(relative) > 1024 or "\x00" in relative:
            raise ValidationError("Choose a bundle file.", details={"file": "Choose a bundle file from the USB stick."})
        rel = Path(relative)
        candidate = media / rel
        try:
            inside = not rel.is_absolute() and ".." not in rel.parts and candidate.parent.resolve().is_relative_to(media)
        except OSError:
            inside = False
        if not inside:
            raise ValidationError("That file is not on the USB stick.",
                                  details={"file": f"Only files under {media} can be used."})
        return candidate
