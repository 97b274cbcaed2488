"""ARCHITECTURE.md §1-2: one layer table (package -> level) and one owner per dangerous dependency.

Every rule carries its reason beside it, the way Tailscale's `deptest` writes a why next to each banned
import, so a failure says what broke and why it matters. The walker sees every import form: `import a.b`,
`from a import b` (a submodule imported from its package: `from appliance import app`,
`from cryptography import x509`), relative imports, and imports inside functions or `if TYPE_CHECKING:`.
A package under appliance/ that is missing from the table fails, so a new package is checked from day one.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import NamedTuple

import pytest

PKG = Path(__file__).resolve().parent.parent / "appliance"

# package (top-level module or directory under appliance/) -> (level, why it sits there).
# A package may import only packages on LOWER levels: siblings on one level never import each other,
# so each level is a set of independent capabilities built on what lies below.
LAYERS: dict[str, tuple[int, str]] = {
    "__init__": (0, "the package root: version and product name; imports nothing"),
    "errors": (0, "error base classes every package raises; imports nothing"),
    "clock": (0, "the Clock protocol and time formatting; imports nothing"),
    "paths": (0, "DataDir, the one place file names under the data directory are spelled; imports nothing"),
    "config": (1, "frozen config Structs; raises ConfigError from errors"),
    "logs": (1, "structured logging; stamps records with clock.iso"),
    "crypto": (2, "pure primitives (hashing, TOTP, AEAD, signing, SSH key parsing); only errors below it"),
    "store": (3, "the encrypted database; derives its key with crypto, so it sits above crypto"),
    "audit": (4, "the sink everyone writes to; uses only store and clock, never a capability"),
    "ssh": (4, "host-key pinning and the algorithm policy; knows nothing of devices, audit or the store"),
    "principal": (5, "the one caller type; carries audit's Actor, and is built by auth and access alike"),
    "auth": (6, "users, sessions, TOTP; independent of access (API keys), devices and tls"),
    "access": (6, "API keys and the allowlist; builds a principal without importing auth"),
    "devices": (6, "inventory and credential vault; independent of auth and tls"),
    "tls": (6, "certificates for the listener; independent of auth and devices"),
    "probe": (7, "polls devices over ssh; independent of updates, backup and system"),
    "updates": (7, "signed bundles and slots; independent of the other capabilities on its level"),
    "backup": (7, "takes the store, keys and config as they are; independent of updates and system"),
    "system": (7, "host health and integrity; reads only the version"),
    "demo": (8, "seeds a demo fleet through the capabilities below it"),
    "app": (9, "composition root: builds every service; imports no web and no Litestar"),
    "web": (10, "the Litestar shell over the services app.build() returns (Services is a type-only import)"),
    "cli_context": (11, "the one CliContext the commands share, built through app"),
    "cli_admin": (12, "admin commands (user, backup, tls, audit) over the CliContext"),
    "cli": (13, "the command line: serve (web), init, admin commands; the top of the tree"),
    "__main__": (14, "`python -m appliance` calls cli.main()"),
}

# Explicit exceptions to "lower levels only": (importer, imported) -> why. None are needed today.
LAYER_EXCEPTIONS: dict[tuple[str, str], str] = {}


class Owner(NamedTuple):
    only: tuple[str, ...]  # paths (relative to appliance/; "x/" means the whole package) allowed to import it
    why: str
    exceptions: dict[str, str] = {}  # path -> why this one other module may import it too


# imported module prefix -> its owner
OWNERS: dict[str, Owner] = {
    "sqlcipher3": Owner(("store/driver.py",), "one module opens the encrypted database, so keying is never skipped"),
    "sqlite3": Owner(
        ("store/",), "stdlib sqlite3 opens plaintext files; every database goes through SQLCipher in store/"
    ),
    "argon2": Owner(("crypto/",), "password hashing is a primitive with one implementation and one set of costs"),
    "pyotp": Owner(("crypto/",), "TOTP (RFC 6238) is a primitive with one implementation and one replay guard"),
    "asyncssh": Owner(("ssh/",), "every SSH connection goes through ssh/'s host-key pinning and algorithm policy"),
    "cryptography.x509": Owner(("tls/",), "certificate parsing and issuing has one home, with its checks"),
    "cryptography.hazmat.primitives.asymmetric.ed25519": Owner(
        ("crypto/signing.py",),
        "update signing keys are made and checked in one module",
        {"crypto/sshkeys.py": "classifies an entered device SSH key by type (isinstance); never signs or verifies"},
    ),
    "litestar": Owner(("web/",), "the web framework is a shell: capabilities stay plain Python usable without HTTP"),
    "jinja2": Owner(("web/",), "templates are rendered by the web layer only"),
    "uvicorn": Owner(
        ("web/server.py", "web/protocol.py"),
        "the HTTPS listener (server.py) and its guarded protocol classes (protocol.py) are the only code that "
        "depends on uvicorn internals, which check_framework() version-checks",
    ),
    "httptools": Owner(("web/protocol.py",), "the HTTP parser is a uvicorn detail guarded in protocol.py alone"),
    "re2": Owner(("probe/patterns.py",), "user-supplied patterns are compiled in one place, with its size limits"),
    "zxcvbn": Owner(("auth/policy.py",), "password strength is judged by one policy"),
    "subprocess": Owner(("updates/launcher.py",), "the only process the appliance starts is the updated slot"),
}


def _is_module(parts: list[str]) -> bool:
    """Whether appliance.<parts> names a module or package (not an attribute such as __version__)."""
    path = PKG.joinpath(*parts[1:])
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _package_of(rel: str) -> list[str]:
    """The dotted package a file's relative imports start from."""
    parts = ["appliance", *rel.removesuffix(".py").split("/")]
    return parts[:-1]


