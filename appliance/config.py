"""Configuration: TOML file -> frozen msgspec Structs.

Invariants:
- Every field has a `description` (its documentation) and appears, commented, in
  `config.example.toml`; tests/test_config.py enforces both.
- An unknown key or an invalid value stops startup with the key's path and the reason.
- Secrets never live in the TOML file; they are files under the data directory.
- Nothing here reads the environment; `load()` is called once by the CLI.
"""

from __future__ import annotations

import ipaddress
import tomllib
from pathlib import Path
from typing import Annotated, Literal

import msgspec

from appliance.errors import ConfigError


def _doc(text: str, **constraints) -> msgspec.Meta:
    return msgspec.Meta(description=text, **constraints)


class _Section(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class WebConfig(_Section, frozen=True):
    """[web]: the HTTPS listener and browser protections."""

    listen_host: Annotated[str, _doc("Address to listen on; 0.0.0.0 for all IPv4, :: for all IPv6.")] = "0.0.0.0"
    listen_port: Annotated[int, _doc("HTTPS port.", ge=1, le=65535)] = 8443
    hostname: Annotated[str, _doc(
        "Name users type in the browser; goes into the certificate and the Host allow list. Empty: the machine's "
        "hostname.", max_length=253)] = ""
    allowed_hosts: Annotated[list[str], _doc(
        "Extra Host header values accepted besides hostname, localhost and the machine's addresses.")] = []
    max_body_bytes: Annotated[int, _doc(
        "Largest request body accepted, in bytes; larger ones get 413.", ge=1024, le=64 * 1024 * 1024)] = 1024 * 1024
    trusted_proxies: Annotated[list[str], _doc(
        "Reverse proxies (IP or CIDR) whose X-Forwarded-For is believed. Empty: the socket peer is the client.")] = []
    tls_handshake_timeout: Annotated[float, _doc(
        "Seconds a new connection has to complete its TLS handshake; then it is closed.", ge=1, le=60)] = 10.0
    header_timeout: Annotated[float, _doc(
        "Seconds a connection has to send a complete request head (request line and headers), counted from the "
        "handshake or from the previous response; then it is closed.", ge=1, le=120)] = 15.0
    max_header_bytes: Annotated[int, _doc(
        "Largest request head (request line and headers) in bytes; larger ones get 431 and the connection is closed.",
        ge=8192, le=65536)] = 32768
    max_header_count: Annotated[int, _doc(
        "Most header fields in one request; more get 431 and the connection is closed.", ge=16, le=500)] = 100
    max_url_bytes: Annotated[int, _doc(
        "Longest request target (path and query) in bytes; longer ones get 414 and the connection is closed.",
        ge=1024, le=16384)] = 8192
    max_connections: Annotated[int, _doc(
        "Open connections at once, all addresses together; more are closed as soon as they are accepted. Lowered at "
        "start to fit the open-file limit (minus 256 kept for the database, logs and SSH).", ge=16, le=1048576)] = 4096
    max_connections_per_address: Annotated[int, _doc(
        "Open connections at once from one client address (trusted_proxies are exempt); more are closed as soon as they"
        " are accepted.", ge=1, le=65536)] = 64

    def __post_init__(self) -> None:
        if self.max_url_bytes > self.max_header_bytes:
            raise ValueError("max_url_bytes must not exceed max_header_bytes (the request line is part of the head)")
        for i, item in enumerate(self.trusted_proxies):
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"trusted_proxies[{i}] is not an IP address or CIDR: {item!r}") from None


class TLSConfig(_Section, frozen=True):
    """[tls]: certificates and protocol profile."""

    profile: Annotated[Literal["intermediate", "modern"], _doc(
        "Mozilla profile: intermediate (TLS 1.2 + 1.3, ECDHE with AEAD only) or modern (TLS 1.3 "
        "only).")] = "intermediate"
    leaf_days: Annotated[int, _doc("Validity of the generated server certificate in days.", ge=7, le=397)] = 90
    renew_before_days: Annotated[int, _doc(
        "Renew the generated server certificate this many days before it expires.", ge=1, le=180)] = 30
    ca_days: Annotated[int, _doc("Validity of the generated local CA in days.", ge=365, le=7300)] = 3650

    def __post_init__(self) -> None:
        if self.renew_before_days >= self.leaf_days:
            raise ValueError("renew_before_days must be smaller than leaf_days")


