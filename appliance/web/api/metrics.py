"""/metrics (PLAT-6): Prometheus text exposition format 0.0.4; API key with metrics.read.

Appliance health and audit-log figures are built in; any capability adds its own by
appending a callable to `services.metric_sources` that returns
`[(name, type, help, labels dict, value), ...]` (type: "gauge" or "counter").
A source that raises is skipped and counted in outpost_metric_source_errors,
so one broken probe never hides the rest.
"""

from __future__ import annotations

import logging
import math

from litestar import Request, Response, get

from appliance.audit import queries as audit_queries
from appliance.web.deps import services
from appliance.web.guards import permission

log = logging.getLogger("outpost.metrics")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")
    return repr(value) if isinstance(value, float) else str(int(value))


def render(samples) -> str:
    """Group samples by name; one HELP/TYPE per metric family."""
    families: dict[str, tuple[str, str, list]] = {}
    for name, kind, help_text, labels, value in samples:
        family = families.setdefault(name, (kind, help_text, []))
        family[2].append((labels, value))
    lines = []
    for name, (kind, help_text, values) in families.items():
        lines.append(f"# HELP {name} {_escape(help_text)}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in values:
            label_text = ",".join(f'{k}="{_escape(str(v))}"' for k, v in sorted(labels.items()))
            lines.append(f"{name}{{{label_text}}} {_number(value)}" if label_text else f"{name} {_number(value)}")
    return "\n".join(lines) + "\n"


def builtin(services, audit_records: int) -> list:
    h = services.health()
    return [
        ("outpost_info", "gauge", "Appliance version (value is always 1).", {"version": h.version}, 1),
        ("outpost_uptime_seconds", "gauge", "Seconds since the appliance started.", {}, h.uptime_seconds),
        ("outpost_cpu_percent", "gauge", "System-wide CPU use since the previous sample.", {}, h.cpu_percent),
        ("outpost_memory_percent", "gauge", "System memory in use.", {}, h.memory_percent),
        ("outpost_memory_total_bytes", "gauge", "System memory.", {}, h.memory_total_bytes),
        ("outpost_process_resident_bytes", "gauge", "Resident memory of the appliance process.", {},
         h.process_rss_bytes),
        ("outpost_disk_total_bytes", "gauge", "Size of the data volume.", {}, h.disk_total_bytes),
        ("outpost_disk_used_bytes", "gauge", "Used space on the data volume.", {}, h.disk_used_bytes),
        ("outpost_database_bytes", "gauge", "Size of the encrypted database files.", {}, h.database_bytes),
        ("outpost_certificate_expiry_timestamp_seconds", "gauge", "When the serving certificate expires (Unix time).",
         {}, h.cert_not_after),
        ("outpost_certificate_days_left", "gauge", "Days until the serving certificate expires.", {}, h.cert_days_left),
        ("outpost_audit_records", "gauge", "Records in the audit log (after retention purges).", {}, audit_records),
        ("outpost_allowlist_denied_total", "counter", "Requests refused by the IP allow list since start.", {},
         services.allowlist.denied),
    ]


@get("/metrics", guards=[permission("metrics.read")], name="metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    svc = services(request)
    count = await svc.db.read(audit_queries.count_all_records)
    samples = builtin(svc, count)
    errors = 0
    for source in list(svc.metric_sources):
        try:
            samples.extend(source())
        except Exception as exc:  # a broken source must not hide the others
            errors += 1
            log.warning("metric source failed", extra={"error_type": type(exc).__name__})
    samples.append(("outpost_metric_source_errors", "gauge", "Metric sources that failed in this scrape.",
                    {}, errors))
    return Response(render(samples), media_type=CONTENT_TYPE)


ROUTES = [metrics]
