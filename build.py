#!/usr/bin/env python3
"""Outpost's one task runner.

    python3 build.py run [--data-dir DIR] [--listen HOST:PORT] [serve options]
    python3 build.py test [pytest args]
    python3 build.py binary
    python3 build.py bench [names...]
    python3 build.py lock          (maintainers: re-pin requirements/*.lock)

Every subcommand first creates or refreshes `.venv` from the hash-locked files in
`requirements/` (pip --require-hashes) and copies the browser assets installed by
`npm ci` from package-lock.json into `appliance/web/static/vendor/`. Nothing is
set up by hand. Only the standard library is used here, so it runs on a bare
Debian Python 3.11.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
SSLYZE_VENV = ROOT / ".venv-sslyze"
REQ = ROOT / "requirements"
VENDOR = ROOT / "appliance" / "web" / "static" / "vendor"
# npm package -> files copied into the vendor directory (name in vendor/).
BROWSER_ASSETS = {
    "htmx.org": {"dist/htmx.min.js": "htmx.min.js", "LICENSE": "htmx.LICENSE.txt"},
}


def _say(msg: str) -> None:
    print(f"[build] {msg}", flush=True)


def _run(cmd: list[str], **kw) -> None:
    subprocess.run(cmd, check=True, **kw)


def _py(env_dir: Path) -> Path:
    return env_dir / "bin" / "python"


def _digest(*files: Path) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(f.read_bytes())
    h.update(sys.version.encode())
    return h.hexdigest()


def ensure_venv(env_dir: Path, locks: list[Path]) -> Path:
    """Create env_dir and install the hash-locked requirements, skipping when unchanged."""
    stamp = env_dir / ".outpost-stamp"
    want = _digest(*locks)
    if stamp.exists() and stamp.read_text() == want and _py(env_dir).exists():
        return _py(env_dir)
    _say(f"preparing {env_dir.name} ...")
    if not _py(env_dir).exists():
        venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    quiet = ["-q", "--disable-pip-version-check", "--no-input"]
    for lock in locks:
        _run([str(_py(env_dir)), "-m", "pip", "install", *quiet, "--require-hashes", "-r", str(lock)])
    stamp.write_text(want)
    return _py(env_dir)


def ensure_assets() -> None:
    """Install browser assets with npm from the lock file and copy them into the package."""
    stamp = VENDOR / ".outpost-stamp"
    want = _digest(ROOT / "package-lock.json")
    if stamp.exists() and stamp.read_text() == want:
        return
    _say("installing browser assets from package-lock.json (npm ci) ...")
    _run(["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"], cwd=ROOT)
    VENDOR.mkdir(parents=True, exist_ok=True)
    for package, files in BROWSER_ASSETS.items():
        for src, dst in files.items():
            shutil.copyfile(ROOT / "node_modules" / package / src, VENDOR / dst)
    stamp.write_text(want)


LICENCES_SCRIPT = r"""
import json, re, sys
from importlib import metadata
names = re.findall(r"^([A-Za-z0-9_.-]+)==", open(sys.argv[1]).read(), re.M)
out = []
for name in names:
    meta = metadata.metadata(name)
    lic = meta.get("License-Expression") or meta.get("License") or ""
    if not lic or len(lic) > 80:
        lic = ", ".join(c.split("::")[-1].strip() for c in meta.get_all("Classifier") or [] if c.startswith("License ::")) or "see package"
    out.append({"name": meta["Name"], "version": meta["Version"], "licence": lic})
for pkg in json.loads(sys.argv[2]):
    info = json.load(open(f"node_modules/{pkg}/package.json"))
    out.append({"name": pkg + " (npm)", "version": info["version"], "licence": info.get("license", "see package")})
