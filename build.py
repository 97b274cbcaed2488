#!/usr/bin/env python3
"""Outpost's one task runner.

    python3 build.py run [--data-dir DIR] [--listen HOST:PORT] [--demo-data] [serve options]
    python3 build.py test [pytest args]         (runs `lint` first)
    python3 build.py lint                        (ruff + mypy over appliance/; any finding fails)
    python3 build.py binary [--version X.Y.Z] [--out FILE]   (defaults: the package version, dist/outpost)
    python3 build.py bench [names...]
    python3 build.py lock          (maintainers: re-pin requirements/*.lock)
    python3 build.py keygen --out DIR                  (update root + signing key, README "Updates and the key ceremony")
    python3 build.py bundle --key K --cert C --version X.Y.Z [--min-version A.B.C] [--binary dist/outpost] --out FILE

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
    "uplot": {"dist/uPlot.iife.min.js": "uPlot.iife.min.js", "dist/uPlot.min.css": "uPlot.min.css", "LICENSE": "uPlot.LICENSE.txt"},
    "@xterm/xterm": {"lib/xterm.js": "xterm.js", "css/xterm.css": "xterm.css", "LICENSE": "xterm.LICENSE.txt"},
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


# --- lint and types (issue 12) ------------------------------------------------------------
# ruff (rules and line length in pyproject.toml) and mypy over appliance/. Both reached zero
# findings, so there is no baseline: any finding fails the run.


def cmd_lint(args: list[str]) -> int:
    """ruff + mypy over appliance/; non-zero exit on any finding."""
    bin_dir = dev_python().parent
    ruff = subprocess.call([str(bin_dir / "ruff"), "check", "--no-cache", "appliance"], cwd=ROOT)
    mypy = subprocess.call([str(bin_dir / "mypy"), "--no-incremental", *args], cwd=ROOT)
    _say(f"ruff {'clean' if ruff == 0 else 'FAILED'}, mypy {'clean' if mypy == 0 else 'FAILED'}")
    return 0 if ruff == mypy == 0 else 1


def cmd_test(args: list[str]) -> int:
    if cmd_lint([]) != 0:
        _say("lint or type check failed (see above); tests not run")
        return 1
    py = dev_python()
    ensure_venv(SSLYZE_VENV, [REQ / "sslyze.lock"])
    env = dict(os.environ, OUTPOST_SSLYZE=str(SSLYZE_VENV / "bin" / "sslyze"))
    return subprocess.call([str(py), "-m", "pytest", *args], cwd=ROOT, env=env)


# --- dist/outpost (PLAT-1, PERF-6) ------------------------------------------------------
# Mode: PyInstaller --onefile, stripped, no UPX. Measured on the 2-vCPU build VM while
# other test suites ran (load ~3), 9 interleaved cold starts each, fresh data dir per
# start, exec -> first 200 on /healthz over verified TLS (bench/binary.py's method):
#
#                                 size      start median (min)   idle RSS, process tree
#   onefile, stripped (chosen)   20.7 MB   0.89 s (0.72 s)       69 MB
#   onedir, stripped             46.9 MB   0.66 s (0.56 s)       68 MB
#   onefile, not stripped        39.7 MB   1.38 s (1.15 s)         -
#   onefile with faker+polyfactory 25.2 MB 1.43 s (0.99 s)         -
#   python -m appliance (venv)     -       0.60 s (0.53 s)       67 MB
#   (`outpost version`: onefile ~0.55 s, onedir ~0.15 s: unpack plus cleanup at exit.)
#
# The onefile bootloader inflates ~41 MB of shared libraries (cryptography's Rust
# extension, sqlcipher, libpython, libcrypto) into $TMPDIR/_MEIxxxxxx on every start:
# ~0.2 s at start, and about as much again at exit (removing the tree). A "onedir in one file"
# (onedir plus a self-extracting wrapper that unpacks once into a cache and reuses it)
# could at best reach the onedir start, i.e. save ~0.2 s of a 1.5 s budget, at the cost
# of our own launcher (sh + tar on the target, or a custom bootloader), cache-versioning
# logic, and a persistent unpacked tree that anyone with the service user's rights can
# alter and that then runs on every later start; onefile re-unpacks from the one file on
# every start. Onedir alone is 46 MB of ~135 files, over the 40 MB budget and not one
# file. So onefile: within every budget, nothing of our own to maintain.
# (`python3 build.py binary --onedir` builds build/onedir/outpost/ to re-measure.)
#
# Runtime needs of a onefile build, for the firmware image (firmware-image/):
# - $TMPDIR (default /tmp) must allow exec: the unpacked .so files are mmap'ed
#   executable. On a noexec TMPDIR the binary exits 127 with "error while loading shared
#   libraries: libz.so.1: failed to map segment from shared object". No --runtime-tmpdir
#   is baked in (no single path is right for both development and the appliance); the
#   systemd unit should give the service a private exec-able directory, e.g.
#   `CacheDirectory=outpost` + `Environment=TMPDIR=/var/cache/outpost` (or PrivateTmp=yes
#   when /tmp is exec-able).
# - SIGTERM to the bootloader is forwarded to the Python process, which shuts down
#   gracefully; the bootloader then removes the unpack directory and exits with the
#   child's status (tests/e2e/test_binary.py checks both). Use `KillMode=mixed` so
#   SIGTERM goes to the main process only (with control-group the child can get SIGTERM
#   twice, directly and forwarded, and a second one means "force exit" to web.server).
# - SIGKILL of the bootloader leaves the ~41 MB unpack directory behind: a private
#   TMPDIR/CacheDirectory bounds this (clean it in ExecStartPre, or PrivateTmp=yes).
#
# Size: --strip works (cryptography's Rust extension included) and matters: the pyenv
# libpython, sqlcipher and uvloop carry debug symbols, so the unpacked tree is 104 MB
# unstripped against 47 MB stripped, and a start costs ~0.5 s more. UPX is off (slower
# starts, compressed twice for nothing). Faker arrives through polyfactory (litestar's
# OpenAPI examples, imported only when create_examples=True; the app runs with
# openapi_config=None, so litestar never imports it on our path): excluding both saves
# 4.5 MB of binary, ~700 unpacked files and ~0.5 s per start.
_BINARY_ENTRY = """import sys