class StoreConfig(_Section, frozen=True):
    """[store]: the encrypted datastore."""

    data_dir: Annotated[str, _doc(
        "Directory holding the database, keys, certificates and setup code (mode 0700). `serve --data-dir` overrides "
        "it.")] = "/var/lib/outpost"
    key_source: Annotated[Literal["file", "passphrase"], _doc(
        "Where the database key comes from: file = keys/db.key (raw 256-bit key, mode 0600); passphrase = keys/db.key "
        "holds the key wrapped by an operator passphrase (argon2id + AES-256-GCM), asked on the console at start or "
        "read from the systemd credential outpost-passphrase. Convert with `outpost rekey --key-source`.")] = "file"
    readers: Annotated[int, _doc(
        "Number of pooled read connections used by background work (exports, reports).", ge=1, le=32)] = 4


class BackupConfig(_Section, frozen=True):
    """[backup]: scheduled encrypted backups (UPD-5). Disabled while directory is empty."""

    directory: Annotated[str, _doc(
        "Directory scheduled backups are written into (one .opbk file each). Empty: no scheduled backups.")] = ""
    interval_hours: Annotated[int, _doc("Hours between scheduled backups.", ge=1, le=8760)] = 24
    keep: Annotated[int, _doc("Scheduled backups kept in the directory; older ones are deleted.", ge=1, le=1000)] = 7
    passphrase_file: Annotated[str, _doc(
        "File (mode 0600) holding the passphrase scheduled backups are sealed with (at least 12 characters, like every "
        "backup passphrase). Required when directory is set.")] = ""

    def __post_init__(self) -> None:
        if self.directory and not self.passphrase_file:
            raise ValueError("passphrase_file is required when directory is set")


# The security-policy fields: [auth] gives their defaults and Settings -> Security policy changes
# them at run time. auth/securitypolicy.py reads its bounds and choices from these types (and
# SecurityPolicy its defaults from AuthConfig), so each bound and default is written once.
SessionIdleMinutes = Annotated[int, _doc("Sign a browser session out after this many minutes without a request.",
                                         ge=5, le=60)]
LockoutThreshold = Annotated[int, _doc("Consecutive failed logins that lock an account.", ge=3, le=100)]
LockoutMinutes = Annotated[int, _doc("How long a locked account stays locked (an admin can unlock sooner).",
                                     ge=1, le=1440)]
PasswordMinLength = Annotated[int, _doc("Shortest password accepted.", ge=8, le=128)]
PasswordHistory = Annotated[int, _doc("A new password may not equal any of the last N (0 turns the check off). "
                                      "Default for Settings -> Security policy.", ge=0, le=24)]
RequireComposition = Annotated[bool, _doc("Require a lower-case letter, an upper-case letter, a digit and a symbol in "
                                          "passwords (off: length and the blocklist matter more). Default for "
                                          "Settings -> Security policy.")]
TotpPolicy = Annotated[Literal["all", "admins", "optional"], _doc(
    "Who must use two-factor sign-in (TOTP): all users, admins only, or nobody (optional). Default for "
    "Settings -> Security policy.")]


class AuthConfig(_Section, frozen=True):
    """[auth]: logins, sessions, lockout and password hashing."""

    session_idle_minutes: SessionIdleMinutes = 15
    session_absolute_hours: Annotated[int, _doc(
        "Sign a browser session out this many hours after login, active or not.", ge=1, le=12)] = 12
    lockout_threshold: LockoutThreshold = 10
    lockout_minutes: LockoutMinutes = 15
    login_attempts_per_minute: Annotated[int, _doc(
        "Login and setup attempts allowed per source address per minute.", ge=1, le=1000)] = 20
    failures_per_address: Annotated[int, _doc(
        "Failed sign-ins (passwords or codes) one source address may make against one account within lockout_minutes; "
        "more get 429 before any password check. Capped at half of lockout_threshold, so one address alone cannot lock "
        "an account within that time (throttle first, lock out last: NIST SP 800-63B).", ge=1, le=50)] = 5
    setup_code_hours: Annotated[int, _doc(
        "Hours the one-time setup code stays valid after first start.", ge=1, le=24)] = 24
    password_min_length: PasswordMinLength = 15
    password_history: PasswordHistory = 5
    require_composition: RequireComposition = False
    totp_policy: TotpPolicy = "admins"
    hash_concurrency: Annotated[int, _doc(
        "Password hashes computed at once; more requests wait, so a login flood cannot exhaust memory.",
        ge=1, le=16)] = 2
    hash_queue_seconds: Annotated[float, _doc(
        "Longest a sign-in may expect to wait for a free hashing slot; when the queue is longer it gets 503 at once "
        "with Retry-After (a sign-in flood gets fast refusals instead of slowing every sign-in down).",
        ge=0.5, le=30)] = 2.0
    argon2_time_cost: Annotated[int, _doc("argon2id iterations (RFC 9106 low-memory profile: 3).", ge=1, le=10)] = 3
    argon2_memory_kib: Annotated[int, _doc(
        "argon2id memory per hash in KiB (RFC 9106 low-memory profile: 65536).", ge=19456, le=1048576)] = 65536
    argon2_parallelism: Annotated[int, _doc("argon2id lanes.", ge=1, le=8)] = 4


