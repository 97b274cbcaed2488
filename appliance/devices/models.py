"""Devices, credentials and host-key pins (no I/O).

`DeviceSecret` is the only record that carries secret material out of the vault: it is
built by `DeviceService` for the probe and is never serialised to any response, log line,
exception or audit record. The inputs that carry one in (`CredentialCreate`,
`CredentialUpdate`, `CredentialFields`) hide it from repr likewise. Everything shown to
users (`Credential`, `Device`) says only whether a secret is set, its type and, for keys,
the key type and SHA256 fingerprint.

Inputs: callers hand `DeviceService` typed structs (`DeviceCreate`, `DeviceUpdate`,
`CredentialCreate`, `CredentialUpdate`); the API decodes its JSON bodies into them, the
browser pages and the CSV import parse their text fields into them. `validate.py` and
`credentials.py` turn them into the checked, normalised `DeviceFields`/`CredentialFields`
that are stored.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

HostKeyStatus = Literal["unpinned", "pinned", "mismatch"]
PinMode = Literal["tofu", "preset", "review"]
CredentialKind = Literal["password", "key"]
BindingStatus = Literal["approved", "pending"]


class DeviceSecret(msgspec.Struct, frozen=True, kw_only=True):
    """What the probe needs to log in. Never serialised to any response or log."""

    username: str
    password: str | None = None
    private_key: str | None = None  # OpenSSH or PEM text
    passphrase: str | None = None

    def __repr__(self) -> str:  # a stray log line or traceback shows no secret
        return f"DeviceSecret(username={self.username!r}, secret=<hidden>)"

    __str__ = __repr__


class ProbeTarget(msgspec.Struct, frozen=True, kw_only=True):
    """One enabled device as the probe sees it, secrets opened from the vault.

    Host keys: `host_key` is the pinned OpenSSH public key line (None = not pinned
    yet). When it is None and `preset_fingerprint` is set, only a key with that
    SHA256 fingerprint may be accepted (pin it with mode "preset"); when both are
    None the first key seen is pinned (mode "tofu"). `check_host_key()` says which.
    """

    device_id: int
    name: str
    address: str
    port: int
    poll_interval: int
    enabled: bool
    legacy_algorithms: bool
    host_key: str | None
    host_key_status: HostKeyStatus
    credential: DeviceSecret | None
    preset_fingerprint: str | None = None  # "SHA256:..." entered by an operator, or None
    # The credential binding awaits an admin's approval: `credential` is then None (never opened
    # from the vault), so nothing secret can reach this address; reachability only.
    binding_pending: bool = False

    def __repr__(self) -> str:
        return (f"ProbeTarget(device_id={self.device_id}, name={self.name!r}, address={self.address!r}, "
                f"port={self.port}, host_key_status={self.host_key_status!r})")

    def check_host_key(self, presented_key_line: str) -> Literal["match", "tofu", "preset", "mismatch"]:
        """What to do with the key a device presented, before any authentication.

        "match": pinned key equals it; "tofu"/"preset": pin it with that mode, then go on;
        "mismatch": do not authenticate, call `record_host_key_mismatch`."""
        from appliance.crypto.sshkeys import fingerprint_of_key_line, same_public_key

        if self.host_key is not None:
            return "match" if same_public_key(self.host_key, presented_key_line) else "mismatch"
        if self.preset_fingerprint is not None:
            try:
                fp = fingerprint_of_key_line(presented_key_line)
            except ValueError:
                return "mismatch"
            return "preset" if fp == self.preset_fingerprint else "mismatch"
        return "tofu"


class Credential(msgspec.Struct, frozen=True, kw_only=True):
    """A stored credential as users see it: never the secret itself."""

    id: int
    name: str
    username: str
    kind: CredentialKind
    key_type: str  # "" for passwords; "ssh-ed25519", "ecdsa-sha2-nistp256", "ssh-rsa" ...
    key_bits: int
    fingerprint: str  # "SHA256:..." of the public half of a key; "" for passwords
    has_passphrase: bool
    device_count: int
    entered_by: str  # "user:<name>" / "system:system" who entered the secret; "" unknown (devices/binding.py)
    created_at: float
    updated_at: float


class CredentialFields(msgspec.Struct, frozen=True, kw_only=True):
    """A credential as checked by `credentials.check_credential`: what is stored and sealed."""

    name: str
    username: str
    kind: CredentialKind
    password: str | None = None
    private_key: str | None = None
    passphrase: str | None = None

    def __repr__(self) -> str:
        return f"CredentialFields(name={self.name!r}, username={self.username!r}, kind={self.kind!r})"

    __str__ = __repr__


class Device(msgspec.Struct, frozen=True, kw_only=True):
    """A device in the inventory, as users see it."""

    id: int
    name: str
    address: str
    port: int
    tags: list[str]
    poll_interval: int
    enabled: bool
    notes: str
    legacy_algorithms: bool
    credential_id: int | None
    credential_name: str | None
    host_key: str | None
    host_key_fingerprint: str | None
    host_key_status: HostKeyStatus
    pinned_at: float | None
    pin_mode: str | None
    preset_fingerprint: str | None
    presented_key: str | None
    presented_fingerprint: str | None
    mismatch_at: float | None
    created_at: float
    updated_at: float
    # credential binding (devices/binding.py): "pending" = nothing secret is sent until an admin approves
    binding_status: BindingStatus = "approved"
    binding_requested_by: str | None = None
    binding_requested_at: float | None = None
    binding_approved_by: str | None = None
    binding_approved_at: float | None = None


class DeviceFields(msgspec.Struct, frozen=True, kw_only=True):
    """A device's own fields as checked and normalised by `validate.device`: what is stored."""

    name: str
    address: str
    port: int = 22
    tags: list[str] = []
    poll_interval: int = 60
    enabled: bool = True
    notes: str = ""
    legacy_algorithms: bool = False
    credential_id: int | None = None
    preset_fingerprint: str | None = None  # SHA256 fingerprint, or None
    preset_key: str | None = None  # a full public key line: pinned directly (mode "preset")


