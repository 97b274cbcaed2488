"""Self-health of the appliance (PROBE-6, foundation subset).

Reads only local counters (psutil, statvfs, file sizes); never blocks on the network.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import msgspec
import psutil

from appliance import __version__


class Health(msgspec.Struct, frozen=True, kw_only=True):
    version: str
    uptime_seconds: float
    cpu_percent: float
    memory_percent: float
    memory_total_bytes: int
    process_rss_bytes: int
    disk_total_bytes: int
    disk_used_bytes: int
    disk_percent: float
    database_bytes: int
    cert_not_after: float
    cert_days_left: float
    cert_fingerprint: str


def collect(*, data_dir: Path, database_bytes: int, cert_not_after: float, cert_fingerprint: str,
            started_at: float, now: float) -> Health:
    """Take one snapshot; cpu_percent is the system-wide figure since the previous call."""
    mem = psutil.virtual_memory()
    disk = shutil.disk_usage(data_dir)
    return Health(
        version=__version__,
        uptime_seconds=max(0.0, now - started_at),
        cpu_percent=psutil.cpu_percent(interval=None),
        memory_percent=mem.percent,
        memory_total_bytes=mem.total,
        process_rss_bytes=psutil.Process(os.getpid()).memory_info().rss,
        disk_total_bytes=disk.total,
        disk_used_bytes=disk.used,
        disk_percent=round(100.0 * disk.used / disk.total, 1) if disk.total else 0.0,
        database_bytes=database_bytes,
        cert_not_after=cert_not_after,
        cert_days_left=round((cert_not_after - now) / 86400, 1),
        cert_fingerprint=cert_fingerprint,
    )