from appliance.cli import main

sys.exit(main())
"""
# uvicorn resolves these from strings in Config.load(); web/server.py imports the
# protocol classes by name too, and the contrib hook collects all of uvicorn, but the
# fast path must never depend on either.
_BINARY_HIDDEN = (
    "uvicorn.protocols.http.httptools_impl",
    "uvicorn.protocols.websockets.websockets_sansio_impl",
    "uvicorn.loops.uvloop",
    "uvicorn.lifespan.on",
    "httptools",
    "uvloop",
)
# Test, build and dev-only packages, and optional imports we never take. h11 is out so
# uvicorn cannot fall back to it; watchfiles only serves --reload (uvicorn catches the
# ImportError); readline only serves interactive pdb/code.
_BINARY_EXCLUDES = (
    "faker", "polyfactory", "pytest", "_pytest", "pluggy", "iniconfig", "hypothesis", "sortedcontainers",
    "playwright", "greenlet", "httpx", "httpcore", "h11", "rich", "rich_click", "pygments", "markdown_it", "mdurl",
    "dotenv", "watchfiles", "tkinter", "_tkinter", "PyInstaller", "pip", "setuptools", "pkg_resources",
    "_distutils_hack", "distutils", "lib2to3", "pydoc_data", "idlelib", "ensurepip", "sqlite3", "readline",
)
_BINARY_BUDGET_MB = 40


def _binary_datas() -> list[str]:
    """--add-data for every package data file under appliance/ (templates, static incl.
    vendor/, migrations, licences.json, trusted keys), laid out as in the source tree so
    importlib.resources and jinja's PackageLoader find them under sys._MEIPASS."""
    out = []
    for f in sorted((ROOT / "appliance").rglob("*")):
        rel = f.relative_to(ROOT)
        if not f.is_file() or f.suffix in (".py", ".pyc") or "__pycache__" in rel.parts:
            continue
        if any(part.startswith(".") for part in rel.parts):  # build stamps and the like
            continue
        out += ["--add-data", f"{f}{os.pathsep}{rel.parent}"]
    return out


