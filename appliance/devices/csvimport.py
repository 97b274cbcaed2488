"""CSV import of devices (DEV-1): every row valid and imported, or nothing at all.

Format: UTF-8 (with or without BOM), comma separated, a header row. Columns:
  name, address                 required
  port, tags, poll_interval, enabled, notes, legacy_algorithms, host_key   optional
  credential                    name of an existing credential, or
  username + password | private_key [+ passphrase]   a new credential named after the device
Tags inside one cell are separated by spaces or semicolons.

A row naming an existing credential its importer did not enter (and is no admin) imports a
device whose credential binding awaits an admin's approval (devices/binding.py).

Invariants: a refused file writes no device and no credential (validation and the
writes run in one `db.write` job; a refused import writes only its audit record);
errors name the line and the column and never quote a secret.
"""

from __future__ import annotations

import asyncio
import csv
import io
from typing import TYPE_CHECKING

import msgspec

from appliance.audit import log as audit
from appliance.audit.events import Event
from appliance.audit.models import Actor
from appliance.devices import changes, queries, validate
from appliance.devices.credentials import KeyFacts, check_credential
from appliance.devices.models import (
    CredentialCreate,
    CredentialFields,
    CredentialKind,
    DeviceCreate,
    DeviceFields,
    ImportResult,
    ImportRowError,
)

MAX_BYTES = 512 * 1024
MAX_ROWS = 2000
REQUIRED = ("name", "address")
OPTIONAL = ("port", "tags", "poll_interval", "enabled", "notes", "legacy_algorithms", "host_key", "credential",
            "username", "password", "private_key", "passphrase")
COLUMNS = REQUIRED + OPTIONAL

if TYPE_CHECKING:
    from appliance.store.connection import Connection, Database


class _Row(msgspec.Struct, frozen=True):
    """One valid row: its device, and either a new credential (checked) or an existing one's name."""

    line: int
    device: DeviceFields
    credential: CredentialFields | None
    facts: KeyFacts | None
    credential_name: str | None


def _refuse(message: str, rows: int = 0, line: int = 0) -> ImportResult:
    return ImportResult(ok=False, rows=rows, imported=0, message=message,
                        errors=[ImportRowError(line=line, errors={"file": message})])


def decode(data: bytes) -> tuple[str | None, ImportResult | None]:
    """The file's text, or a refusal naming the line with the bad bytes."""
    if len(data) > MAX_BYTES:
        return None, _refuse(f"The file is larger than {MAX_BYTES // 1024} KiB; split it into smaller files.")
    if not data.strip():
        return None, _refuse("The file is empty.")
    if b"\x00" in data:
        return None, _refuse("The file contains NUL bytes; save it as UTF-8 text (CSV).",
                             line=data[:data.index(b"\x00")].count(b"\n") + 1)
    try:
        return data.decode("utf-8-sig"), None
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        return None, _refuse(f"Line {line} is not valid UTF-8; save the file as UTF-8 "
                             "(CSV UTF-8 in spreadsheet programs).",
                             line=line)


def parse(text: str) -> tuple[list[_Row], list[ImportRowError], int]:
    """Validate every row (CPU work: keys are parsed); returns rows, errors and the row count."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        return [], [ImportRowError(line=1, errors={"file": "The file has no header row."})], 0
    except csv.Error as exc:
        return [], [ImportRowError(line=1, errors={"file": f"The header row is not valid CSV ({exc})."})], 0
    problems = {}
    if missing := [c for c in REQUIRED if c not in header]:
        problems["header"] = f"Missing column(s): {', '.join(missing)}."
    if unknown := [c for c in header if c not in COLUMNS]:
        problems["header"] = (problems.get("header", "") + f" Unknown column(s): {', '.join(unknown[:5])}; "
                              f"allowed: {', '.join(COLUMNS)}.").strip()
    if len(set(header)) != len(header):
        problems["header"] = "A column appears twice in the header."
    if problems:
        return [], [ImportRowError(line=1, errors=problems)], 0
    rows: list[_Row] = []
    errors: list[ImportRowError] = []
    names: dict[str, int] = {}
    count = 0
    while True:
        line = reader.line_num + 1
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            errors.append(ImportRowError(line=line, errors={"row": f"Not valid CSV ({exc})."}))
            break
        if not any(cell.strip() for cell in record):
            continue  # blank lines are allowed
        count += 1
        if count > MAX_ROWS:
            too_many = ImportRowError(line=line, errors={"file": f"More than {MAX_ROWS} rows; split the file."})
            return [], [too_many], count
        if len(record) != len(header):
            errors.append(ImportRowError(line=line, errors={
                "row": f"This row has {len(record)} column(s); the header has {len(header)}."}))
            continue
        cells = dict(zip(header, record, strict=True))  # same length: checked just above
        row_errors, row = _row(cells, line)
        if row is not None:
            key = row.device.name.lower()
            if key in names:
                row_errors["name"] = f"The name is used again on line {names[key]}."
            names.setdefault(key, line)
        if row_errors:
            errors.append(ImportRowError(line=line, errors=row_errors))
        elif row is not None:
            rows.append(row)
    if count == 0 and not errors:
        errors.append(ImportRowError(line=2, errors={"file": "The file has a header but no devices."}))
    return rows, errors, count


def _device(cells: dict[str, str]) -> tuple[DeviceFields, dict[str, str]]:
    """A row's device cells (text; an absent cell means the default) checked like any other device input."""
    errors: dict[str, str] = {}
    data = DeviceCreate(
        name=cells.get("name", ""), address=cells.get("address", ""), port=validate.port(cells.get("port"), errors),
        tags=validate.split_tags(cells.get("tags", "").replace(";", " ")),
        poll_interval=validate.poll_interval(cells.get("poll_interval"), errors),
        enabled=validate.boolean(cells.get("enabled"), "enabled", errors, True), notes=cells.get("notes", ""),
        legacy_algorithms=validate.boolean(cells.get("legacy_algorithms"), "legacy_algorithms", errors, False),
        host_key=cells.get("host_key", ""))
    device, device_errors = validate.device(data)
    return device, {**device_errors, **errors}


