"""Strict checks and normalisation of operator input for devices and credentials.

`device(data)` checks a whole `DeviceCreate` and returns the stored `DeviceFields` with
every problem at once (errors map a field name to a plain sentence). The field checks
below also read text (a form field or a CSV cell: "22", "yes"), so the browser pages and
the CSV import parse their text with the same rules and messages. Messages never quote a
secret.
Addresses are a host name (RFC 1123), an IPv4 address or an IPv6 address, nothing
else: no URLs, ports, user@, spaces or shell metacharacters ever reach the probe.
"""

from __future__ import annotations

import ipaddress
import re

from appliance.crypto import sshkeys
from appliance.devices.models import DeviceCreate, DeviceFields

MIN_POLL, MAX_POLL, DEFAULT_POLL = 10, 86_400, 60
MAX_NAME, MAX_NOTES, MAX_TAGS, MAX_SECRET = 64, 2000, 20, 1024
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_TAG = re.compile(r"^[A-Za-z0-9_.:/-]{1,32}$")
_USERNAME = re.compile(r"^[A-Za-z0-9._@+\\-][A-Za-z0-9._@+\\$-]{0,63}$")
_ZONE = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_TRUE = {"1", "true", "yes", "on", "y"}
_FALSE = {"0", "false", "no", "off", "n", ""}


def address(raw: str) -> str:
    """A normalised host name or IP address; ValueError with a plain message otherwise."""
    text = (raw or "").strip(" \t")  # surrounding blanks only: a line break or NUL is refused below
    if not text:
        raise ValueError("Enter a host name or an IP address.")
    if len(text) > 253:
        raise ValueError("This address is too long.")
    if "://" in text or text.startswith("/"):
        raise ValueError("Enter a host name or IP address, not a URL.")
    if "@" in text:
        raise ValueError("Enter only the address; the user name belongs to the credential.")
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if ":" in text:
        return _ipv6(text)
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        pass
    return _hostname(text)


def _ipv6(text: str) -> str:
    addr, _, zone = text.partition("%")
    try:
        value = ipaddress.IPv6Address(addr)
    except ValueError:
        if re.fullmatch(r"[^:]+:\d+", text):
            raise ValueError("Put the port in the port field, not in the address.") from None
        raise ValueError("This is not a valid IPv6 address.") from None
    if zone and not _ZONE.match(zone):
        raise ValueError("The IPv6 zone (after %) may hold only letters, digits, '.', '_' and '-'.")
    return f"{value.compressed}%{zone}" if zone else value.compressed


def _hostname(text: str) -> str:
    name = text.lower().removesuffix(".")
    if re.search(r"[\s;&|`$<>()'\"\\!*?{}\[\],]", name):
        raise ValueError("An address may not contain spaces or special characters.")
    labels = name.split(".")
    if not all(_LABEL.match(label) for label in labels):
        raise ValueError("This is not a valid host name or IP address.")
    if all(label.isdigit() for label in labels):
        raise ValueError("This is not a valid IPv4 address.")
    return name


def _int(raw, field: str, low: int, high: int, default: int, errors: dict, label: str) -> int:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return default
    if isinstance(raw, bool):
        errors[field] = f"{label} must be a whole number."
        return default
    try:
        value = int(raw.strip()) if isinstance(raw, str) else int(raw)
        if isinstance(raw, float) and raw != value:
            raise ValueError
    except (ValueError, TypeError, OverflowError):
        errors[field] = f"{label} must be a whole number."
        return default
    if not low <= value <= high:
        errors[field] = f"{label} must be between {low} and {high}."
    return value


def boolean(raw, field: str, errors: dict, default: bool) -> bool:
    if raw is None:
        return default
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    errors[field] = "Use yes or no."
    return default


def tags(raw) -> list[str]:
    """Tags from a list or a comma/space separated string; ValueError if one is not allowed."""
    items = raw if isinstance(raw, list) else re.split(r"[,\s]+", str(raw or ""))
    out: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ValueError("Tags must be text.")
        item = item.strip()
        if not item:
            continue
        if not _TAG.match(item):
            raise ValueError("Tags may hold letters, digits and . _ : / - (up to 32 characters each).")
        if item.lower() not in (t.lower() for t in out):
            out.append(item)
    if len(out) > MAX_TAGS:
        raise ValueError(f"At most {MAX_TAGS} tags per device.")
    return out