class AuditConfig(_Section, frozen=True):
    """[audit]: the tamper-evident audit log."""

    retention_days: Annotated[int, _doc(
        "Days audit records are kept before a checkpointed purge.", ge=30, le=3650)] = 400
    page_size: Annotated[int, _doc("Rows per page in the audit log view.", ge=10, le=500)] = 50


class AccessConfig(_Section, frozen=True):
    """[access]: API keys and the IP allow list (ACL-2, ACL-3)."""

    api_key_default_days: Annotated[int, _doc(
        "Days a new API key stays valid unless its creator picks another expiry.", ge=1, le=365)] = 90
    api_key_max_days: Annotated[int, _doc("Longest expiry a new API key may be given, in days.", ge=1, le=365)] = 365
    api_keys_per_user: Annotated[int, _doc(
        "Unrevoked, unexpired API keys one user may hold at once.", ge=1, le=1000)] = 25
    api_key_failures_per_minute: Annotated[int, _doc(
        "Failed API-key authentications allowed per source address per minute; more get 429.", ge=1, le=10000)] = 30

    def __post_init__(self) -> None:
        if self.api_key_default_days > self.api_key_max_days:
            raise ValueError("api_key_default_days must not exceed api_key_max_days")


class ProbeConfig(_Section, frozen=True):
    """[probe]: the SSH poller, its limits, thresholds and time-series retention."""

    max_concurrency: Annotated[int, _doc(
        "Device polls running at once (SSH sessions in flight); more devices wait their turn.", ge=1, le=2000)] = 200
    connect_timeout: Annotated[float, _doc("Seconds allowed for the TCP connection to a device.", ge=0.5, le=120)] = 5.0
    auth_timeout: Annotated[float, _doc(
        "Seconds allowed for the SSH handshake and login after TCP connects.", ge=1, le=300)] = 10.0
    command_timeout: Annotated[float, _doc(
        "Seconds allowed for the metrics command (and on-demand commands) to finish.", ge=1, le=600)] = 15.0
    output_cap_bytes: Annotated[int, _doc(
        "Largest command output read from a device, in bytes; the rest is discarded and the result marked truncated.",
        ge=4096, le=16777216)] = 262144
    rekey_bytes: Annotated[int, _doc(
        "Re-key an SSH connection after this many bytes (DEV-4).", ge=1048576, le=4294967296)] = 1073741824
    rekey_seconds: Annotated[int, _doc(
        "Re-key an SSH connection after this many seconds (DEV-4).", ge=60, le=86400)] = 3600
    keepalive_seconds: Annotated[int, _doc(
        "Send an SSH keepalive on an idle held connection this often; three unanswered ones drop it.",
        ge=5, le=3600)] = 30
    jitter_percent: Annotated[int, _doc(
        "Random spread added to each device's poll interval, in percent, so polls do not bunch up.", ge=0, le=50)] = 10
    backoff_max_seconds: Annotated[int, _doc(
        "Longest wait between attempts for a failing device (the wait doubles per failure from its poll interval).",
        ge=10, le=86400)] = 900
    cpu_threshold: Annotated[float, _doc(
        "Open an alert when a device's CPU use is above this percentage.", ge=1, le=100)] = 90.0
    memory_threshold: Annotated[float, _doc(
        "Open an alert when a device's memory use is above this percentage.", ge=1, le=100)] = 90.0
    disk_threshold: Annotated[float, _doc(
        "Open an alert when any real filesystem of a device is fuller than this percentage.", ge=1, le=100)] = 90.0
    raw_retention_hours: Annotated[int, _doc(
        "Hours raw samples are kept (charts over 1 hour read them).", ge=2, le=720)] = 48
    rollup_5m_retention_days: Annotated[int, _doc(
        "Days 5-minute roll-ups are kept (charts over 1 day read them).", ge=1, le=365)] = 30
    rollup_1h_retention_days: Annotated[int, _doc(
        "Days hourly roll-ups are kept (charts over 1 month read them).", ge=31, le=3650)] = 400
    allowed_subnets: Annotated[list[str], _doc(
        "Probe target policy: the networks (CIDR, IPv4 or IPv6) devices may be in; the probe connects to nothing else. "
        "Empty: any address except those refused below. Checked on the resolved address at every connection.")] = []
    allow_loopback: Annotated[bool, _doc(
        "Probe target policy: allow loopback, the unspecified address and the appliance's own addresses as device "
        "addresses (they reach the appliance's own services). Off by default; test set-ups with devices on 127.0.0.1 "
        "turn it on.")] = False

    def __post_init__(self) -> None:
        for i, item in enumerate(self.allowed_subnets):
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"allowed_subnets[{i}] is not an IP address or CIDR: {item!r}") from None


