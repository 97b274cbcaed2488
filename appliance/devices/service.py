"""DeviceService: inventory, the credential vault and host-key pins (DEV-1..4, STORE-3).

Invariants (what must never happen):
- a secret (password, private key, passphrase) appears in a response, log line,
  exception message or audit record: only `list_probe_targets`/`get_probe_target`
  open the vault, for the probe, and `DeviceSecret` hides itself from repr;
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
from collections.abc import Awaitable, Callable
from typing import Literal

import msgspec

from appliance.audit import log as audit
from appliance.audit.events import Event
from appliance.audit.models import Actor
from appliance.clock import Clock
from appliance.crypto import sshkeys, vault
from appliance.crypto.keypool import KeyPool
from appliance.devices import binding, queries, validate
from appliance.devices.credentials import KeyFacts, check_credential, open_credential, seal_credential
from appliance.devices.errors import (CredentialInUseError, CredentialNotFoundError, DeviceNotFoundError,
                                      HostKeyRefusedError, StaleReviewError)
from appliance.devices.models import (Credential, CredentialInput, Device, DeviceInput, DeviceSecret, ImportResult,
                                      ProbeTarget)
from appliance.errors import ConflictError, ValidationError

__all__ = ["DeviceService", "CredentialInUseError", "CredentialNotFoundError", "DeviceNotFoundError",
           "HostKeyRefusedError", "StaleReviewError", "check_credential", "open_credential"]

log = logging.getLogger(__name__)



def _require_device(conn, device_id: int):
    """The device row, or DeviceNotFoundError (used inside write jobs)."""
    device = queries.get_device(conn, device_id)
    if device is None:
        raise DeviceNotFoundError()
    return device

class DeviceService:
    def __init__(self, db, vault_key: bytes, clock: Clock, key_pool: KeyPool | None = None) -> None:
        self.db = db
        self._key = vault_key
        self.clock = clock
        # Parsing a private key derives from its passphrase: on a small bounded pool, never the
        # default executor (issue 11, finding 8). The app shares one with certificate imports.
        self._key_pool = key_pool or KeyPool()
        self._subscribers: list[Callable[[int], None]] = []
        # Set by the probe: async fn(device_ids) -> {device_id: status dict} for the device list's
        # status columns (templates/devices/_status_cell.html). None: the list shows no probe status.
        self.status_provider: Callable[[list[int]], Awaitable[dict[int, dict]]] | None = None

    # ---- change notification -------------------------------------------------------

    def subscribe(self, callback: Callable[[int], None]) -> None:
        """Call `callback(device_id)` after any create/update/delete/credential change/pin."""
        self._subscribers.append(callback)

    def _notify(self, device_ids) -> None:
        for device_id in device_ids:
            for callback in self._subscribers:
                try:
                    callback(device_id)
                except Exception:  # a subscriber bug must not undo or hide a committed change
                    log.exception("device change subscriber failed", extra={"device_id": device_id})

    # ---- reading -------------------------------------------------------------------

    async def list_devices(self, *, search: str = "", tag: str = "", limit: int = 1000, offset: int = 0) -> list[Device]:
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

    def _targets(self, conn, devices: list[Device]) -> list[ProbeTarget]:
        opened: dict[int, DeviceSecret | None] = {}
        out = []
        for d in devices:
            pending = d.credential_id is not None and d.binding_status != "approved"
            if d.credential_id is not None and not pending and d.credential_id not in opened:
                opened[d.credential_id] = self._open(conn, d.credential_id)
            out.append(ProbeTarget(
                device_id=d.id, name=d.name, address=d.address, port=d.port, poll_interval=d.poll_interval,
                enabled=d.enabled, legacy_algorithms=d.legacy_algorithms, host_key=d.host_key,
                host_key_status=d.host_key_status, preset_fingerprint=d.preset_fingerprint,
                binding_pending=pending,  # the vault is not even opened for it
                credential=None if pending or d.credential_id is None else opened.get(d.credential_id)))
        return out

    def _open(self, conn, credential_id: int) -> DeviceSecret | None:
        row = queries.get_sealed_secret(conn, credential_id)
        if row is None:
            return None
        try:
            return open_credential(self._key, credential_id, row[0], row[1])
        except vault.VaultError:
            log.error("sealed credential does not open", extra={"credential_id": credential_id})
            return None

    async def list_probe_targets(self) -> list[ProbeTarget]:
        """Enabled devices with their secrets opened from the vault."""
        return await self.db.read_in_thread(
            lambda conn: self._targets(conn, queries.list_devices(conn, enabled_only=True, limit=1_000_000)))

    async def get_probe_target(self, device_id: int) -> ProbeTarget | None:
        def read(conn):
            device = queries.get_device(conn, device_id)
            return self._targets(conn, [device])[0] if device else None
        return await self.db.read(read)

    # ---- devices -------------------------------------------------------------------

    @staticmethod
    def parse_device(form: dict) -> tuple[DeviceInput, dict[str, str]]:
        """Normalise a device form / JSON body / CSV row; errors per field."""
        errors: dict[str, str] = {}
        name = validate.name(form.get("name"), errors)
        try:
            address = validate.address(form.get("address") if isinstance(form.get("address"), str) else "")
        except ValueError as exc:
            errors["address"], address = str(exc), ""
        try:
            tags = validate.tags(form.get("tags") or "")
        except ValueError as exc:
            errors["tags"], tags = str(exc), []
        credential_id = form.get("credential_id")
        if credential_id in (None, "", "none"):
            credential_id = None
        else:
            try:
                credential_id = int(credential_id)
            except (TypeError, ValueError):
                errors["credential_id"], credential_id = "Choose a credential from the list.", None
        fingerprint, key_line = validate.host_key_preset(form.get("host_key"), errors)
        data = DeviceInput(
            name=name, address=address, port=validate.port(form.get("port"), errors), tags=tags,
            poll_interval=validate.poll_interval(form.get("poll_interval"), errors),
            enabled=validate.boolean(form.get("enabled"), "enabled", errors, True),
            notes=validate.notes(form.get("notes"), errors),
            legacy_algorithms=validate.boolean(form.get("legacy_algorithms"), "legacy_algorithms", errors, False),
            credential_id=credential_id, preset_fingerprint=fingerprint, preset_key=key_line)
        return data, errors

    def _check_refs(self, conn, data: DeviceInput, device_id: int | None) -> dict[str, str]:
        errors = {}
        other = queries.get_device_id_by_name(conn, data.name)
        if other is not None and other != device_id:
            errors["name"] = "A device with this name already exists."
        if data.credential_id is not None and queries.get_credential(conn, data.credential_id) is None:
            errors["credential_id"] = "That credential does not exist (any more)."
        return errors

    def _details(self, data: DeviceInput) -> dict:
        return {"name": data.name, "address": data.address, "port": data.port, "tags": data.tags,
                "poll_interval": data.poll_interval, "enabled": data.enabled,
                "legacy_algorithms": data.legacy_algorithms, "cred_id": data.credential_id,
                "preset_fingerprint": data.preset_fingerprint}

    def _insert(self, conn, data: DeviceInput, actor: Actor, now: float, *, can_approve: bool,
                action: Event = Event.DEVICE_CREATE) -> int:
        device_id = queries.insert_device(
            conn, name=data.name, address=data.address, port=data.port, poll_interval=data.poll_interval,
            enabled=data.enabled, notes=data.notes, legacy_algorithms=data.legacy_algorithms,
            credential_id=data.credential_id, preset_fingerprint=data.preset_fingerprint, now=now)
        queries.replace_tags(conn, device_id, data.tags)
        if action:
            audit.record(conn, ts=now, event=action, actor=actor, target=f"device:{device_id}",
                         details=self._details(data))
        if data.preset_key:
            self._pin(conn, device_id, data.preset_key, actor, "preset", now, previous=None)
        binding.settle(conn, device_id, credential_id=data.credential_id, sensitive=data.credential_id is not None,
                       before_status="approved", actor=actor, can_approve=can_approve, now=now,
                       why="new device with a stored credential")
        return device_id

    async def _check_new_credential(self, new_credential: CredentialInput | None):
        if new_credential is None:
            return None
        clean, facts, errors = await self._key_pool.run(check_credential, new_credential)
        if errors:
            raise ValidationError("The device was not saved.", details={f"new_{k}": v for k, v in errors.items()})
        return clean, facts

    def _attach_credential(self, conn, data: DeviceInput, checked, actor: Actor, now: float) -> DeviceInput:
        """Store a credential entered together with the device (named after it) and point the device at it."""
        if checked is None:
            return data
        clean, facts = checked
        name = clean.name
        for n in range(2, 50):
            if queries.get_credential_id_by_name(conn, name) is None:
                break
            name = f"{clean.name} ({n})"
        cred_id = self._insert_credential(conn, CredentialInput(**{**msgspec.structs.asdict(clean), "name": name}),
                                          facts, actor, now)
        return msgspec.structs.replace(data, credential_id=cred_id)

    async def create_device(self, data: DeviceInput, *, actor: Actor, can_approve: bool = False,
                            new_credential: CredentialInput | None = None) -> int:
        """Add a device (already parsed by `parse_device`), optionally with a new credential of its own;
        ValidationError on a taken name (nothing is stored then). `can_approve`: the actor may approve
        credential bindings (admin); otherwise an existing credential they did not enter leaves the
        device awaiting approval (devices/binding.py)."""
        checked = await self._check_new_credential(new_credential)
        now = self.clock.now()

        def job(conn):
            if errors := self._check_refs(conn, data, None):
                raise ValidationError("The device was not added.", details=errors)
            return self._insert(conn, self._attach_credential(conn, data, checked, actor, now), actor, now,
                                can_approve=can_approve)

        device_id = await self.db.write(job)
        self._notify([device_id])
        return device_id

    async def update_device(self, device_id: int, data: DeviceInput, *, actor: Actor, can_approve: bool = False,
                            new_credential: CredentialInput | None = None) -> None:
        checked = await self._check_new_credential(new_credential)
        now = self.clock.now()
        entered = data

        def job(conn):
            before = _require_device(conn, device_id)
            errors = self._check_refs(conn, entered, device_id)
            if (before.host_key and entered.preset_fingerprint and not entered.preset_key
                    and entered.preset_fingerprint != before.host_key_fingerprint):
                # never a silent no-op: a pinned key is replaced only by review or by forgetting it first
                errors["host_key"] = ("A different key is already pinned for this device; forget the pinned key "
                                      "(Host key details) first, or enter the full public key line to pin it.")
            if errors:
                raise ValidationError("The device was not saved.", details=errors)
            data = self._attach_credential(conn, entered, checked, actor, now)
            queries.update_device(conn, device_id, name=data.name, address=data.address, port=data.port,
                                  poll_interval=data.poll_interval, enabled=data.enabled, notes=data.notes,
                                  legacy_algorithms=data.legacy_algorithms, credential_id=data.credential_id,
                                  preset_fingerprint=data.preset_fingerprint, now=now)
            queries.replace_tags(conn, device_id, data.tags)
            changed = sorted(k for k, v in self._details(data).items()
                             if v != {"cred_id": before.credential_id, "tags": before.tags}.get(k, getattr(before, k, None)))
            audit.record(conn, ts=now, event=Event.DEVICE_UPDATE, actor=actor, target=f"device:{device_id}",
                         details={**self._details(data), "changed": changed})
            repin = bool(data.preset_key and not sshkeys.same_public_key(data.preset_key, before.host_key or ""))
            if repin:
                self._pin(conn, device_id, data.preset_key, actor, "preset", now, previous=before.host_key_fingerprint)
            moved = [k for k in ("credential_id", "address", "port", "preset_fingerprint")
                     if getattr(data, k) != getattr(before, k)] + (["host_key"] if repin else [])
            binding.settle(conn, device_id, credential_id=data.credential_id, sensitive=bool(moved),
                           before_status=before.binding_status, actor=actor, can_approve=can_approve, now=now,
                           why="changed: " + ", ".join(moved))

        await self.db.write(job)
        self._notify([device_id])

    async def delete_device(self, device_id: int, *, actor: Actor) -> None:
        now = self.clock.now()

        def job(conn):
            before = _require_device(conn, device_id)
            queries.delete_device(conn, device_id)
            audit.record(conn, ts=now, event=Event.DEVICE_DELETE, actor=actor, target=f"device:{device_id}",
                         details={"name": before.name, "address": before.address})

        await self.db.write(job)
        self._notify([device_id])

    # ---- credentials ---------------------------------------------------------------

    async def create_credential(self, data: CredentialInput, *, actor: Actor) -> int:
        """Validate and seal a new credential; ValidationError (per field, no secret quoted) if refused."""
        clean, facts, errors = await self._key_pool.run(check_credential, data)
        if errors:
            raise ValidationError("The credential was not saved.", details=errors)
        now = self.clock.now()

        def job(conn):
            return self._insert_credential(conn, clean, facts, actor, now)

        return await self.db.write(job)

    def _insert_credential(self, conn, clean: CredentialInput, facts: KeyFacts, actor: Actor, now: float) -> int:
        if queries.get_credential_id_by_name(conn, clean.name) is not None:
            raise ValidationError("The credential was not saved.",
                                  details={"name": "A credential with this name already exists."})
        cred_id = queries.insert_credential(conn, name=clean.name, username=clean.username, kind=clean.kind,
                                            key_type=facts.key_type, key_bits=facts.bits,
                                            fingerprint=facts.fingerprint, has_passphrase=bool(clean.passphrase),
                                            entered_by=binding.owner_key(actor), now=now)
        queries.update_secret(conn, cred_id, seal_credential(self._key, cred_id, clean))
        audit.record(conn, ts=now, event=Event.CREDENTIAL_CREATE, actor=actor, target=f"credential:{cred_id}",
                     details={"name": clean.name, "username": clean.username, "kind": clean.kind,
                              "key_type": facts.key_type, "fingerprint": facts.fingerprint})
        return cred_id

    async def update_credential(self, credential_id: int, data: CredentialInput, *, actor: Actor) -> None:
        """Rename / change the user name; replace the secret only if a new one is given."""
        replace = bool(data.password or data.private_key)
        clean, facts, errors = await self._key_pool.run(check_credential, data, require_secret=False)
        if errors:
            raise ValidationError("The credential was not saved.", details=errors)
        now = self.clock.now()

        def job(conn):
            before = queries.get_credential(conn, credential_id)
            if before is None:
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
            elif clean.kind != before.kind:
                raise ValidationError("The credential was not saved.", details={
                    "password" if clean.kind == "password" else "private_key": "Enter the new secret to change its type."})
            else:
                queries.update_credential_name(conn, credential_id, name=clean.name, username=clean.username, now=now)
            audit.record(conn, ts=now, event=Event.CREDENTIAL_UPDATE, actor=actor, target=f"credential:{credential_id}",
                         details={"name": clean.name, "username": clean.username, "kind": clean.kind,
                                  "replaced": replace, "key_type": facts.key_type if replace else before.key_type,
                                  "fingerprint": facts.fingerprint if replace else before.fingerprint})
            return queries.list_device_ids_for_credential(conn, credential_id)

        self._notify(await self.db.write(job))

    async def delete_credential(self, credential_id: int, *, actor: Actor) -> None:
        now = self.clock.now()

        def job(conn):
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

    def _pin(self, conn, device_id: int, key_line: str, actor: Actor, mode: str, now: float,
             previous: str | None) -> str:
        fingerprint = sshkeys.fingerprint_of_key_line(key_line)
        queries.update_pin(conn, device_id, key_line=key_line, fingerprint=fingerprint, mode=mode, now=now)
        action = {"tofu": Event.DEVICE_HOSTKEY_PIN, "preset": Event.DEVICE_HOSTKEY_PRESET, "review": Event.DEVICE_HOSTKEY_REPIN}[mode]
        audit.record(conn, ts=now, event=action, actor=actor, target=f"device:{device_id}",
                     details={"fingerprint": fingerprint, "previous_fingerprint": previous, "mode": mode})
        return fingerprint

    async def pin_host_key(self, device_id: int, key_line: str, *, actor: Actor,
                           mode: Literal["tofu", "preset", "review"]) -> None:
        """Pin a host key, audited with its SHA256 fingerprint.

        "tofu"/"preset" (the probe, on first contact) never replace a pinned key and
        honour a preset fingerprint; "review" (an operator) replaces whatever is pinned."""
        try:
            line = sshkeys.normalise_key_line(key_line)
        except ValueError as exc:
            raise ValidationError(str(exc), details={"host_key": str(exc)}) from None
        fingerprint = sshkeys.fingerprint_of_key_line(line)
        now = self.clock.now()

        def job(conn):
            device = _require_device(conn, device_id)
            if mode != "review":
                if device.host_key is not None:
                    if sshkeys.same_public_key(device.host_key, line):
                        return False
                    raise HostKeyRefusedError("A different host key is already pinned; an operator must review it.")
                if device.preset_fingerprint and device.preset_fingerprint != fingerprint:
                    raise HostKeyRefusedError("The key does not match the preset fingerprint.")
            self._pin(conn, device_id, line, actor, mode, now, previous=device.host_key_fingerprint)
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

        def job(conn):
            device = _require_device(conn, device_id)
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
        await self._repin_checked(device_id, device.presented_key, expected_fingerprint, actor, can_approve)

    async def _repin_checked(self, device_id: int, key_line: str, fingerprint: str, actor: Actor,
                             can_approve: bool) -> None:
        now = self.clock.now()

        def job(conn):
            current = _require_device(conn, device_id)
            if current.presented_fingerprint != fingerprint:  # changed between read and write
                raise StaleReviewError()
            self._pin(conn, device_id, key_line, actor, "review", now, previous=current.host_key_fingerprint)
            binding.settle(conn, device_id, credential_id=current.credential_id, sensitive=True,
                           before_status=current.binding_status, actor=actor, can_approve=can_approve, now=now,
                           why="host key re-pinned")

        await self.db.write(job)
        self._notify([device_id])

    async def forget_host_key(self, device_id: int, *, actor: Actor, can_approve: bool = False) -> None:
        """Drop the pin so the next contact pins again (TOFU or preset); audited. Whatever answers
        next would get the secret, so this is a new binding (devices/binding.py)."""
        now = self.clock.now()

        def job(conn):
            device = _require_device(conn, device_id)
            queries.clear_pin(conn, device_id, now)
            audit.record(conn, ts=now, event=Event.DEVICE_HOSTKEY_FORGET, actor=actor, target=f"device:{device_id}",
                         details={"previous_fingerprint": device.host_key_fingerprint})
            binding.settle(conn, device_id, credential_id=device.credential_id, sensitive=True,
                           before_status=device.binding_status, actor=actor, can_approve=can_approve, now=now,
                           why="host key pin forgotten")

        await self.db.write(job)
        self._notify([device_id])

    # ---- CSV import ----------------------------------------------------------------

    async def import_csv(self, data: bytes, *, actor: Actor, can_approve: bool = False) -> ImportResult:
        """All rows or none (DEV-1); see devices/csvimport.py for the format."""
        from appliance.devices import csvimport

        return await csvimport.run(self, data, actor, can_approve)

    async def approve_binding(self, device_id: int, *, address: str, port: int, credential_id: int | None,
                              actor: Actor) -> None:
        """An admin approves the binding they reviewed (the web layer checks devices.approve); audited."""
        now = self.clock.now()
        await self.db.write(lambda conn: binding.approve(conn, device_id, address=address, port=port,
                                                         credential_id=credential_id, actor=actor, now=now))
        self._notify([device_id])