def name(raw, errors: dict, field: str = "name", label: str = "Name") -> str:
    text = (raw or "").strip() if isinstance(raw, str) else ""
    if not text:
        errors[field] = f"{label} is required."
    elif len(text) > MAX_NAME:
        errors[field] = f"{label} may be at most {MAX_NAME} characters."
    elif _CONTROL.search(text) or "\n" in text or "\t" in text:
        errors[field] = f"{label} may not contain control characters."
    return text


def notes(raw, errors: dict) -> str:
    text = raw if isinstance(raw, str) else ""
    text = text.replace("\r\n", "\n").strip()
    if len(text) > MAX_NOTES:
        errors["notes"] = f"Notes may be at most {MAX_NOTES} characters."
    elif _CONTROL.search(text):
        errors["notes"] = "Notes may not contain control characters."
    return text


def username(raw, errors: dict) -> str:
    text = (raw or "").strip() if isinstance(raw, str) else ""
    if not text:
        errors["username"] = "Enter the SSH user name."
    elif not _USERNAME.match(text):
        errors["username"] = "The user name may hold letters, digits and . _ @ + - $ (up to 64 characters)."
    return text


def secret_text(raw, errors: dict, field: str, label: str, required: bool) -> str | None:
    """A password or passphrase: any printable text; never echoed back in a message."""
    if raw is None or raw == "":
        if required:
            errors[field] = f"Enter the {label}."
        return None
    if not isinstance(raw, str):
        errors[field] = f"The {label} must be text."
        return None
    if len(raw) > MAX_SECRET:
        errors[field] = f"The {label} may be at most {MAX_SECRET} characters."
    elif "\x00" in raw or "\n" in raw or "\r" in raw:
        errors[field] = f"The {label} may not contain NUL or line breaks."
    return raw


def port(raw, errors: dict) -> int:
    return _int(raw, "port", 1, 65535, 22, errors, "The SSH port")


def poll_interval(raw, errors: dict) -> int:
    return _int(raw, "poll_interval", MIN_POLL, MAX_POLL, DEFAULT_POLL, errors, "The poll interval (seconds)")


def host_key_preset(raw, errors: dict) -> tuple[str | None, str | None]:
    """(fingerprint, key line) from an operator entry: a SHA256 fingerprint or a public key line."""
    text = (raw or "").strip() if isinstance(raw, str) else ""
    if not text:
        return None, None
    try:
        if text.upper().startswith("SHA256:"):
            return sshkeys.parse_fingerprint(text), None
        line = sshkeys.normalise_key_line(text)
        return sshkeys.fingerprint_of_key_line(line), line
    except ValueError as exc:
        errors["host_key"] = str(exc)
        return None, None


def split_tags(text: str) -> list[str]:
    """Tags typed as one line: separated by commas and/or white space."""
    return [item for item in re.split(r"[,\s]+", text) if item]


def device(data: DeviceCreate) -> tuple[DeviceFields, dict[str, str]]:
    """The device's fields checked and normalised, and every problem found (empty: valid)."""
    errors: dict[str, str] = {}
    checked_name = name(data.name, errors)
    try:
        checked_address = address(data.address)
    except ValueError as exc:
        errors["address"], checked_address = str(exc), ""
    try:
        checked_tags = tags(data.tags)
    except ValueError as exc:
        errors["tags"], checked_tags = str(exc), []
    fingerprint, key_line = host_key_preset(data.host_key, errors)
    fields = DeviceFields(
        name=checked_name, address=checked_address, port=port(data.port, errors), tags=checked_tags,
        poll_interval=poll_interval(data.poll_interval, errors), enabled=data.enabled,
        notes=notes(data.notes, errors), legacy_algorithms=data.legacy_algorithms, credential_id=data.credential_id,
        preset_fingerprint=fingerprint, preset_key=key_line)
    return fields, errors
