"""ACL-1: the permission table in code and in the README agree; unknown is denied."""

import re
from pathlib import Path

from appliance.app import open_database
from appliance.auth.permissions import PERMISSIONS, ROLES, Role, allowed

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_table_matches_code():
    section = README.read_text().split("### Roles and permissions", 1)[1]
    rows = [r for r in re.findall(r"^\| ([a-z_.]+) \| (.+) \|$", section, re.M) if r[0] != "permission"]
    documented = {name: frozenset(r for r, cell in zip(ROLES, cells.split(" | "), strict=True) if cell.strip() == "yes")
                  for name, cells in rows}
    assert documented == PERMISSIONS


def test_deny_by_default():
    assert not allowed("admin", "no.such.permission")
    assert not allowed("root", "dashboard.view")
    assert allowed("auditor", "audit.export") and not allowed("operator", "audit.read")


def test_role_enum_matches_the_roles_table(tmp_path):
    """The roles are data in the store (roles table, rank order) and an enum in code: one list."""
    db, _ = open_database(tmp_path, readers=1)
    try:
        table = db.read_sync(lambda c: [r[0] for r in c.execute("SELECT name FROM roles ORDER BY rank")])
    finally:
        db.close()
    assert table == [role.value for role in Role] == list(ROLES)
