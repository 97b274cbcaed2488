"""PERF-3: authenticated pages during a flood of 200 concurrent wrong-password logins.

The real appliance runs with the DEFAULT argon2 parameters (t=3, m=64 MiB, p=4,
hash_concurrency=2), since bounded memory is the point. A flood process keeps 200
workers busy, each on its own keep-alive connection: GET /login (fresh pre-session
cookie and CSRF token), then POST /login with the Origin header and a wrong password
for a *distinct unknown* username each time. Unknown users cost one argon2 verification
against the dummy hash (same as a wrong password), so account lockout never kicks in:
lockout behaviour is NOT what is measured here.

Meanwhile a separate probe process, signed in as admin, GETs /dashboard (HTML page:
session lookup + psutil health + template) every 20 ms on its own connection, and the
server's RSS is sampled every 100 ms.

Two variants, each on a fresh appliance:
- "throttle at max": [auth] login_attempts_per_minute = 1000 (the allowed maximum), and
  the flood's connections come from 64 loopback addresses (127.0.1.1-64; the server
  sees each as its own client), so the per-source throttle never bites and argon2 is
  saturated for the whole flood (the hasher's own queue cap answers the excess 429).
- "default throttle": 20 attempts/min per source; after the first 20, the flood is
  answered 429 without hashing (each refusal still writes an `auth.throttle` audit record).

Budget: probe p99 < 500 ms; RSS bounded (argon2's share is at most hash_concurrency ×
64 MiB = 128 MiB, whatever the flood).

Run alone: `python -m bench.logins`.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from bench.load import (SESSION_COOKIE, LoadProcess, RssSampler, mib, print_table, rss_bytes, run_load, sign_in,
                        start_appliance)

FLOOD_CONNS = 200
FLOOD_S = 16.0
PROBE_DELAY_S = 2.0  # let the flood saturate first
PROBE_INTERVAL_S = 0.02
BASELINE_S = 3.0
BUDGET_P99_MS = 500.0
ARGON2_MIB = 64
HASH_CONCURRENCY = 2

FLOOD_SOURCES = 64  # loopback addresses the max-throttle flood is spread over (64 × 1000/min ≫ the flood)

VARIANTS = [  # label, config, flood source addresses (0: all from 127.0.0.1)
    (f"throttle at max (1000/min), flood from {FLOOD_SOURCES} loopback addresses: argon2 saturated throughout",
     "[auth]\nlogin_attempts_per_minute = 1000\n", FLOOD_SOURCES),
    ("default throttle (20/min per source), flood from 127.0.0.1", "", 0),  # every other setting at default
]


def _probe_spec(app, cookie: str, *, delay: float, duration: float) -> dict:
    return {"mode": "probe", "port": app.port, "ca": app.ca, "path": "/dashboard", "delay": delay,
            "duration": duration, "interval": PROBE_INTERVAL_S, "max_requests": int(duration / PROBE_INTERVAL_S) + 10,
            "headers": {"Cookie": f"{SESSION_COOKIE}={cookie}"}, "timeout": 10.0}


def run_variant(workdir: Path, label: str, config: str, sources: int) -> dict:
    app = start_appliance(workdir, config)
    try:
        cookie = sign_in(app)
        pid = app.proc.pid
        with RssSampler(pid, 0.1) as idle_rss:
            baseline = run_load(_probe_spec(app, cookie, delay=0.0, duration=BASELINE_S), server_pid=pid)
        rss_before = rss_bytes(pid)
        with RssSampler(pid, 0.1) as rss:
            flood = LoadProcess({"mode": "flood", "port": app.port, "ca": app.ca, "conns": FLOOD_CONNS,
                                 "sources": sources, "duration": FLOOD_S, "max_requests": 1_000_000}, server_pid=pid)
            probe = run_load(_probe_spec(app, cookie, delay=PROBE_DELAY_S, duration=FLOOD_S - PROBE_DELAY_S - 1.0),
                             server_pid=pid)
            flood_res = flood.join()
        alive = app.proc.poll() is None
    finally:
        app.stop()
    samples = [s for _, s in rss.samples]
    third = max(1, len(samples) // 3)
    return {"label": label, "baseline": baseline, "probe": probe, "flood": flood_res, "alive": alive,
            "rss_idle": idle_rss.max, "rss_before": rss_before, "rss_max": rss.max,
            "rss_max_mid": max(samples[third:2 * third] or [0]), "rss_max_last": max(samples[2 * third:] or [0]),
            "rss_end": rss.last}


def run() -> list[tuple[str, str, str, str, str]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="outpost-bench-logins-") as tmp:
        results = [run_variant(Path(tmp) / f"v{i}", *variant) for i, variant in enumerate(VARIANTS)]
    bound = HASH_CONCURRENCY * ARGON2_MIB * 1024 * 1024
    for r in results:
        p, b, f = r["probe"], r["baseline"], r["flood"]
        st = f["statuses"]
        hashed = st.get("401", 0)
        odd = {k: v for k, v in st.items() if k not in ("401", "429")}
        bad_probe = {k: v for k, v in p["statuses"].items() if k != "200"}
        # CPU of everything else on the machine during the probe's interval (the flood
        # generator's share is scaled to that interval).
        elsewhere = max(0.0, p.get("machine_busy_s", 0.0) - p["server_cpu_s"] - p["cpu_s"]
                    - f["cpu_s"] * p["elapsed_s"] / max(1e-9, f["elapsed_s"]))
        rows.append((f"PERF-3 [{r['label']}] GET /dashboard p50/p99 during flood",
                     f"p50 {p['p50_ms']:.0f} ms, p99 {p['p99_ms']:.0f} ms, max {p['max_ms']:.0f} ms ({p['requests']} probes"
                     + (f", NON-200 {bad_probe}" if bad_probe else "") + (f", {p['errors']} errors" if p["errors"] else "")
                     + ")",
                     f"same probe, no flood: p50 {b['p50_ms']:.0f} ms, p99 {b['p99_ms']:.0f} ms",
                     f"p99 < {BUDGET_P99_MS:.0f} ms",
                     f"server {p['server_cpu_s']:.1f} s in {p['elapsed_s']:.0f} s (flood + probe); flood gen {f['cpu_s']:.1f} s;"
                     f" probe {p['cpu_s']:.1f} s; other processes {elsewhere:.1f} s"))
        rows.append((f"PERF-3 [{r['label']}] flood",
                     f"{f['rps']:.0f} attempts/s: {hashed} answered 401 (argon2 ran), {st.get('429', 0)} answered 429"
                     + (f", other statuses {odd}" if odd else "") + (f", {f['errors']} errors" if f["errors"] else ""),
                     f"{FLOOD_CONNS} workers, distinct unknown users (no lockout)", "",
                     f"flood gen {f['cpu_s']:.1f} s; server {f.get('server_cpu_s', 0):.1f} s in {f['elapsed_s']:.0f} s"))
        growth = r["rss_max"] - r["rss_before"]
        trend = "still rising at the end" if r["rss_max_last"] > r["rss_max_mid"] + 16 * 1024 * 1024 else "flat"
        rows.append((f"PERF-3 [{r['label']}] server RSS",
                     f"max {mib(r['rss_max'])} (+{mib(growth)} over {mib(r['rss_before'])} before the flood);"
                     f" last third {mib(r['rss_max_last'])} vs middle third {mib(r['rss_max_mid'])}: {trend}",
                     f"idle {mib(r['rss_idle'])}; argon2 bound {HASH_CONCURRENCY} × {ARGON2_MIB} MiB",
                     f"bounded (growth ≤ {mib(bound)} + slack)",
                     "server alive after flood" if r["alive"] else "SERVER DIED"))
    return rows


def main() -> int:
    print_table(run(), "PERF-3 logins")
    return 0


if __name__ == "__main__":
    sys.exit(main())
