"""The audit event catalogue (audit/events.py): every event is an enum member with a unique,
stable code and a label, and the code base records events by member, never by a bare string."""

import ast
import re
from pathlib import Path

import pytest

from appliance.app import open_database
from appliance.audit import log
from appliance.audit.events import Event, Severity
from appliance.audit.models import Actor

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted((ROOT / "appliance").rglob("*.py"))
# Permission names that happen to read like event names ("audit.export"): passed to these.
_PERMISSION_CALLS = {"permission", "allowed", "_can", "covers"}


def test_every_member_has_a_unique_code_a_severity_and_a_label():
    codes = [e.code for e in Event]
    assert len(codes) == len(set(codes)) == len(Event)
    for event in Event:
        assert re.fullmatch(r"[A-Z]{3}\d{3}", event.code), event
        assert isinstance(event.severity, Severity) and event.label.strip(), event
        assert event.value == event.action and re.fullmatch(r"[a-z_]+(\.[a-z_]+)+", event.action), event
        assert event.name == event.action.upper().replace(".", "_"), event  # Event.DEVICE_CREATE is "device.create"


def test_codes_keep_their_meaning():
    """A shipped code never changes meaning: spot checks across the catalogue's history."""
    assert Event("device.create").code == "DEV001"
    assert Event.AUTH_LOGIN_FAILURE.code == "AUT002" and Event.AUDIT_EXPORT.code == "AUD001"
    assert Event.STORE_MIGRATE.code == "STO001" and Event.AUDIT_VERIFY.code == "AUD002"
    assert Event.PROBE_TARGET_REFUSED.code == "PRB007" and Event.API_WRITE.code == "API001"


def _parents(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def _called_name(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def _bare_event_strings(path: Path) -> list[str]:
    """String constants naming a catalogued event, other than permission names."""
    if path.name == "permissions.py" or path == ROOT / "appliance" / "audit" / "events.py":
        return []
    tree = ast.parse(path.read_text(), str(path))
    parents = _parents(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            try:
                Event(node.value)
            except ValueError:
                continue
            parent = parents.get(node)
            if isinstance(parent, ast.Call) and _called_name(parent) in _PERMISSION_CALLS:
                continue
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    return found


def test_no_event_is_named_by_a_bare_string():
    """Every recorded action is an Event member: a string would bypass the catalogue and mypy."""
    found = [hit for path in SOURCES for hit in _bare_event_strings(path)]
    assert not found, "use the audit.events.Event member instead:\n" + "\n".join(found)


def _event_attributes(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    return [(node.lineno, node.attr) for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "Event"]


def _members_named_in_the_code() -> set[str]:
    used: set[str] = set()
    for path in SOURCES:
        for line, attr in _event_attributes(path):
            assert attr in Event.__members__, f"{path.relative_to(ROOT)}:{line}: Event.{attr} is not catalogued"
            used.add(attr)
    return used


def test_every_event_named_in_the_code_exists():
    """A misspelt member on a rarely taken path fails here (and under mypy), not in production."""
    assert _members_named_in_the_code()


def test_every_catalogued_event_is_recorded_somewhere():
    """Nothing is catalogued that the code never names (store.migrate and audit.verify were)."""
    unused = set(Event.__members__) - _members_named_in_the_code()
    assert not unused, f"catalogued but never recorded: {sorted(unused)}"


def test_a_bare_string_is_refused_at_run_time(tmp_path):
    db, _ = open_database(tmp_path, readers=1)
    try:
        with pytest.raises(TypeError, match="Event member"):
            db.write_sync(lambda conn: log.record(conn, "device.create",  # type: ignore[arg-type]
                                                  ts=1.0, actor=Actor.system()))
        assert db.read_sync(lambda c: c.execute("SELECT count(*) FROM audit_log").fetchone()[0]) == 0
    finally:
        db.close()
