"""ARCHITECTURE.md §1: one owner per dangerous dependency, and layers import downwards only."""

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "appliance"

# imported module prefix -> the only places (relative to appliance/) allowed to import it
OWNERS = {
    "sqlcipher3": ("store/driver.py",),
    "argon2": ("crypto/",),
    "pyotp": ("crypto/",),
    "asyncssh": ("ssh/",),
    "cryptography.x509": ("tls/",),
    "litestar": ("web/",),
    "jinja2": ("web/",),
    # the HTTPS listener runs uvicorn (server.py) and guards its protocol classes (protocol.py);
    # nothing else may depend on uvicorn internals, which check_framework() version-checks
    "uvicorn": ("web/server.py", "web/protocol.py"),
    "cryptography.hazmat.primitives.asymmetric.ed25519": ("crypto/signing.py",),
}
# capability -> capabilities it must not import (siblings and everything above it)
LAYERS = {
    "audit": ("auth", "devices", "tls", "web", "probe", "remote", "updates", "system", "backup", "app", "cli"),
    "store": ("audit", "auth", "tls", "web", "app", "cli", "system", "backup"),
    "crypto": ("store", "audit", "auth", "tls", "web", "app", "cli", "backup"),
    "auth": ("tls", "devices", "web", "app", "cli", "system", "access", "backup"),
    "access": ("auth", "tls", "devices", "web", "probe", "remote", "updates", "system", "backup", "demo", "app",
               "cli"),
    "tls": ("auth", "devices", "web", "app", "cli", "backup"),
    "devices": ("auth", "tls", "web", "probe", "remote", "updates", "system", "backup", "app", "cli"),
    "system": ("web", "app", "cli", "updates", "backup"),
    "updates": ("web", "app", "cli", "system", "backup", "probe", "remote", "auth", "devices", "tls"),
    # backups sit beside updates and system: they take the store, keys and config as they are
    "backup": ("web", "app", "cli", "updates", "system", "probe", "remote", "demo", "auth", "access", "devices",
               "tls"),
    "ssh": ("audit", "auth", "devices", "tls", "web", "probe", "remote", "updates", "system", "backup", "demo", "app",
            "cli"),
    "probe": ("web", "remote", "updates", "system", "backup", "demo", "app", "cli"),
    "demo": ("web", "app", "cli"),
}


def _imports(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def _files():
    for path in PKG.rglob("*.py"):
        yield path.relative_to(PKG).as_posix(), path


def test_dangerous_dependencies_have_one_owner():
    broken = []
    for rel, path in _files():
        for name in _imports(path):
            for prefix, owners in OWNERS.items():
                if (name == prefix or name.startswith(prefix + ".")) and not rel.startswith(owners):
                    broken.append(f"{rel} imports {name}; only {', '.join(owners)} may")
    assert not broken, "\n".join(broken)


def test_layers_import_downwards_only():
    broken = []
    for rel, path in _files():
        capability = rel.split("/")[0].removesuffix(".py")
        forbidden = LAYERS.get(capability, ())
        for name in _imports(path):
            parts = name.split(".")
            if parts[0] == "appliance" and len(parts) > 1 and parts[1] in forbidden:
                broken.append(f"{rel} imports {name}: {capability} sits below {parts[1]}")
    assert not broken, "\n".join(broken)
