"""Audit log page with filters and pagination, and streamed CSV / JSON-lines export (AUDIT-4)."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlencode

from litestar import Request, Response, get
from litestar.response import Stream

from appliance.audit import filters, queries
from appliance.audit.events import Event
from appliance.audit.service import ExportFormat
from appliance.errors import ValidationError
from appliance.web.deps import actor, services
from appliance.web.guards import permission
from appliance.web.ui.forms import page

if TYPE_CHECKING:
    from appliance.store.connection import Connection


@get("/audit", guards=[permission("audit.read")], name="audit_log")
async def audit_log(request: Request) -> Response:
    svc = services(request)
    flt, raw, errors = filters.parse(request.query_params)
    try:
        number = max(1, min(1_000_000, int(request.query_params.get("page", "1"))))
    except ValueError:
        number = 1
    size = svc.config.audit.page_size

    def read(conn: Connection):
        return (queries.list_records(conn, flt, limit=size, offset=(number - 1) * size),
                queries.count_records(conn, flt))

    records, total = await svc.db.read_in_thread(read)
    query = urlencode({k: v for k, v in raw.items() if v})
    return page(request, "audit.html", records=records, total=total, page=number, pages=max(1, -(-total // size)),
                raw=raw, errors=errors, query=query, outcomes=filters.OUTCOMES, catalogue=list(Event),
                status=400 if errors else 200)


async def _export(request: Request, fmt: ExportFormat) -> Response:
    flt, raw, errors = filters.parse(request.query_params)
    if errors:
        raise ValidationError("The export filter is not valid.", details=errors)
    # Recorded before streaming starts: if it cannot be written there is no export (fail closed).
    out = await services(request).audit.export(actor(request), flt, fmt, via="ui", shown=raw)
    return Stream(out.chunks(), media_type=out.media_type,
                  headers={"Content-Disposition": f'attachment; filename="{out.filename}"'})


@get("/audit/export.csv", guards=[permission("audit.export")], name="audit_export_csv")
async def audit_export_csv(request: Request) -> Response:
    return await _export(request, "csv")


@get("/audit/export.jsonl", guards=[permission("audit.export")], name="audit_export_jsonl")
async def audit_export_jsonl(request: Request) -> Response:
    return await _export(request, "jsonl")


ROUTES = [audit_log, audit_export_csv, audit_export_jsonl]
