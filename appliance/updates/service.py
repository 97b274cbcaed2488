"""UpdateService: the updates capability as the running appliance (web UI) uses it.

Invariants (what must never happen):
- The UI reads a bundle from outside [updates] media_dir (the mounted USB stick): the
  path is resolved and must stay under it, and staging refuses symlinks anyway.
- An update step happens without its audit record (records are written by the same
  call that does the step, through the running database's writer).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from appliance.audit.events import Event
from appliance.audit.models import Actor, Outcome
from appliance.audit.service import AuditService
from appliance.config import UpdatesConfig
from appliance.errors import ValidationError
from appliance.paths import DataDir
from appliance.updates import roots
from appliance.updates.apply import AuditFn, Updater

if TYPE_CHECKING:
    from appliance.clock import Clock
    from appliance.store.connection import Database

BUNDLE_SUFFIX = ".opkg"


def staging_dir(config: UpdatesConfig, data_dir: Path) -> Path:
    """[updates] staging_dir, or <data_dir>/updates/staging when it is empty."""
    return Path(config.staging_dir) if config.staging_dir else DataDir(data_dir).update_staging


def make_updater(config: UpdatesConfig, data_dir: Path, trust: roots.TrustStore, audit: AuditFn, *,
                 clock: Callable[[], float] = time.time, say: Callable[[str], None] = lambda s: None) -> Updater:
    """The one way an Updater is built (web UI and CLI): `audit(action, outcome, details)`
    records each step; the CLI's opens the database per record (updates/commands.py)."""
    return Updater(install_root=Path(config.install_root), staging_dir=staging_dir(config, data_dir), trust=trust,
                   max_bundle_bytes=config.max_bundle_bytes, health_timeout=config.health_timeout_seconds,
                   audit=audit, clock=clock, say=say)


class UpdateService:
    def __init__(self, db: Database, config: UpdatesConfig, data_dir: Path, clock: Clock,
                 trust: roots.TrustStore | None = None) -> None:
        self.db, self.config, self.data_dir, self.clock = db, config, Path(data_dir), clock
        self.audit = AuditService(db, clock)
        self.trust = trust or roots.builtin()

    @property
    def development_build(self) -> bool:
        return self.trust.development_only

    @property
    def staging_dir(self) -> Path:
        return staging_dir(self.config, self.data_dir)

    def updater(self, actor: Actor) -> Updater:
        def record(event: Event, outcome: Outcome, details: dict) -> None:
            self.audit.record_alone_sync(event, actor=actor, outcome=outcome, details=details)

        return make_updater(self.config, self.data_dir, self.trust, record, clock=self.clock.now)

    def media_bundles(self) -> list[str]:
        """Bundle files on the medium (two levels deep: /media/<stick>/<file>), for the picker."""
        media = Path(self.config.media_dir)
        found = []
        for pattern in (f"*{BUNDLE_SUFFIX}", f"*/*{BUNDLE_SUFFIX}"):
            with contextlib.suppress(OSError):  # an unreadable stick or folder lists nothing
                found += [str(p.relative_to(media)) for p in media.glob(pattern)]
        return sorted(found)[:100]

    def media_path(self, relative: str) -> Path:
        """The file `relative` under media_dir; ValidationError if it would leave it."""
        media = Path(self.config.media_dir).resolve()
        if not relative or len(relative) > 1024 or "\x00" in relative:
            raise ValidationError("Choose a bundle file.",
                                  details={"file": "Choose a bundle file from the USB stick."})
        rel = Path(relative)
        candidate = media / rel
        try:
            inside = (not rel.is_absolute() and ".." not in rel.parts
                      and candidate.parent.resolve().is_relative_to(media))
        except OSError:
            inside = False
        if not inside:
            raise ValidationError("That file is not on the USB stick.",
                                  details={"file": f"Only files under {media} can be used."})
        return candidate
