"""The web shell's one way to do each thing (issue 12, point 4), checked on the source.

Page modules (web/ui/) get services, principal, client and actor from web/deps.py and their form
and page helpers from web/ui/forms.py: they import no API module and no other page module, and
define no private copy of those helpers. API modules import no page module.
"""

from __future__ import annotations

import ast
from pathlib import Path

WEB = Path(__file__).resolve().parents[2] / "appliance" / "web"
COPIES = {"_svc", "_services", "_redirect", "_actor", "_principal", "_client", "_field", "_page"}
SHARED_PAGE_MODULES = {"appliance.web.ui.forms", "appliance.web.ui.deviceforms"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    found |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    found |= {f"{n.module}.{a.name}" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module
              for a in n.names}
    return found


def test_page_modules_import_no_api_module_and_no_other_page():
    broken = []
    for path in sorted((WEB / "ui").glob("*.py")):
        for name in _imports(path):
            if name.startswith("appliance.web.api"):
                broken.append(f"ui/{path.name} imports {name}")
            elif name.startswith("appliance.web.ui.") and name.rsplit(".", 1)[0] not in SHARED_PAGE_MODULES \
                    and name not in SHARED_PAGE_MODULES:
                broken.append(f"ui/{path.name} imports the page module {name}")
    assert not broken, "\n".join(broken)


def test_api_modules_import_no_page_module():
    broken = [f"api/{p.name} imports {n}" for p in sorted((WEB / "api").glob("*.py"))
              for n in _imports(p) if n.startswith("appliance.web.ui")]
    assert not broken, "\n".join(broken)


def test_no_private_copies_of_the_shared_helpers():
    copies = []
    for path in sorted(WEB.rglob("*.py")):
        tree = ast.parse(path.read_text())
        copies += [f"{path.relative_to(WEB)}: {n.name}" for n in tree.body
                   if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name in COPIES]
    assert not copies, "use web/deps.py and web/ui/forms.py instead:\n" + "\n".join(copies)
