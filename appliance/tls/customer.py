"""Customer certificates on disk (TLS-2): install one, roll back, step aside for the generated leaf.

Only file moves here, each followed by an fsync of the directory; `TLSManager` then loads
what the files say and swaps the live context. One step back is kept: `previous.pem` (an
earlier customer certificate) or the `previous-generated` marker (the generated leaf).

Invariants (what must never happen):
- An imported certificate is written under its final name before it loaded into a TLS
  context (it is staged as customer.new.pem first, and removed if it does not load).
- Rollback serves an expired certificate, or loses the one it replaces (they swap places).
"""

from __future__ import annotations

import os

from appliance.store.atomic import fsync_dir
from appliance.tls import importer, selfsigned
from appliance.tls.context import LiveContext
from appliance.tls.errors import TLSError
from appliance.tls.files import TLSFiles


def install(files: TLSFiles, live: LiveContext, bundle: importer.CustomerBundle, password: bytes) -> None:
    """Make `bundle` customer.pem, keeping what was served as the previous certificate."""
    files.prepare_dir()
    staged = files.customer_staged
    files.write(staged, importer.bundle_pem(bundle, password))
    try:
        live.proves_loadable(staged)  # before any switch
        files.load_customer(staged)
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    _keep_current_as_previous(files)
    os.replace(staged, files.customer)
    fsync_dir(files.dir)


def rollback(files: TLSFiles, now: float) -> None:
    """Swap the served certificate with the previous one (a customer certificate or the generated leaf)."""
    files.prepare_dir()
    if files.previous.exists():
        previous = files.load_customer(files.previous)
        if previous is not None and previous.not_valid_after_utc.timestamp() < now:
            raise TLSError("the previous certificate has expired; import a current certificate instead")
        if files.customer.exists():
            os.replace(files.customer, files.customer_swap)
            os.replace(files.previous, files.customer)
            os.replace(files.customer_swap, files.previous)
        else:
            os.replace(files.previous, files.customer)
            files.write(files.previous_generated, b"")
    elif files.previous_generated.exists() and files.customer.exists():
        os.replace(files.customer, files.previous)
        files.previous_generated.unlink()
    else:
        raise TLSError("there is no previous certificate to go back to")
    fsync_dir(files.dir)


def step_aside(files: TLSFiles) -> None:
    """Before serving a regenerated leaf: a customer certificate in use becomes the previous one."""
    files.prepare_dir()
    if files.customer.exists():
        files.previous_generated.unlink(missing_ok=True)
        os.replace(files.customer, files.previous)
        fsync_dir(files.dir)


def previous_description(files: TLSFiles, *, serving_customer: bool) -> str:
    """What rollback goes back to: a fingerprint, "generated", "unreadable" or "" (nothing)."""
    if files.previous.exists():
        try:
            cert = files.previous_certificate()
        except TLSError:
            return "unreadable"
        return selfsigned.fingerprint(cert) if cert is not None else "unreadable"
    return "generated" if files.previous_generated.exists() and serving_customer else ""


def _keep_current_as_previous(files: TLSFiles) -> None:
    if files.customer.exists():
        files.previous_generated.unlink(missing_ok=True)
        os.replace(files.customer, files.previous)
    else:
        files.previous.unlink(missing_ok=True)
        files.write(files.previous_generated, b"")