out.append({"name": "Python", "version": sys.version.split()[0], "licence": "PSF-2.0"})
json.dump(sorted(out, key=lambda x: x["name"].lower()), open(sys.argv[3], "w"), indent=1)
"""


def write_licences(py: Path) -> None:
    """appliance/system/licences.json: what the About page lists (runtime packages + npm assets)."""
    target = ROOT / "appliance" / "system" / "licences.json"
    lock = REQ / "runtime.lock"
    if target.exists() and target.stat().st_mtime >= max(lock.stat().st_mtime, (ROOT / "package-lock.json").stat().st_mtime):
        return
    import json
    _run([str(py), "-c", LICENCES_SCRIPT, str(lock), json.dumps(sorted(BROWSER_ASSETS)), str(target)], cwd=ROOT)


def dev_python() -> Path:
    py = ensure_venv(VENV, [REQ / "runtime.lock", REQ / "dev.lock"])
    ensure_assets()
    write_licences(py)
    return py


def cmd_run(args: list[str]) -> int:
    py = dev_python()
    argv = [str(py), "-m", "appliance", "serve"]
    if "--data-dir" not in args:
        argv += ["--data-dir", str(ROOT / "data")]
    if hasattr(os, "geteuid") and os.geteuid() == 0 and "--allow-root" not in args:
        argv.append("--allow-root")  # development convenience only (PLAT-3)
    return subprocess.call(argv + args, cwd=ROOT)


def cmd_test(args: list[str]) -> int:
    py = dev_python()
    ensure_venv(SSLYZE_VENV, [REQ / "sslyze.lock"])
    env = dict(os.environ, OUTPOST_SSLYZE=str(SSLYZE_VENV / "bin" / "sslyze"))
    return subprocess.call([str(py), "-m", "pytest", *args], cwd=ROOT, env=env)


_BINARY_ENTRY = """import sys

from appliance.cli import main

sys.exit(main())
"""
_BINARY_HIDDEN = (
    "uvicorn.protocols.http.httptools_impl",
    "uvicorn.protocols.websockets.websockets_sansio_impl",
    "uvicorn.loops.uvloop",
    "uvicorn.lifespan.on",
)
_BINARY_EXCLUDES = (
    "faker", "polyfactory", "pytest", "_pytest", "pluggy", "iniconfig", "hypothesis", "sortedcontainers",
    "playwright", "greenlet", "httpx", "httpcore", "h11", "rich", "rich_click", "pygments", "markdown_it", "mdurl",
    "dotenv", "watchfiles", "tkinter", "_tkinter", "PyInstaller", "pip", "setuptools", "pkg_resources",
    "_distutils_hack", "distutils", "lib2to3", "pydoc_data", "idlelib", "ensurepip", "sqlite3",
)


def cmd_binary(args: list[str]) -> int:
    """Freeze the appliance into dist/outpost with PyInstaller (PLAT-1, PERF-6)."""
    py = dev_python()
    mode = "--onedir" if "--onedir" in args else "--onefile"
    args = [a for a in args if a != "--onedir"]
    work = ROOT / "build" / "pyinstaller"
    work.mkdir(parents=True, exist_ok=True)
    entry = work / "outpost_entry.py"
    entry.write_text(_BINARY_ENTRY)
    datas = []
    for f in sorted((ROOT / "appliance").rglob("*")):
        rel = f.relative_to(ROOT)
        if f.is_file() and f.suffix not in (".py", ".pyc") and "__pycache__" not in rel.parts and not f.name.startswith("."):
            datas += ["--add-data", f"{f}{os.pathsep}{rel.parent}"]
    cmd = [str(py), "-m", "PyInstaller", "--noconfirm", "--clean", "--log-level", "WARN", mode, "--name", "outpost",
           "--distpath", str(ROOT / "dist"), "--workpath", str(work), "--specpath", str(work), "--paths", str(ROOT),
           "--strip", "--noupx", *datas,
           *(x for m in _BINARY_EXCLUDES for x in ("--exclude-module", m)),
           *(x for m in _BINARY_HIDDEN for x in ("--hidden-import", m)),
           *args, str(entry)]
    return subprocess.call(cmd, cwd=ROOT)


def cmd_bench(args: list[str]) -> int:
    py = dev_python()
    return subprocess.call([str(py), "-m", "bench", *args], cwd=ROOT)


def cmd_lock(args: list[str]) -> int:
    tools = ROOT / ".venv-lock"
    if not _py(tools).exists():
        venv.EnvBuilder(with_pip=True).create(tools)
        _run([str(_py(tools)), "-m", "pip", "install", "-q", "pip-tools"])
    for name in ("runtime", "dev", "sslyze"):
        _run([str(tools / "bin" / "pip-compile"), "-q", "--generate-hashes", "--allow-unsafe",
              "--strip-extras", "-o", f"{name}.lock", f"{name}.in", *args], cwd=REQ)
    return 0


COMMANDS = {"run": cmd_run, "test": cmd_test, "binary": cmd_binary, "bench": cmd_bench, "lock": cmd_lock}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=sorted(COMMANDS))
    parser.add_argument("args", nargs=argparse.REMAINDER, help="passed on to the command")
    ns = parser.parse_args()
    return COMMANDS[ns.command](ns.args)


if __name__ == "__main__":
    sys.exit(main())