class LogConfig(_Section, frozen=True):
    """[log]: structured logs on stdout."""

    level: Annotated[Literal["debug", "info", "warning", "error"], _doc(
        "Lowest level written to stdout as JSON lines.")] = "info"


class UpdatesConfig(_Section, frozen=True):
    """[updates]: signed USB updates, A/B slots and the health gate."""

    install_root: Annotated[str, _doc(
        "Directory holding the A/B slots (slots/a, slots/b) and the current/previous links.")] = "/opt/outpost"
    staging_dir: Annotated[str, _doc(
        "Where a bundle is copied before it is verified and installed. Empty: <data_dir>/updates/staging.")] = ""
    media_dir: Annotated[str, _doc(
        "The UI only reads bundles from files under this directory (the mounted USB stick).")] = "/media"
    max_bundle_bytes: Annotated[int, _doc(
        "Largest bundle accepted, in bytes; larger files are refused before they are read.",
        ge=1024 * 1024, le=4 * 1024 ** 3)] = 256 * 1024 * 1024
    health_timeout_seconds: Annotated[int, _doc(
        "Seconds a new version has to answer /healthz before it is rolled back.", ge=2, le=600)] = 60


class Config(_Section, frozen=True):
    """The whole configuration file; every section is optional."""

    web: Annotated[WebConfig, _doc("HTTPS listener and browser protections.")] = WebConfig()
    tls: Annotated[TLSConfig, _doc("Certificates and TLS protocol profile.")] = TLSConfig()
    store: Annotated[StoreConfig, _doc("Encrypted datastore.")] = StoreConfig()
    auth: Annotated[AuthConfig, _doc("Logins, sessions and password hashing.")] = AuthConfig()
    audit: Annotated[AuditConfig, _doc("Audit log.")] = AuditConfig()
    backup: Annotated[BackupConfig, _doc("Scheduled encrypted backups.")] = BackupConfig()
    log: Annotated[LogConfig, _doc("Structured logging.")] = LogConfig()
    probe: Annotated[ProbeConfig, _doc(
        "SSH probe: polling limits, thresholds and time-series retention.")] = ProbeConfig()
    access: Annotated[AccessConfig, _doc("API keys and the IP allow list.")] = AccessConfig()
    updates: Annotated[UpdatesConfig, _doc("Signed USB updates and the health gate.")] = UpdatesConfig()


def _key_path(message: str) -> str:
    """Turn msgspec's '... - at `$.web.listen_port`' into 'web.listen_port: ...'."""
    if " - at `$." in message:
        reason, _, path = message.rpartition(" - at `$.")
        return f"{path.rstrip('`')}: {reason}"
    return message


def parse(data: dict) -> Config:
    """Validate a parsed TOML document; raise ConfigError naming the key path."""
    try:
        return msgspec.convert(data, Config)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid configuration: {_key_path(str(exc))}") from None


def load(path: Path | None) -> Config:
    """Read and validate a TOML file; None gives the defaults."""
    if path is None:
        return Config()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"configuration file {path} is not UTF-8 text") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"configuration file {path} is not valid TOML: {exc}") from None
    return parse(data)


def with_data_dir(config: Config, data_dir: str | None) -> Config:
    """Return config with [store] data_dir replaced (the --data-dir option)."""
    if not data_dir:
        return config
    return msgspec.structs.replace(config, store=msgspec.structs.replace(config.store, data_dir=str(data_dir)))
