"""Settings -> Backups (UPD-5): take an encrypted backup now and download it; scheduled backups.

Thin: `backup.service.BackupService` does the work in a thread; the result page polls
(htmx, every second) until the backup is written, then offers the download. Restoring
is done with `outpost restore` while the server is stopped (it replaces the data
directory), so there is no restore button here.

A backup holds the database and every key, so (issue 11, finding 6): creating one needs
the password, plus a current TOTP code when the user has 2FA, in the request itself; the
file can be downloaded only by the session that made it, within 5 minutes of that proof
(after that, the same proof again), and each download is audited (BAK004) before a byte
is sent. Another session's job does not exist for this one.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from litestar import Request, Response, get, post
from litestar.response import File

from appliance.audit.events import Event
from appliance.backup.scheduler import list_backups
from appliance.crypto import kdf
from appliance.errors import NotFoundError, OutpostError, RateLimitedError, ValidationError
from appliance.web.deps import actor, client, principal, services
from appliance.web.guards import permission
from appliance.web.ui.forms import on_page, page, redirect, text

MANAGE = permission("backups.manage")
MIN_PASSPHRASE = kdf.MIN_PASSPHRASE  # the one minimum, shared with the CLI and the scheduler
STEP_UP_SECONDS = 5 * 60  # a proof opens the download of its job for this long (AUTH-8's window)


def _view(request: Request, *, errors: dict | None = None, message: str = "", status: int = 200) -> Response:
    svc = services(request)
    cfg = svc.config.backup
    scheduled = list_backups(Path(cfg.directory))[::-1] if cfg.directory else []
    return page(request, "backups/index.html", status=status, errors=errors or {}, message=message, cfg=cfg,
                scheduled=scheduled, output_dir=str(svc.backups.output_dir()), min_passphrase=MIN_PASSPHRASE)


@get("/settings/backups", guards=[MANAGE], name="backups")
async def backups_page(request: Request) -> Response:
    return _view(request)


async def _prove(request: Request, form) -> float:
    """Step-up for a full backup (issue 11, finding 6): the password, and a current TOTP code when
    the user has 2FA, entered in this request. Throttled and audited like /reauth (auth.reauth),
    counted toward the lockout. Returns the time of the proof; ValidationError naming the field."""
    svc, who = services(request), principal(request)
    password, code = text(form, "current_password"), text(form, "totp_code").strip()
    errors = {}
    if not password:
        errors["current_password"] = "Enter your password."
    elif who.totp_enabled and _looks_like_code(password):
        errors["current_password"] = "Enter your password here; the authenticator code goes below."
    if who.totp_enabled and not _looks_like_code(code):
        errors["totp_code"] = "Enter the 6-digit code from your authenticator app."
    if errors:
        raise ValidationError("A backup holds every key: confirm it is you.", details=errors)
    for field, secret in (("current_password", password), ("totp_code", code if who.totp_enabled else "")):
        if not secret:
            continue
        try:  # a password never looks like a code (checked above), so each is checked as what it is
            await svc.auth.stepup.reauthenticate(who, secret=secret, source=client(request))
        except ValidationError:
            raise ValidationError("That is not right; nothing was done.",
                                  details={field: "That is not right."}) from None
    return svc.clock.now()


def _looks_like_code(value: str) -> bool:
    return len(value.strip()) == 6 and value.strip().isdigit()


def _owner(request: Request) -> str:
    return principal(request).session_hash.hex()


@post("/settings/backups", guards=[MANAGE], name="backups_create", opt=on_page("/settings/backups"))
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
        proved_at = await _prove(request, form)
        job = svc.backups.start_job(passphrase.encode(), actor=actor(request), owner=_owner(request),
                                    proved_at=proved_at)
    except RateLimitedError as exc:
        return _view(request, message=exc.message, status=429)
    except OutpostError as exc:
        return _view(request, errors=exc.details or {}, message=exc.message, status=400)
    return redirect(f"/settings/backups/jobs/{job.id}")


def _job(request: Request, job_id: str):
    job = services(request).backups.jobs.get(job_id)
    if job is None or job.owner != _owner(request):  # another session's job does not exist for this one
        raise NotFoundError("No such backup job (jobs are forgotten when the appliance restarts).")
    return job


def _fresh(request: Request, job) -> bool:
    """The session proved itself for this job (password + code) in the last 5 minutes."""
    return services(request).clock.now() - job.proved_at <= STEP_UP_SECONDS


def _job_page(request: Request, job, *, template: str = "backups/job.html", errors: dict | None = None,
              message: str = "", status: int = 200) -> Response:
    return page(request, template, status=status, job=job, fresh=_fresh(request, job), errors=errors or {},
                message=message)


@get("/settings/backups/jobs/{job_id:str}", guards=[MANAGE], name="backups_job")
async def job_page(request: Request, job_id: str) -> Response:
    return _job_page(request, _job(request, job_id))


@get("/settings/backups/jobs/{job_id:str}/status", guards=[MANAGE], name="backups_job_status")
async def job_status(request: Request, job_id: str) -> Response:
    """The progress fragment alone, polled by htmx while the backup runs."""
    return _job_page(request, _job(request, job_id), template="backups/_status.html")


@post("/settings/backups/jobs/{job_id:str}/confirm", guards=[MANAGE], name="backups_job_confirm",
      opt=on_page("/settings/backups/jobs/{job_id}"))
async def job_confirm(request: Request, job_id: str) -> Response:
    """Prove it again (password + code) to download after the 5 minutes are over."""
    job = _job(request, job_id)
    form = await request.form()
    try:
        job.proved_at = await _prove(request, form)
    except RateLimitedError as exc:
        return _job_page(request, job, message=exc.message, status=429)
    except OutpostError as exc:
        return _job_page(request, job, errors=exc.details or {}, message=exc.message, status=400)
    return redirect(f"/settings/backups/jobs/{job.id}")


@get("/settings/backups/jobs/{job_id:str}/download", guards=[MANAGE], name="backups_download")
async def download(request: Request, job_id: str) -> Response:
    """The file, to the session that made it while its proof is fresh; audited before it is sent."""
    svc = services(request)
    job = _job(request, job_id)
    if not _fresh(request, job):
        return _job_page(request, job, message="Confirm it is you again to download this backup.", status=403)
    path = await asyncio.to_thread(svc.backups.download_path, job)
    if path is None:
        raise NotFoundError("This backup file is not available (it failed, is still running, or was deleted).")
    await svc.audit.record_alone(Event.BACKUP_DOWNLOAD, actor=actor(request), target=job.file,
                                 details={"bytes": path.stat().st_size})
    return File(path=path, filename=job.file, media_type="application/octet-stream")


ROUTES = [backups_page, create, job_page, job_status, job_confirm, download]
