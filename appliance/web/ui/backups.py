"""Settings -> Backups (UPD-5): take an encrypted backup now and download it; scheduled backups.

Thin: `system.backup.BackupService` does the work in a thread; the result page polls
(htmx, every second) until the backup is written, then offers the download. Restoring
is done with `outpost restore` while the server is stopped (it replaces the data
directory), so there is no restore button here. Downloads are audited (BAK004).
"""

from __future__ import annotations

import asyncio

from litestar import Request, Response, get, post
from litestar.response import File

from appliance.audit import log as audit
from appliance.crypto import kdf
from appliance.errors import NotFoundError, OutpostError, ValidationError
from appliance.system import backup
from appliance.web.api.common import actor
from appliance.web.guards import permission
from appliance.web.ui.account import page, redirect, services, text

MANAGE = permission("backups.manage")
MIN_PASSPHRASE = kdf.MIN_PASSPHRASE  # the one minimum, shared with the CLI and the scheduler


def _page(request: Request, *, errors: dict | None = None, message: str = "", status: int = 200) -> Response:
    svc = services(request)
    cfg = svc.config.backup
    scheduled = backup.list_backups(cfg.directory)[::-1] if cfg.directory else []
    return page(request, "backups/index.html", status=status, errors=errors or {}, message=message, cfg=cfg,
                scheduled=scheduled, output_dir=str(svc.backups.output_dir()), min_passphrase=MIN_PASSPHRASE)


@get("/settings/backups", guards=[MANAGE], name="backups")
async def backups_page(request: Request) -> Response:
    return _page(request)


@post("/settings/backups", guards=[MANAGE], name="backups_create")
async def create(request: Request) -> Response:
    svc = services(request)
    form = await request.form()
    try:
        passphrase, confirm = text(form, "passphrase"), text(form, "confirm")
        errors = {}
        if len(passphrase) < MIN_PASSPHRASE:
            errors["passphrase"] = f"Use at least {MIN_PASSPHRASE} characters; the backup holds every key."
        elif passphrase != confirm:
            errors["confirm"] = "The two passphrases differ."
        if errors:
            raise ValidationError("Please correct the highlighted fields.", details=errors)
        job = svc.backups.start_job(passphrase.encode(), actor=actor(request))
    except OutpostError as exc:
        return _page(request, errors=exc.details or {}, message=exc.message, status=400)
    return redirect(f"/settings/backups/jobs/{job.id}")


def _job(request: Request, job_id: str):
    job = services(request).backups.jobs.get(job_id)
    if job is None:
        raise NotFoundError("No such backup job (jobs are forgotten when the appliance restarts).")
    return job


@get("/settings/backups/jobs/{job_id:str}", guards=[MANAGE], name="backups_job")
async def job_page(request: Request, job_id: str) -> Response:
    return page(request, "backups/job.html", job=_job(request, job_id))


@get("/settings/backups/jobs/{job_id:str}/status", guards=[MANAGE], name="backups_job_status")
async def job_status(request: Request, job_id: str) -> Response:
    """The progress fragment alone, polled by htmx while the backup runs."""
    return page(request, "backups/_status.html", job=_job(request, job_id))


@get("/settings/backups/download/{name:str}", guards=[MANAGE], name="backups_download")
async def download(request: Request, name: str) -> Response:
    svc = services(request)
    path = await asyncio.to_thread(svc.backups.download_path, name)
    if path is None:
        raise NotFoundError("No such backup file.")
    who, now = actor(request), svc.clock.now()
    await svc.db.write(lambda conn: audit.record(conn, ts=now, action="backup.download", actor=who, target=name,
                                                 details={"bytes": path.stat().st_size}))
    return File(path=path, filename=name, media_type="application/octet-stream")


ROUTES = [backups_page, create, job_page, job_status, download]
