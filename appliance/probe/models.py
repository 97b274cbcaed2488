"""Probe records (no I/O)."""

from __future__ import annotations

from typing import Literal

import msgspec

Status = Literal["unknown", "up", "degraded", "down", "auth failed", "host key changed", "unreachable"]
AlertKind = Literal["cpu", "memory", "disk", "host_key", "status", "check"]
STATUSES: tuple[str, ...] = ("up", "degraded", "down", "auth failed", "host key changed", "unreachable", "unknown")
BAD_STATUSES = frozenset({"down", "auth failed", "unreachable"})
RANGES = {"1h": 3600, "1d": 86400, "1m": 30 * 86400}


class CheckOutcome(msgspec.Struct, frozen=True, kw_only=True):
    check_id: int
    ok: bool
    message: str


class PollResult(msgspec.Struct, frozen=True, kw_only=True):
    """One poll of one device, as the scheduler hands it to the service."""

    device_id: int
    ts: float
    status: Status
    message: str = ""
    latency_ms: float | None = None
    cpu: float | None = None
    memory: float | None = None
    swap: float | None = None
    disk: float | None = None
    load1: float | None = None
    uptime: float | None = None
    disks: list[dict] = []
    checks: list[CheckOutcome] = []
    refused: bool = False  # the target policy refused the address (audited by ProbeService.record)


class DeviceStatus(msgspec.Struct, frozen=True, kw_only=True):
    device_id: int
    name: str
    address: str
    port: int
    enabled: bool
    status: Status
    since: float | None
    polled_at: float | None
    message: str
    latency_ms: float | None
    cpu: float | None
    memory: float | None
    swap: float | None
    disk: float | None
    load1: float | None
    uptime: float | None
    disks: str


class Alert(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    device_id: int
    device_name: str
    kind: AlertKind
    message: str
    value: float | None
    opened_at: float
    resolved_at: float | None
    acked_at: float | None
    acked_by: str | None


class ProbeEvent(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    device_id: int
    ts: float
    old_status: str
    new_status: str
    message: str


class Check(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    device_id: int
    name: str
    command: str
    expect_exit: int | None
    expect_regex: str | None
    timeout: float
    output_cap: int
    last_ok: bool | None
    last_message: str
    last_run: float | None


class Series(msgspec.Struct, frozen=True, kw_only=True):
    """Columns for uPlot: x (unix seconds) then one list per metric, None = gap."""

    range: str
    width: int
    ts: list[float]
    latency_ms: list[float | None]
    cpu: list[float | None]
    memory: list[float | None]
    disk: list[float | None]


class Thresholds(msgspec.Struct, frozen=True, kw_only=True):
    cpu: float = 90.0
    memory: float = 90.0
    disk: float = 90.0