def _row(cells: dict[str, str], line: int) -> tuple[dict[str, str], _Row]:
    cells = {k: v for k, v in cells.items() if v.strip()}  # an empty cell means "the default"
    device, errors = _device(cells)
    credential = facts = None
    credential_name = (cells.get("credential") or "").strip()
    username = (cells.get("username") or "").strip()
    has_secret = bool(cells.get("password") or cells.get("private_key"))
    if credential_name and (username or has_secret):
        errors["credential"] = "Give either an existing credential's name or a user name with a secret, not both."
    elif username or has_secret:
        kind: CredentialKind = "key" if cells.get("private_key") else "password"
        if cells.get("password") and cells.get("private_key"):
            errors["password"] = "Give a password or a private key, not both."
        credential, facts, cred_errors = check_credential(CredentialCreate(
            name=device.name or "device", username=username, kind=kind, password=cells.get("password") or None,
            private_key=cells.get("private_key") or None, passphrase=cells.get("passphrase") or None))
        errors.update(cred_errors)
    return errors, _Row(line, device, credential, facts, credential_name or None)


def _write(vault_key: bytes, rows: list[_Row], errors: list[ImportRowError], count: int, actor: Actor, now: float,
           can_approve: bool):
    def job(conn: Connection) -> tuple[ImportResult, list[int]]:
        found = list(errors)
        for row in rows:
            problems = {}
            if queries.get_device_id_by_name(conn, row.device.name) is not None:
                problems["name"] = "A device with this name already exists."
            if row.credential_name and queries.get_credential_id_by_name(conn, row.credential_name) is None:
                problems["credential"] = "No credential has this name."
            if row.credential and queries.get_credential_id_by_name(conn, row.credential.name) is not None:
                problems["username"] = (f"A credential named {row.credential.name!r} already exists; "
                                        "use the credential column to assign it.")
            if problems:
                found.append(ImportRowError(line=row.line, errors=problems))
        if found:
            found.sort(key=lambda e: e.line)
            audit.record(conn, ts=now, event=Event.DEVICE_IMPORT, actor=actor, outcome="failure",
                         details={"rows": count, "rows_with_errors": len(found)})
            return ImportResult(ok=False, rows=count, imported=0, errors=found,
                                message=f"Nothing was imported: {len(found)} row(s) have problems."), []
        ids = []
        for row in rows:
            cred_id = None
            if row.credential_name:
                cred_id = queries.get_credential_id_by_name(conn, row.credential_name)
            elif row.credential is not None and row.facts is not None:
                cred_id = changes.insert_credential(conn, vault_key, row.credential, row.facts, actor=actor, now=now)
            device = msgspec.structs.replace(row.device, credential_id=cred_id)
            ids.append(changes.insert_device(conn, device, actor=actor, now=now, can_approve=can_approve))
        audit.record(conn, ts=now, event=Event.DEVICE_IMPORT, actor=actor,
                     details={"rows": count, "imported": len(ids)})
        return ImportResult(ok=True, rows=count, imported=len(ids), errors=[],
                            message=f"Imported {len(ids)} device(s)."), ids
    return job


async def run(db: Database, vault_key: bytes, data: bytes, *, actor: Actor, now: float,
              can_approve: bool) -> tuple[ImportResult, list[int]]:
    """Import `data` (all rows or none); returns the result and the ids of the devices added."""
    text, refusal = decode(data)
    if refusal is None and text is not None:
        rows, errors, count = await asyncio.to_thread(parse, text)
    else:
        rows, errors, count = [], refusal.errors if refusal else [], 0
    result, ids = await db.write(_write(vault_key, rows, errors, count, actor, now, can_approve))
    if refusal is not None:  # the audit record counts no rows; the caller is told why the file was refused
        result = ImportResult(ok=False, rows=0, imported=0, errors=refusal.errors, message=refusal.message)
    return result, ids
