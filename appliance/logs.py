"""Structured logs: one JSON object per line on stdout (PLAT-7, journald friendly).

Invariant: callers log event names and non-secret fields only; this module adds
no request bodies, headers or cookies. uvicorn's access log is off.
"""

from __future__ import annotations

import logging
import sys

import msgspec

from appliance.clock import iso

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
_encode = msgspec.json.Encoder().encode


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {"ts": iso(record.created), "level": record.levelname.lower(), "logger": record.name,
                 "msg": record.getMessage()}
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
        if record.exc_info and record.exc_info[0] is not None:
            entry["error_type"] = record.exc_info[0].__name__  # type only: messages may quote input
        return _encode(entry).decode()


def configure(level: str) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JSONFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "litestar", "asyncssh"):
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    # asyncssh logs every connection and auth step at info: one line per device poll reconnect.
    logging.getLogger("asyncssh").setLevel(max(logging.WARNING, root.level))
