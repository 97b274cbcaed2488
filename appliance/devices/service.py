"""DeviceService: inventory, the credential vault and host-key pins (DEV-1..4, STORE-3).

Callers hand it typed inputs (models.DeviceCreate, DeviceUpdate, CredentialCreate,
CredentialUpdate): the API decodes JSON into them, the browser pages and the CSV import
parse text into them. It checks them (validate.py, credentials.py) and stores them through
the write steps in changes.py, which the CSV import shares.

Invariants (what must never happen):
- a secret (password, private key, passphrase) appears in a response, log line,
  exception message or audit record: only `list_probe_targets`/`get_probe_target`
  open the vault (targets.py), for the probe, and `DeviceSecret` hides itself from repr;
- a sealed credential opens on any row but its own (associated data = table, row id, field);
- a change is stored without its audit record (both in one `db.write` job);
- a CSV import stores part of a file: every row is valid or nothing is written;
- a host key is silently replaced: once pinned, only an operator's review re-pins it;
- a stored secret is opened for a device whose credential binding awaits an admin's
  approval (devices/binding.py): someone who could not read a credential must not be
  able to make the appliance send it to a host of their choosing.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING

import msgspec

from appliance.audit import log as audit
from appliance.audit.events import Event
from appliance.audit.models import Actor
from appliance.clock import Clock
from appliance.crypto import sshkeys
from appliance.crypto.keypool import KeyPool
from appliance.devices import binding, changes, csvimport, queries, targets, validate
from appliance.devices.credentials import KeyFacts, check_credential, seal_credential
from appliance.devices.errors import (
    CredentialInUseError,
    CredentialNotFoundError,
    DeviceNotFoundError,
    HostKeyRefusedError,
    StaleReviewError,
)
from appliance.devices.models import (
    Credential,
    CredentialCreate,
    CredentialFields,
    CredentialUpdate,
    Device,
    DeviceCreate,
    DeviceFields,
    DeviceUpdate,
    ImportResult,
    PinMode,
    ProbeTarget,
)
from appliance.errors import ConflictError, ValidationError

log = logging.getLogger(__name__)
_Checked = tuple[CredentialFields, KeyFacts] | None  # a new credential entered with a device, checked

if TYPE_CHECKING:
    from appliance.store.connection import Connection, Database


class DeviceService:
    def __init__(self, db: Database, vault_key: bytes, clock: Clock, key_pool: KeyPool) -> None:
        self.db = db
        self._key = vault_key
        self.clock = clock
        # Parsing a private key derives from its passphrase: on a small bounded pool, never the
        # default executor (issue 11, finding 8). The app shares one with certificate imports.
        self._key_pool = key_pool
        self._subscribers: list[Callable[[int], None]] = []
        # Set by the probe: async fn(device_ids) -> {device_id: status dict} for the device list's
        # status columns (templates/devices/_status_cell.html). None: the list shows no probe status.
        self.status_provider: Callable[[list[int]], Awaitable[dict[int, dict]]] | None = None

    # ---- change notification -------------------------------------------------------

    def subscribe(self, callback: Callable[[int], None]) -> None:
        """Call `callback(device_id)` after any create/update/delete/credential change/pin."""
        self._subscribers.append(callback)

    def _notify(self, device_ids: Iterable[int]) -> None:
        for device_id in device_ids:
            for callback in self._subscribers:
                try:
                    callback(device_id)
                except Exception:  # a subscriber bug must not undo or hide a committed change
                    log.exception("device change subscriber failed", extra={"device_id": device_id})

    # ---- reading -------------------------------------------------------------------

    async def list_devices(self, *, search: str = "", tag: str = "", limit: int = 1000,
                           offset: int = 0) -> list[Device]:
        return await self.db.read_in_thread(
            lambda conn: queries.list_devices(conn, search=search[:100], tag=tag[:32], limit=limit, offset=offset))

    async def get_device(self, device_id: int) -> Device | None:
        return await self.db.read(lambda conn: queries.get_device(conn, device_id))

    async def require_device(self, device_id: int) -> Device:
        device = await self.get_device(device_id)
        if device is None:
            raise DeviceNotFoundError()
        return device

    async def list_tags(self) -> list[str]:
        return await self.db.read(queries.list_tags)

    async def list_credentials(self) -> list[Credential]:
        return await self.db.read(queries.list_credentials)

    async def get_credential(self, credential_id: int) -> Credential | None:
        return await self.db.read(lambda conn: queries.get_credential(conn, credential_id))

    async def require_credential(self, credential_id: int) -> Credential:
        cred = await self.get_credential(credential_id)
        if cred is None:
            raise CredentialNotFoundError()
        return cred

    # ---- probe side ----------------------------------------------------------------

    async def list_probe_targets(self) -> list[ProbeTarget]:
        """Enabled devices with their secrets opened from the vault."""
        return await self.db.read_in_thread(lambda conn: targets.probe_targets(
            conn, self._key, queries.list_devices(conn, enabled_only=True, limit=1_000_000)))

    async def get_probe_target(self, device_id: int) -> ProbeTarget | None:
        def read(conn: Connection):
            device = queries.get_device(conn, device_id)
            return targets.probe_targets(conn, self._key, [device])[0] if device else None
        return await self.db.read(read)

    # ---- devices -------------------------------------------------------------------

    @staticmethod
    def _checked(data: DeviceCreate) -> DeviceFields:
        fields, errors = validate.device(data)
        if errors:
            raise ValidationError("The device is not valid.", details=errors)
        return fields

    async def _check_new_credential(self, new: CredentialCreate | None, device_name: str) -> _Checked:
        """A credential entered together with a device (named after it unless named), checked on the key pool."""
        if new is None:
            return None
        if not new.name:
            new = msgspec.structs.replace(new, name=device_name or "device")
        clean, facts, errors = await self._key_pool.run(check_credential, new)
        if errors:
            raise ValidationError("The device was not saved.", details={f"new_{k}": v for k, v in errors.items()})
        return clean, facts

    async def create_device(self, data: DeviceCreate, *, actor: Actor, can_approve: bool = False) -> int:
        """Add a device, optionally with a new credential of its own (`data.credential`); ValidationError
        with every problem (nothing is stored then). `can_approve`: the actor may approve credential
        bindings (admin); otherwise an existing credential they did not enter leaves the device awaiting
        approval (devices/binding.py)."""
        fields = self._checked(data)
        checked = await self._check_new_credential(data.credential, fields.name)
        now = self.clock.now()

        def job(conn: Connection):
            if errors := changes.reference_errors(conn, fields, None):
                raise ValidationError("The device was not added.", details=errors)
            stored = changes.attach_credential(conn, self._key, fields, checked, actor=actor, now=now)
            return changes.insert_device(conn, stored, actor=actor, now=now, can_approve=can_approve)

        device_id = await self.db.write(job)
        self._notify([device_id])
        return device_id

    async def update_device(self, device_id: int, change: DeviceUpdate, *, actor: Actor,
                            can_approve: bool = False) -> None:
        """Change the fields `change` sets (the others keep their value); see `create_device`."""
        entered = self._checked(change.applied_to(await self.require_device(device_id)))
        checked = await self._check_new_credential(change.credential, entered.name)
        now = self.clock.now()

        def job(conn: Connection):
            before = changes.require_device(conn, device_id)
            errors = changes.reference_errors(conn, entered, device_id)
            if (before.host_key and entered.preset_fingerprint and not entered.preset_key
                    and entered.preset_fingerprint != before.host_key_fingerprint):
                # never a silent no-op: a pinned key is replaced only by review or by forgetting it first
                errors["host_key"] = ("A different key is already pinned for this device; forget the pinned key "
                                      "(Host key details) first, or enter the full public key line to pin it.")
            if errors:
                raise ValidationError("The device was not saved.", details=errors)
            stored = changes.attach_credential(conn, self._key, entered, checked, actor=actor, now=now)
            changes.update_device(conn, device_id, before, stored, actor=actor, now=now, can_approve=can_approve)

        await self.db.write(job)
        self._notify([device_id])

    async def delete_device(self, device_id: int, *, actor: Actor) -> None:
        now = self.clock.now()

        def job(conn: Connection):
            before = changes.require_device(conn, device_id)
            queries.delete_device(conn, device_id)
            audit.record(conn, ts=now, event=Event.DEVICE_DELETE, actor=actor, target=f"device:{device_id}",
                         details={"name": before.name, "address": before.address})

        await self.db.write(job)
        self._notify([device_id])

    # ---- credentials ---------------------------------------------------------------

    async def create_credential(self, data: CredentialCreate, *, actor: Actor) -> int:
        """Validate and seal a new credential; ValidationError (per field, no secret quoted) if refused."""
        clean, facts, errors = await self._key_pool.run(check_credential, data)
        if errors:
            raise ValidationError("The credential was not saved.", details=errors)
        now = self.clock.now()
        return await self.db.write(lambda conn: changes.insert_credential(conn, self._key, clean, facts,
                                                                         actor=actor, now=now))

    async def update_credential(self, credential_id: int, change: CredentialUpdate, *, actor: Actor) -> None:
        """Rename / change the user name; replace the secret only if a new one is given."""
        before = await self.require_credential(credential_id)
        replace = bool(change.password or change.private_key)
        kind = change.kind or ("key" if change.private_key else "password" if change.password else before.kind)
        data = CredentialCreate(name=before.name if change.name is None else change.name, kind=kind,
                                username=before.username if change.username is None else change.username,
                                password=change.password, private_key=change.private_key,
                                passphrase=change.passphrase)
        clean, facts, errors = await self._key_pool.run(check_credential, data, require_secret=False)
        if errors:
            raise ValidationError("The credential was not saved.", details=errors)
        now = self.clock.now()

        def job(conn: Connection):
            current = queries.get_credential(conn, credential_id)
            if current is None:
                raise CredentialNotFoundError()
            other = queries.get_credential_id_by_name(conn, clean.name)
            if other is not None and other != credential_id:
                raise ValidationError("The credential was not saved.",
                                      details={"name": "A credential with this name already exists."})
            if replace:
                queries.update_credential(conn, credential_id, name=clean.name, username=clean.username,
                                          kind=clean.kind, key_type=facts.key_type, key_bits=facts.bits,
                                          fingerprint=facts.fingerprint, has_passphrase=bool(clean.passphrase),
                                          entered_by=binding.owner_key(actor), now=now)
                queries.update_secret(conn, credential_id, seal_credential(self._key, credential_id, clean))
            elif clean.kind != current.kind:
                field = "password" if clean.kind == "password" else "private_key"
                raise ValidationError("The credential was not saved.",
                                      details={field: "Enter the new secret to change its type."})
            else:
                queries.update_credential_name(conn, credential_id, name=clean.name, username=clean.username, now=now)
            audit.record(conn, ts=now, event=Event.CREDENTIAL_UPDATE, actor=actor, target=f"credential:{credential_id}",
                         details={"name": clean.name, "username": clean.username, "kind": clean.kind,
                                  "replaced": replace, "key_type": facts.key_type if replace else current.key_type,
                                  "fingerprint": facts.fingerprint if replace else current.fingerprint})
            return queries.list_device_ids_for_credential(conn, credential_id)

        self._notify(await self.db.write(job))

    async def delete_credential(self, credential_id: int, *, actor: Actor) -> None:
        now = self.clock.now()

        def job(conn: Connection):
            before = queries.get_credential(conn, credential_id)
            if before is None:
                raise CredentialNotFoundError()
            if before.device_count:
                raise CredentialInUseError(f"This credential is used by {before.device_count} device(s); "
                                           "assign them another credential first.")
            queries.delete_credential(conn, credential_id)
            audit.record(conn, ts=now, event=Event.CREDENTIAL_DELETE, actor=actor, target=f"credential:{credential_id}",
                         details={"name": before.name})

        await self.db.write(job)

    # ---- host keys -----------------------------------------------------------------

    async def pin_host_key(self, device_id: int, key_line: str, *, actor: Actor, mode: PinMode) -> None:
        """Pin a host key, audited with its SHA256 fingerprint.

        "tofu"/"preset" (the probe, on first contact) never replace a pinned key and
        honour a preset fingerprint; "review" (an operator) replaces whatever is pinned."""
        try:
            line = sshkeys.normalise_key_line(key_line)
        except ValueError as exc:
            raise ValidationError(str(exc), details={"host_key": str(exc)}) from None
        fingerprint = sshkeys.fingerprint_of_key_line(line)
        now = self.clock.now()

        def job(conn: Connection):
            device = changes.require_device(conn, device_id)
            if mode != "review":
                if device.host_key is not None:
                    if sshkeys.same_public_key(device.host_key, line):
                        return False
                    raise HostKeyRefusedError("A different host key is already pinned; an operator must review it.")
                if device.preset_fingerprint and device.preset_fingerprint != fingerprint:
                    raise HostKeyRefusedError("The key does not match the preset fingerprint.")
            changes.pin(conn, device_id, line, actor=actor, mode=mode, now=now, previous=device.host_key_fingerprint)
            return True

        if await self.db.write(job):
            self._notify([device_id])

    async def record_host_key_mismatch(self, device_id: int, presented_key_line: str) -> None:
        """Keep the key a device presented for review and mark it "mismatch" (audited once per key)."""
        try:
            line = sshkeys.normalise_key_line(presented_key_line)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None
        fingerprint = sshkeys.fingerprint_of_key_line(line)
        now = self.clock.now()

        def job(conn: Connection):
            device = changes.require_device(conn, device_id)
            if device.host_key_status == "mismatch" and device.presented_fingerprint == fingerprint:
                return  # idempotent while the same wrong key keeps being presented
            queries.update_mismatch(conn, device_id, key_line=line, fingerprint=fingerprint, now=now)
            audit.record(conn, ts=now, event=Event.DEVICE_HOSTKEY_MISMATCH, actor=Actor.system(), outcome="failure",
                         target=f"device:{device_id}",
                         details={"pinned_fingerprint": device.host_key_fingerprint or device.preset_fingerprint,
                                  "presented_fingerprint": fingerprint})

        await self.db.write(job)

    async def trust_presented_key(self, device_id: int, expected_fingerprint: str, *, actor: Actor,
                                  can_approve: bool = False) -> None:
        """Operator review: re-pin the key under review if it is still the one they saw.

        A new pin is a new binding: unless the actor entered the device's credential or is an
        admin, the device then awaits an admin's approval before its secret is sent again."""
        device = await self.require_device(device_id)
        if device.presented_key is None:
            raise ConflictError("There is no new host key waiting for review.")
        if device.presented_fingerprint != expected_fingerprint:
            raise StaleReviewError()
        key_line, now = device.presented_key, self.clock.now()

        def job(conn: Connection):
            current = changes.require_device(conn, device_id)
            if current.presented_fingerprint != expected_fingerprint:  # changed between read and write
                raise StaleReviewError()
            changes.pin(conn, device_id, key_line, actor=actor, mode="review", now=now,
                        previous=current.host_key_fingerprint)
            binding.settle(conn, device_id, credential_id=current.credential_id, sensitive=True,
                           before_status=current.binding_status, actor=actor, can_approve=can_approve, now=now,
                           why="host key re-pinned")

        await self.db.write(job)
        self._notify([device_id])

    async def forget_host_key(self, device_id: int, *, actor: Actor, can_approve: bool = False) -> None:
        """Drop the pin so the next contact pins again (TOFU or preset); audited. Whatever answers
        next would get the secret, so this is a new binding (devices/binding.py)."""
        now = self.clock.now()

        def job(conn: Connection):
            device = changes.require_device(conn, device_id)
            queries.clear_pin(conn, device_id, now)
            audit.record(conn, ts=now, event=Event.DEVICE_HOSTKEY_FORGET, actor=actor, target=f"device:{device_id}",
                         details={"previous_fingerprint": device.host_key_fingerprint})
            binding.settle(conn, device_id, credential_id=device.credential_id, sensitive=True,
                           before_status=device.binding_status, actor=actor, can_approve=can_approve, now=now,
                           why="host key pin forgotten")

        await self.db.write(job)
        self._notify([device_id])

    # ---- CSV import and binding approval -------------------------------------------

    async def import_csv(self, data: bytes, *, actor: Actor, can_approve: bool = False) -> ImportResult:
        """All rows or none (DEV-1); see devices/csvimport.py for the format."""
        result, device_ids = await csvimport.run(self.db, self._key, data, actor=actor, now=self.clock.now(),
                                                 can_approve=can_approve)
        self._notify(device_ids)
        return result

    async def approve_binding(self, device_id: int, *, address: str, port: int, credential_id: int | None,
                              actor: Actor) -> None:
        """An admin approves the binding they reviewed (the web layer checks devices.approve); audited."""
        now = self.clock.now()
        await self.db.write(lambda conn: binding.approve(conn, device_id, address=address, port=port,
                                                         credential_id=credential_id, actor=actor, now=now))
        self._notify([device_id])

