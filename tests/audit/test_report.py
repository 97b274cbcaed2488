"""AUDIT-5: the login-attempts report per user and per source over a period, in
process (exact counts, period edges, CSV neutralisation) and through the UI and API."""

from __future__ import annotations

import csv
import io

from appliance.audit import log as audit
from appliance.audit import report
from appliance.audit.events import Event
from appliance.audit.models import Actor

T0 = 1_800_000_000.0


def _login(db, ts, name, source, ok, actor_type="user"):
    db.write_sync(lambda c: audit.record(
        c, ts=ts, event=Event.AUTH_LOGIN_SUCCESS if ok else Event.AUTH_LOGIN_FAILURE,
        actor=Actor(type=actor_type, name=name, source=source), outcome="success" if ok else "failure"))


def test_counts_per_user_and_source_within_the_period(db):
    _login(db, T0 - 1, "alice", "10.0.0.1", True)  # before the period
    _login(db, T0, "alice", "10.0.0.1", True)
    _login(db, T0 + 1, "alice", "10.0.0.2", False)
    _login(db, T0 + 2, "alice", "10.0.0.2", False)
    _login(db, T0 + 3, "mallory", "10.0.0.2", False, actor_type="anonymous")
    _login(db, T0 + 4, "bob", "10.0.0.1", True)
    _login(db, T0 + 100, "bob", "10.0.0.1", True)  # at the end: excluded
    db.write_sync(lambda c: audit.record(c, ts=T0 + 5, event=Event.AUTH_LOGOUT,
                                         actor=Actor(type="user", name="alice", source="10.0.0.1")))
    rep = db.read_sync(lambda c: report.login_report(c, since=T0, until=T0 + 100))
    by_user = {c.key: (c.successes, c.failures) for c in rep.by_user}
    by_source = {c.key: (c.successes, c.failures) for c in rep.by_source}
    assert by_user == {"alice": (1, 2), "mallory": (0, 1), "bob": (1, 0)}
    assert by_source == {"10.0.0.1": (2, 0), "10.0.0.2": (0, 3)}
    assert rep.by_user[0].key == "alice", "most failures first"
    assert rep.totals == (2, 3)
    pairs = {(p.user, p.source): (p.successes, p.failures) for p in rep.by_user_and_source}
    assert pairs[("alice", "10.0.0.2")] == (0, 2) and len(pairs) == 4


def test_csv_cells_are_formula_neutralised(db):
    _login(db, T0, "=HYPERLINK(\"http://x\")", "10.0.0.1", False, actor_type="anonymous")
    _login(db, T0, "+cmd", "@10.0.0.1", False, actor_type="anonymous")
    rep = db.read_sync(lambda c: report.login_report(c, since=T0 - 10, until=T0 + 10))
    rows = list(csv.reader(io.StringIO(report.to_csv(rep).decode())))
    assert rows[0] == ["period_start_utc", "period_end_utc", "user", "source", "successes", "failures"]
    cells = [cell for row in rows[1:] for cell in row]
    assert "'=HYPERLINK(\"http://x\")" in cells and "'+cmd" in cells and "'@10.0.0.1" in cells
    assert not any(cell.startswith(("=", "+", "@", "-")) for cell in cells)


def test_report_page_and_csv_through_the_server(admin_client, appliance):
    from tests.conftest import do_login

    with appliance.client() as stranger:
        assert do_login(stranger, username="nobody", password="wrong wrong wrong wrong").status_code == 401
    page = admin_client.get("/audit/logins")
    assert page.status_code == 200 and "nobody" in page.text and "admin" in page.text
    assert admin_client.get("/audit/logins", params={"since": "2026-13-01"}).status_code == 400
    r = admin_client.get("/audit/logins", params={"since": "2026-01-02T00:00", "until": "2026-01-01T00:00"})
    assert r.status_code == 400 and "after the start" in r.text
    r = admin_client.get("/audit/logins.csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(r.text)))
    assert any(row[2] == "nobody" and row[5] == "1" for row in rows[1:])
    assert "audit.report.export" in admin_client.get("/audit", params={"action": "audit.report"}).text
