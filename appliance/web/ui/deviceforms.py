"""The device and credential forms of the browser pages, read into the devices capability's inputs.

Form fields are text; here they become the typed values of `DeviceCreate`, `DeviceUpdate`,
`CredentialCreate` and `CredentialUpdate` (a port "22" an int, a ticked checkbox True,
"prod, web" two tags, the credential choice an id, "new" or none). What the values may be is
decided by the devices capability (devices/validate.py), with the same messages as for the
API and the CSV import. Secrets typed into a form are never put back into a page.
"""

from __future__ import annotations

from typing import Any

from appliance.devices import validate
from appliance.devices.models import (
    CredentialCreate,
    CredentialKind,
    CredentialUpdate,
    Device,
    DeviceCreate,
    DeviceUpdate,
)

NEW_CREDENTIAL = "new"  # the credential choice that creates one from the new_* fields
SECRET_FIELDS = ("password", "private_key", "passphrase", "new_password", "new_private_key", "new_passphrase")
BLANK_DEVICE = {"port": "22", "poll_interval": "60", "enabled": "on", "credential_id": ""}


def _device_values(form: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The device fields as typed values, and the fields whose text is no value of their type."""
    errors: dict[str, str] = {}
    values: dict[str, Any] = {
        "name": form.get("name", ""), "address": form.get("address", ""),
        "port": validate.port(form.get("port", ""), errors),
        "tags": validate.split_tags(form.get("tags", "")),
        "poll_interval": validate.poll_interval(form.get("poll_interval", ""), errors),
        "enabled": bool(form.get("enabled")),  # an unticked checkbox is simply absent
        "notes": form.get("notes", ""), "legacy_algorithms": bool(form.get("legacy_algorithms")),
        "host_key": form.get("host_key", ""), "credential_id": None, "credential": None}
    choice = form.get("credential_id", "").strip()
    if choice == NEW_CREDENTIAL:
        values["credential"] = _new_credential(form)
    elif choice not in ("", "none"):
        try:
            values["credential_id"] = int(choice)
        except ValueError:
            errors["credential_id"] = "Choose a credential from the list."
    return values, errors


def _new_credential(form: dict[str, str]) -> CredentialCreate:
    """The "new credential" part of the device form; chosen but empty, it gets inline errors (not none)."""
    kind: CredentialKind = "key" if form.get("new_kind") == "key" else "password"
    return CredentialCreate(name=form.get("name", "").strip() or "device", username=form.get("new_username", ""),
                            kind=kind, password=form.get("new_password") if kind == "password" else None,
                            private_key=form.get("new_private_key") if kind == "key" else None,
                            passphrase=form.get("new_passphrase") if kind == "key" else None)


def device_create(form: dict[str, str]) -> tuple[DeviceCreate, dict[str, str]]:
    """The add-device form as a DeviceCreate, and every problem the form shows at once (empty: send it)."""
    values, errors = _device_values(form)
    data = DeviceCreate(**values)
    if errors:  # the service is not asked: show the value problems found so far together with these
        errors = {**validate.device(data)[1], **errors}
    return data, errors


def device_update(form: dict[str, str]) -> tuple[DeviceUpdate, dict[str, str]]:
    """The edit form sets every field (an empty credential choice removes the credential)."""
    values, errors = _device_values(form)
    if errors:
        errors = {**validate.device(DeviceCreate(**values))[1], **errors}
    return DeviceUpdate(**values), errors


def device_form_values(device: Device | None) -> dict[str, str]:
    """What the edit form shows for a device (the add form's defaults for None)."""
    if device is None:
        return dict(BLANK_DEVICE)
    return {"name": device.name, "address": device.address, "port": str(device.port), "tags": ", ".join(device.tags),
            "poll_interval": str(device.poll_interval), "notes": device.notes,
            "enabled": "on" if device.enabled else "", "legacy_algorithms": "on" if device.legacy_algorithms else "",
            "credential_id": str(device.credential_id or ""), "host_key": device.preset_fingerprint or ""}


def echo(form: dict[str, str]) -> dict[str, str]:
    """What may be shown again in a refused form: never a password, key or passphrase."""
    return {k: v for k, v in form.items() if k not in SECRET_FIELDS and k != "_csrf"}


def _credential_fields(form: dict[str, str]) -> dict[str, Any]:
    kind: CredentialKind = "key" if form.get("kind") == "key" else "password"
    return {"name": form.get("name", ""), "username": form.get("username", ""), "kind": kind,
            "password": (form.get("password") or None) if kind == "password" else None,
            "private_key": (form.get("private_key") or None) if kind == "key" else None,
            "passphrase": (form.get("passphrase") or None) if kind == "key" else None}


def credential_create(form: dict[str, str]) -> CredentialCreate:
    return CredentialCreate(**_credential_fields(form))


def credential_update(form: dict[str, str]) -> CredentialUpdate:
    """Every field as shown; the secret only if one was typed (left empty, it is kept)."""
    return CredentialUpdate(**_credential_fields(form))


def credential_form_values(form: dict[str, str]) -> dict[str, str]:
    return {k: form.get(k, "") for k in ("name", "username", "kind")}