# ---- inputs: what callers hand DeviceService (the API decodes its JSON bodies straight into these) --------
# Bounds on decode keep hostile bodies small; the service checks every value again (validate.py).
Text = Annotated[str, msgspec.Meta(max_length=4096)]
KeyText = Annotated[str, msgspec.Meta(max_length=32_768)]  # a private key (OpenSSH or PEM)
Tag = Annotated[str, msgspec.Meta(max_length=64)]
RowId = Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]  # an SQLite INTEGER id


class CredentialCreate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A new credential: a `password`, or a `private_key` (OpenSSH or PEM) with an optional `passphrase`.
    `kind` says which of the two; left out, it follows the secret given."""

    name: Text = ""
    username: Text = ""
    kind: CredentialKind | None = None
    password: Text | None = None
    private_key: KeyText | None = None
    passphrase: Text | None = None

    def __repr__(self) -> str:  # a stray log line or traceback shows no secret
        return f"CredentialCreate(name={self.name!r}, username={self.username!r}, kind={self.kind!r})"

    __str__ = __repr__


class CredentialUpdate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A change to a credential: a field left out (or null) keeps its value; the secret is replaced
    only when a new `password` or `private_key` is given."""

    name: Text | None = None
    username: Text | None = None
    kind: CredentialKind | None = None
    password: Text | None = None
    private_key: KeyText | None = None
    passphrase: Text | None = None

    def __repr__(self) -> str:
        return f"CredentialUpdate(name={self.name!r}, username={self.username!r}, kind={self.kind!r})"

    __str__ = __repr__


class DeviceCreate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A device to add. `host_key`: a SHA256 fingerprint or a public key line (preset pin); `credential`
    creates a new credential for this device (named after it unless named) instead of `credential_id`."""

    name: Text = ""
    address: Text = ""
    port: int = 22
    tags: list[Tag] = []
    poll_interval: int = 60
    enabled: bool = True
    notes: Text = ""
    legacy_algorithms: bool = False
    credential_id: RowId | None = None
    host_key: Text = ""
    credential: CredentialCreate | None = None


class DeviceUpdate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A change to a device: a field left out (or null) keeps its value, except `credential_id`, where
    null removes the credential. `host_key` "" removes a preset fingerprint (a pinned key changes only
    by review); `credential` creates a new credential for this device."""

    name: Text | None = None
    address: Text | None = None
    port: int | None = None
    tags: list[Tag] | None = None
    poll_interval: int | None = None
    enabled: bool | None = None
    notes: Text | None = None
    legacy_algorithms: bool | None = None
    credential_id: RowId | None | msgspec.UnsetType = msgspec.UNSET
    host_key: Text | None = None
    credential: CredentialCreate | None = None

    def applied_to(self, device: Device) -> DeviceCreate:
        """The whole device after this change (without `credential`, which the service adds)."""
        current = DeviceCreate(name=device.name, address=device.address, port=device.port, tags=device.tags,
                               poll_interval=device.poll_interval, enabled=device.enabled, notes=device.notes,
                               legacy_algorithms=device.legacy_algorithms, credential_id=device.credential_id,
                               host_key=device.preset_fingerprint or "")
        changed = {f: getattr(self, f) for f in ("name", "address", "port", "tags", "poll_interval", "enabled",
                                                  "notes", "legacy_algorithms", "host_key")
                   if getattr(self, f) is not None}
        if self.credential_id is not msgspec.UNSET:
            changed["credential_id"] = self.credential_id
        return msgspec.structs.replace(current, **changed)


class ImportRowError(msgspec.Struct, frozen=True, kw_only=True):
    line: int
    errors: dict[str, str]


class ImportResult(msgspec.Struct, frozen=True, kw_only=True):
    """Outcome of a CSV import: all rows imported, or none and the reasons per row."""

    ok: bool
    rows: int
    imported: int
    errors: list[ImportRowError]
    message: str = ""