def _take_option(args: list[str], name: str) -> tuple[str | None, list[str]]:
    """Remove `name VALUE` from args; return (VALUE or None, the rest)."""
    if name not in args:
        return None, args
    i = args.index(name)
    if i + 1 >= len(args):
        raise SystemExit(f"{name} needs a value")
    return args[i + 1], args[:i] + args[i + 2:]


def cmd_binary(args: list[str]) -> int:
    """Freeze the appliance into the one executable dist/outpost (PLAT-1, PERF-6)."""
    py = dev_python()
    onedir = "--onedir" in args  # measurement only, see the comment above
    args = [a for a in args if a != "--onedir"]
    version, args = _take_option(args, "--version")  # stamp another version (update tests)
    out, args = _take_option(args, "--out")  # where the executable goes (default dist/outpost)
    work = ROOT / "build" / ("pyinstaller" if version is None else f"pyinstaller-{version}")
    work.mkdir(parents=True, exist_ok=True)
    entry = work / "outpost_entry.py"
    stamp = "" if version is None else f"import appliance\nappliance.__version__ = {version!r}\n"
    entry.write_text(stamp + _BINARY_ENTRY)
    for name in ("htmx.min.js",):
        if not (VENDOR / name).is_file():
            _say(f"missing {VENDOR / name}")
            return 1
    # Build beside, then rename into dist/: a reader of dist/outpost never sees a half-written file.
    dist = ROOT / "build" / "onedir" if onedir else work / "dist"
    _say(f"freezing {'build/onedir/outpost/' if onedir else 'dist/outpost'} with PyInstaller ...")
    cmd = [str(py), "-m", "PyInstaller", "--noconfirm", "--clean", "--log-level", "WARN",
           "--onedir" if onedir else "--onefile", "--name", "outpost", "--distpath", str(dist),
           "--workpath", str(work), "--specpath", str(work), "--paths", str(ROOT), "--strip", "--noupx",
           *_binary_datas(),
           *(x for m in _BINARY_HIDDEN for x in ("--hidden-import", m)),
           *(x for m in _BINARY_EXCLUDES for x in ("--exclude-module", m)),
           *args, str(entry)]
    code = subprocess.call(cmd, cwd=ROOT)
    if code != 0 or onedir:
        return code
    binary = Path(out).absolute() if out else ROOT / "dist" / "outpost"
    binary.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(dist / "outpost"), str(binary))  # a rename within dist's file system
    # Smoke test away from the checkout and the venv: it must run on its own.
    probe = subprocess.run([str(binary), "version"], env={"PATH": "/usr/bin:/bin"}, cwd=work,
                           capture_output=True, text=True)
    if probe.returncode != 0:
        _say(f"{binary} does not run: {probe.stderr.strip()}")
        return 1
    size = binary.stat().st_size / 1e6
    _say(f"built {binary} ({size:.1f} MB, budget {_BINARY_BUDGET_MB} MB): {probe.stdout.strip()}")
    if size > _BINARY_BUDGET_MB:
        _say(f"over the PERF-6 size budget of {_BINARY_BUDGET_MB} MB")
        return 1
    return 0


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


def cmd_keygen(args: list[str]) -> int:
    """Update signing keys (UPD-1): `keygen --out DIR [--days N] [--root-name NAME]` writes a root
    key pair and a signing key certified by it; private keys 0600, never into the repository."""
    py = dev_python()
    return subprocess.call([str(py), "-m", "appliance.updates.release", "keygen", *args], cwd=ROOT)


def cmd_bundle(args: list[str]) -> int:
    """A signed update bundle (UPD-1): `bundle --key SIGNING_KEY --cert SIGNING_CERT [--binary dist/outpost]
    --version X.Y.Z [--min-version A.B.C] --out FILE`."""
    py = dev_python()
    return subprocess.call([str(py), "-m", "appliance.updates.release", "bundle", *args], cwd=ROOT)


COMMANDS = {"run": cmd_run, "test": cmd_test, "lint": cmd_lint, "binary": cmd_binary, "bench": cmd_bench, "lock": cmd_lock,
            "keygen": cmd_keygen, "bundle": cmd_bundle}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=sorted(COMMANDS))
    parser.add_argument("args", nargs=argparse.REMAINDER, help="passed on to the command")
    ns = parser.parse_args()
    return COMMANDS[ns.command](ns.args)


if __name__ == "__main__":
    sys.exit(main())