def imports(source: str, rel: str):
    """Every module name a file imports, fully qualified, anywhere in the file.

    `from a import b` yields both `a` and `a.b`: b may be a submodule (`from appliance import app`,
    `from cryptography import x509`), and counting it when it is only an attribute is the strict side.
    """
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package_of(rel)[: len(_package_of(rel)) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            yield module
            yield from (f"{module}.{alias.name}" for alias in node.names if alias.name != "*")


def unit_of_import(name: str) -> str | None:
    """The appliance package an imported name belongs to (None for third-party and stdlib)."""
    parts = name.split(".")
    if parts[0] != "appliance":
        return None
    if len(parts) > 1 and _is_module(parts[:2]):
        return parts[1]
    return "__init__"  # `import appliance` or `from appliance import __version__`


def unit_of_file(rel: str) -> str:
    return rel.split("/")[0].removesuffix(".py")


def _files():
    for path in sorted(PKG.rglob("*.py")):
        yield path.relative_to(PKG).as_posix(), path


# -- the walker sees every form (a test of the test: the previous walker missed the first four) --

WALKER_CASES = [
    ("from appliance import app", "web/deps.py", "appliance.app"),
    ("from cryptography import x509", "crypto/x.py", "cryptography.x509"),
    (
        "from cryptography.hazmat.primitives.asymmetric import ed25519",
        "tls/x.py",
        "cryptography.hazmat.primitives.asymmetric.ed25519",
    ),
    ("from ..web import render", "store/x.py", "appliance.web.render"),
    ("from .. import app", "web/__init__.py", "appliance.app"),
    ("from . import queries", "audit/log.py", "appliance.audit.queries"),
    ("from .driver import open_db", "store/x.py", "appliance.store.driver"),
    ("import appliance.web.server", "cli.py", "appliance.web.server"),
    ("from appliance.tls import manager", "cli.py", "appliance.tls.manager"),
    ("def f():\n    import asyncssh\n", "probe/x.py", "asyncssh"),
    (
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from appliance.app import Services\n",
        "web/x.py",
        "appliance.app",
    ),
]


@pytest.mark.parametrize(("source", "rel", "expected"), WALKER_CASES)
def test_walker_sees_every_import_form(source, rel, expected):
    assert expected in set(imports(source, rel))


def test_units_resolve_submodules_and_attributes():
    assert unit_of_import("appliance.app") == "app"
    assert unit_of_import("appliance.web.server") == "web"
    assert unit_of_import("appliance.__version__") == "__init__"
    assert unit_of_import("appliance") == "__init__"
    assert unit_of_import("cryptography.x509") is None


# -- the rules over the real tree --


def test_every_package_is_in_the_layer_table():
    units = {unit_of_file(rel) for rel, _ in _files()}
    missing = sorted(units - LAYERS.keys())
    assert not missing, "\n".join(f"new package {u}: add it to the layer table with its level and why" for u in missing)


def test_layers_import_downwards_only():
    broken = []
    for rel, path in _files():
        unit = unit_of_file(rel)
        level = LAYERS[unit][0]
        for name in imports(path.read_text(), rel):
            target = unit_of_import(name)
            if target is None or target == unit or target not in LAYERS or (unit, target) in LAYER_EXCEPTIONS:
                continue
            if LAYERS[target][0] >= level:
                broken.append(
                    f"{rel} imports {name}: {unit} (level {level}: {LAYERS[unit][1]}) may import only lower levels, "
                    f"and {target} is on level {LAYERS[target][0]} ({LAYERS[target][1]})"
                )
    assert not broken, "\n".join(sorted(set(broken)))


def test_dangerous_dependencies_have_one_owner():
    broken = []
    for rel, path in _files():
        for name in imports(path.read_text(), rel):
            for prefix, owner in OWNERS.items():
                if name != prefix and not name.startswith(prefix + "."):
                    continue
                if rel.startswith(owner.only) or rel in owner.exceptions:
                    continue
                broken.append(f"{rel} imports {name}; only {', '.join(owner.only)} may: {owner.why}")
    assert not broken, "\n".join(sorted(set(broken)))


def test_no_imports_by_string():
    """Freeze-friendly (§1.7), and the walker above must see every dependency: no import_module/__import__."""
    broken = []
    for rel, path in _files():
        for node in ast.walk(ast.parse(path.read_text())):
            called = node.func if isinstance(node, ast.Call) else None
            name = getattr(called, "attr", None) or getattr(called, "id", None)
            if name in ("import_module", "__import__"):
                broken.append(f"{rel}:{node.lineno} imports by string ({name})")
    assert not broken, "\n".join(broken)


def test_exceptions_name_real_modules():
    """An exception for a module that no longer exists would silently widen the rule for a new file of that name."""
    stale = [rel for owner in OWNERS.values() for rel in owner.exceptions if not (PKG / rel).is_file()]
    stale += [f"{a}->{b}" for a, b in LAYER_EXCEPTIONS if a not in LAYERS or b not in LAYERS]
    assert not stale, stale
