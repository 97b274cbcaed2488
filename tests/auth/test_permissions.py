"""ACL-1: the permission table in code and in the README agree; unknown is denied."""

import re
from pathlib import Path

from appliance.auth.permissions import PERMISSIONS, ROLES, allowed

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_table_matches_code():
    section = README.read_text().split("### Roles and permissions", 1)[1]
    rows = [r for r in re.findall(r"^\| ([a-z_.]+) \| (.+) \|$", section, re.M) if r[0] != "permission"]
    documented = {name: frozenset(r for r, cell in zip(ROLES, cells.split(" | ")) if cell.strip() == "yes")
                  for name, cells in rows}
    assert documented == PERMISSIONS


def test_deny_by_default():
    assert not allowed("admin", "no.such.permission")
    assert not allowed("root", "dashboard.view")
    assert allowed("auditor", "audit.export") and not allowed("operator", "audit.read")
