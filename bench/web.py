"""PERF-2: authenticated JSON over HTTPS against a bare endpoint on the same server stack.

Ours: the real appliance (`python -m appliance serve`, fast argon2 test config), set
up and signed in as admin; `GET /dashboard/health.json` with the session cookie, 50
keep-alive connections. Reference, same run: a bare Litestar app in its own process,
served by the same `appliance.web.server.serve` (uvicorn + uvloop + httptools) with
the same `TLSManager.ssl_context()` (same profile, same certificate), no security
middleware, no guards, no session lookup.

Two pairs are measured, because /dashboard/health.json calls psutil on every request
(that collection costs more than all the security layers together, which would hide
their cost):
  1. /dashboard/health.json: ours vs a bare endpoint doing the same collection
     (the same code as `Services.health()`: TLS info + `appliance.system.health.collect`).
  2. /healthz sent *with* the session cookie: the cheapest route of ours that still
     runs every security layer (Host check, cookie parse, session lookup in SQLCipher,
     both app guards, security headers); its handler is one `SELECT 1`. Bare: the
     same JSON after a `SELECT 1` on an in-memory sqlite3 connection.
The security-layer budget (< 40 % cost, ours ≥ 0.6× bare) is read on both.

Run alone: `python -m bench.web`.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

from appliance.paths import DataDir
from bench.load import ROOT, SESSION_COOKIE, print_table, run_load, sign_in, start_appliance, wrk

CONNS = 50
WARMUP_S = 1.0
DURATION_S = 4.0
ROUNDS = 2  # each configuration is measured ROUNDS times, interleaved; the best round counts
MAX_REQUESTS = 200_000
WRK_SECONDS = 4
BUDGET_RPS = 3000
BUDGET_P99_MS = 50.0
BUDGET_RATIO = 0.6


# ---------------------------------------------------------------------------------------
# the bare reference server (runs in its own process: python -m bench.web --bare DIR PORT)
# ---------------------------------------------------------------------------------------

def bare_main(data_dir: Path, port: int) -> int:
    import uvloop
    from litestar import Litestar, Request, Response, get

    from appliance import config as config_mod
    from appliance.clock import SystemClock
    from appliance.crypto import keyfile
    from appliance.system import health
    from appliance.tls.manager import TLSManager
    from appliance.tls.rekey import key_password
    from appliance.web.server import serve

    cfg = config_mod.Config()
    clock = SystemClock()
    paths = DataDir(data_dir)
    key = keyfile.load_key(paths.db_key)
    tls = TLSManager(paths.tls, cfg.tls, cfg.web.hostname, clock, key_password=key_password(key),
                     audit=lambda *a, **k: None)  # nothing to record: it must not change anything (checked below)
    if tls.ensure():
        raise SystemExit("bare server: the appliance's certificate was not reusable as it is")
    started_at = clock.now()
    db_path = paths.db
    mem = sqlite3.connect(":memory:", check_same_thread=False)

    def size_bytes() -> int:
        total = 0
        for suffix in ("", "-wal"):
            try:
                total += os.stat(f"{db_path}{suffix}").st_size
            except FileNotFoundError:
                pass
        return total

    @get("/dashboard/health.json")
    async def health_json(request: Request) -> Response:
        info = tls.info()  # exactly what Services.health() does per request
        return Response(health.collect(data_dir=data_dir, database_bytes=size_bytes(),
                                       cert_not_after=info.leaf_not_after, cert_fingerprint=info.leaf_fingerprint,
                                       started_at=started_at, now=clock.now()))

    @get("/healthz")
    async def healthz(request: Request) -> Response:
        ok = mem.execute("SELECT 1").fetchone()[0] == 1
        return Response({"status": "ok" if ok else "not ok"}, status_code=200 if ok else 503)

    app = Litestar(route_handlers=[health_json, healthz], openapi_config=None, debug=False, logging_config=None,
                   signature_namespace={"Request": Request, "Response": Response})
    uvloop.run(serve(app, host="127.0.0.1", port=port, ssl_context=tls.ssl_context()))
    return 0


class BareServer:
    def __init__(self, data_dir: Path, port: int, log: Path) -> None:
        self.port = port
        self._log = open(log, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.web", "--bare", str(data_dir), str(port)], cwd=ROOT,
                                     stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        self.log = log
        self._wait(DataDir(data_dir).tls_ca_pem)

    def _wait(self, ca: Path, timeout: float = 30.0) -> None:
        import httpx

        from tests.conftest import wait_until

        def answers() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"bare server exited:\n{self.log.read_text(errors='replace')[-2000:]}")
            try:
                return httpx.get(f"https://localhost:{self.port}/healthz", verify=str(ca), timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        if not wait_until(answers, timeout):
            raise RuntimeError("bare server did not answer")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self._log.close()


# ---------------------------------------------------------------------------------------
# the benchmark
# ---------------------------------------------------------------------------------------

def _measure(port: int, ca: str, path: str, pid: int, cookie: str | None) -> dict:
    headers = {"Cookie": f"{SESSION_COOKIE}={cookie}"} if cookie else {}
    r = run_load({"mode": "get", "port": port, "ca": ca, "path": path, "headers": headers, "conns": CONNS,
                  "warmup": WARMUP_S, "duration": DURATION_S, "max_requests": MAX_REQUESTS}, server_pid=pid)
    bad = {k: v for k, v in r["statuses"].items() if k != "200"}
    if bad or r["requests"] == 0:
        raise RuntimeError(f"GET {path} on port {port}: non-200 answers {bad} ({r['requests']} requests)")
    return r


def _fig(r: dict) -> str:
    spread = "/".join(f"{x:,.0f}" for x in r.get("all_rps", []))
    return (f"{r['rps']:,.0f} req/s, p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms"
            + (f" (rounds: {spread})" if len(r.get("all_rps", [])) > 1 else ""))


def _us(r: dict) -> float:
    """Server CPU per request in µs: unlike req/s, barely moved by other load on the machine."""
    return 1e6 * r["server_cpu_s"] / max(1, r["requests"])


def _cpu(r: dict) -> str:
    return (f"server {r['server_cpu_s']:.1f} s ({_us(r):.0f} µs/req) / load {r['cpu_s']:.1f} s in"
            f" {r['elapsed_s']:.0f} s, other processes {r.get('other_cpu_s', 0):.1f} s")


def run() -> list[tuple[str, str, str, str, str]]:
    from tests.conftest import free_port

    rows: list[tuple[str, str, str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="outpost-bench-web-") as tmp:
        app = start_appliance(Path(tmp) / "ours")
        bare = None
        try:
            cookie = sign_in(app)
            bare = BareServer(app.data_dir, free_port(), Path(tmp) / "bare.log")
            pid_ours, pid_bare = app.proc.pid, bare.proc.pid
            configs = {
                "bare_health": (bare.port, "/dashboard/health.json", pid_bare, None),
                "ours_health": (app.port, "/dashboard/health.json", pid_ours, cookie),
                "ours_cheap": (app.port, "/healthz", pid_ours, cookie),
                "bare_cheap": (bare.port, "/healthz", pid_bare, None),
            }
            rounds: dict[str, list[dict]] = {k: [] for k in configs}
            for _ in range(ROUNDS):  # interleaved, so a burst of outside load hits both sides alike
                for name, (port, path, pid, ck) in configs.items():
                    rounds[name].append(_measure(port, app.ca, path, pid, ck))
            res = {k: max(v, key=lambda r: r["rps"]) for k, v in rounds.items()}
            for k, v in rounds.items():
                res[k]["all_rps"] = [r["rps"] for r in v]
            cookie_hdr = {"Cookie": f"{SESSION_COOKIE}={cookie}"}
            wrk_ours = wrk(f"https://127.0.0.1:{app.port}/dashboard/health.json", conns=CONNS, seconds=WRK_SECONDS,
                           headers=cookie_hdr)
            wrk_bare = wrk(f"https://127.0.0.1:{bare.port}/dashboard/health.json", conns=CONNS, seconds=WRK_SECONDS)
        finally:
            if bare is not None:
                bare.stop()
            app.stop()

    oh, bh, oc, bc = res["ours_health"], res["bare_health"], res["ours_cheap"], res["bare_cheap"]
    ratio_h, ratio_c = oh["rps"] / bh["rps"], oc["rps"] / bc["rps"]
    rows.append((f"PERF-2 GET /dashboard/health.json, signed in, {CONNS} conns",
                 _fig(oh), f"bare Litestar, same psutil work: {_fig(bh)}",
                 f"≥ {BUDGET_RPS:,} req/s, p99 < {BUDGET_P99_MS:.0f} ms", f"ours: {_cpu(oh)}; bare: {_cpu(bh)}"))
    rows.append(("PERF-2 security layers, health.json (ours / bare)",
                 f"{ratio_h:.2f}× by req/s (cost {100 * (1 - ratio_h):.0f} %); {_us(bh) / _us(oh):.2f}× by server CPU per"
                 f" request ({_us(oh):.0f} vs {_us(bh):.0f} µs)",
                 "bare = 1.00×", f"≥ {BUDGET_RATIO}× (cost < 40 %)", ""))
    rows.append((f"PERF-2 GET /healthz with session cookie (all layers + session lookup), {CONNS} conns",
                 _fig(oc), f"bare Litestar, SELECT 1: {_fig(bc)}", f"≥ {BUDGET_RPS:,} req/s, p99 < {BUDGET_P99_MS:.0f} ms",
                 f"ours: {_cpu(oc)}; bare: {_cpu(bc)}"))
    rows.append(("PERF-2 security layers, cheap route (ours / bare)",
                 f"{ratio_c:.2f}× by req/s (cost {100 * (1 - ratio_c):.0f} %); {_us(bc) / _us(oc):.2f}× by server CPU per"
                 f" request ({_us(oc):.0f} vs {_us(bc):.0f} µs)",
                 "bare = 1.00×", f"≥ {BUDGET_RATIO}× (cost < 40 %)", ""))
    if wrk_ours and wrk_bare:
        rows.append((f"PERF-2 health.json by wrk -t1 -c{CONNS} ({WRK_SECONDS} s)",
                     f"{wrk_ours['rps']:,.0f} req/s, p50 {wrk_ours['p50_ms']} ms, p99 {wrk_ours['p99_ms']} ms"
                     + (f" ({wrk_ours['non2xx']} non-2xx!)" if wrk_ours["non2xx"] else ""),
                     f"bare: {wrk_bare['rps']:,.0f} req/s, p50 {wrk_bare['p50_ms']} ms, p99 {wrk_bare['p99_ms']} ms",
                     f"≥ {BUDGET_RPS:,} req/s", "wrk (C) as load generator"))
    else:
        rows.append(("PERF-2 wrk cross-check", "wrk not on PATH: skipped", "", "", ""))
    rows.append(("PERF-2 vs FastAPI + uvicorn (≥ 1.2×)", "not measured", "FastAPI is not in requirements/*.lock",
                 "≥ 1.2× FastAPI", ""))
    return rows


def main(argv: list[str]) -> int:
    if argv[:1] == ["--bare"]:
        return bare_main(Path(argv[1]), int(argv[2]))
    print_table(run(), "PERF-2 web")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
