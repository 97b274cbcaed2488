"""PERF-4: durable audited writes, CSV export of 1M records over HTTPS, chain verification.

(a) Durable audited writes/s: a fresh encrypted `Database` (appliance.app.open_database),
    WRITERS concurrent asyncio tasks (uvloop) each awaiting
    `db.write(lambda c: audit.record(c, ...))` in a loop, bounded in count and time; every
    acknowledged write is committed with synchronous=FULL (group commit). References,
    same run, same disk: stdlib sqlite3 (unencrypted, WAL, synchronous=FULL, same table
    and indexes) with one row per transaction, and with one transaction per batch of
    WRITERS rows (the best a group commit could do at that concurrency).
(b) CSV export: `outpost init` a data directory; with no server running, open its
    database with data/keys/db.key and append 1,000,000 chained audit records (many
    records per `db.write` job); start the real server, set up, sign in, then stream
    GET /audit/export.csv over HTTPS in a separate client process. rows/s and server
    RSS growth (sampled every 50 ms). References: stdlib sqlite3 + csv.writer over an
    unencrypted copy of the same rows to /dev/null, and the product's own
    `export.csv_chunks` run in-process (no HTTP, no TLS) on the encrypted database.
(c) Chain verification: `audit.verify_chain` on the same 1M+ records (encrypted DB).
    References: the same function on the unencrypted stdlib copy, and plain hashlib
    chaining over the same canonical bytes.

Run alone: `python -m bench.audit`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import csv
import hashlib
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.load import ROOT, RssSampler, mib, print_table, rss_bytes, run_load, sign_in, start_appliance

WRITERS = 256
WRITE_MAX = 60_000
WRITE_SECONDS = 5.0
REF_SINGLE_MAX, REF_SINGLE_SECONDS = 20_000, 2.0
REF_BATCH_MAX, REF_BATCH_SECONDS = 200_000, 2.0
RECORDS = 1_000_000
FILL_BATCH = 50_000
CSV_SAMPLE = 200_000  # rows of the in-process csv_chunks reference
HASHLIB_SAMPLE = 500_000  # rows of the plain-hashlib reference
BUDGET_WRITES = 10_000
BUDGET_EXPORT = 100_000
BUDGET_EXPORT_RSS = 50 * 1024 * 1024
BUDGET_VERIFY = 300_000

_INSERT_FULL = ("INSERT INTO audit_log (seq, ts, code, action, actor_type, actor, source, target, outcome, details,"
                " prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")


def _uvloop_run(coro):
    try:
        import uvloop
        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


def _schema(db) -> list[str]:
    """The audit tables' DDL as the product's migrations created it (for the plain copies)."""
    return db.read_sync(lambda c: [r[0] for r in c.execute(
        "SELECT sql FROM sqlite_master WHERE tbl_name IN ('audit_log', 'audit_checkpoint') AND sql IS NOT NULL"
        " ORDER BY type DESC, name")])


def _plain(path: Path, ddl: list[str]) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    for sql in ddl:
        conn.execute(sql)
    return conn


# ---------------------------------------------------------------------------------------
# (a) durable audited writes
# ---------------------------------------------------------------------------------------

def bench_writes(tmp: Path) -> dict:
    from appliance.app import open_database
    from appliance.audit import log as audit
    from appliance.audit.events import Event
    from appliance.audit.models import Actor

    data = tmp / "writes"
    data.mkdir(mode=0o700)
    db, _ = open_database(data, readers=1)
    try:
        ddl = _schema(db)
        actor = Actor(type="user", name="admin", source="127.0.0.1")

        async def main() -> dict:
            done = 0
            stop = False

            async def writer(i: int) -> None:
                nonlocal done
                while not stop and done < WRITE_MAX:
                    await db.write(lambda c: audit.record(c, Event.AUTH_LOGIN_SUCCESS, ts=time.time(), actor=actor,
                                                          target=f"user:{i}"))
                    done += 1

            stats0 = db.stats()
            cpu0, t0 = time.process_time(), time.perf_counter()
            tasks = [asyncio.create_task(writer(i)) for i in range(WRITERS)]
            deadline = t0 + WRITE_SECONDS
            while done < WRITE_MAX and time.perf_counter() < deadline:
                await asyncio.sleep(0.01)
            stop = True
            await asyncio.gather(*tasks)
            elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
            stats1 = db.stats()
            batches = stats1["batches"] - stats0["batches"]
            return {"writes": done, "elapsed": elapsed, "rate": done / elapsed, "cpu": cpu, "batches": batches,
                    "avg_batch": done / max(1, batches), "largest": stats1["largest_batch"]}

        ours = _uvloop_run(main())
        ok = db.read_sync(audit.verify_chain)
        ours["chain_ok"] = ok.ok and ok.checked >= ours["writes"]
    finally:
        db.close()

    # References: stdlib sqlite3, unencrypted, WAL + synchronous=FULL, same table and indexes.
    row = (time.time(), "AUT001", "auth.login.success", "user", "admin", "127.0.0.1", "user:1", "success", "{}",
           b"\0" * 32, b"\1" * 32)
    sql = ("INSERT INTO audit_log (ts, code, action, actor_type, actor, source, target, outcome, details, prev_hash,"
           " hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
    conn = _plain(tmp / "ref-writes.db", ddl)
    try:
        n, cpu0, t0 = 0, time.process_time(), time.perf_counter()
        while n < REF_SINGLE_MAX and time.perf_counter() - t0 < REF_SINGLE_SECONDS:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(sql, row)
            conn.execute("COMMIT")
            n += 1
        single = {"rows": n, "elapsed": time.perf_counter() - t0, "cpu": time.process_time() - cpu0}
        n, cpu0, t0 = 0, time.process_time(), time.perf_counter()
        while n < REF_BATCH_MAX and time.perf_counter() - t0 < REF_BATCH_SECONDS:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(sql, [row] * WRITERS)
            conn.execute("COMMIT")
            n += WRITERS
        batch = {"rows": n, "elapsed": time.perf_counter() - t0, "cpu": time.process_time() - cpu0}
    finally:
        conn.close()
    for r in (single, batch):
        r["rate"] = r["rows"] / r["elapsed"]
    return {"ours": ours, "single": single, "batch": batch}


# ---------------------------------------------------------------------------------------
# (b) + (c) one million records
# ---------------------------------------------------------------------------------------

_USERS = [f"user{i:02d}" for i in range(50)]
_KINDS = [  # action, code, actor_type, outcome, details
    ("auth.login.success", "AUT001", "user", "success", "{}"),
    ("auth.login.failure", "AUT002", "anonymous", "failure", '{"reason":"unknown_user"}'),
    ("auth.login.failure", "AUT002", "user", "failure", '{"reason":"wrong_password"}'),
    ("auth.throttle", "AUT005", "anonymous", "denied", '{"endpoint":"login"}'),
]


def _fill_job(count: int, t_base: float):
    """A write job appending `count` chained records (the chain continues from the last one)."""
    from appliance.audit import log as audit
    from appliance.audit import queries

    def job(conn):
        seq, prev = queries.next_seq_and_prev_hash(conn)
        prev = prev or audit.GENESIS
        rows = []
        canonical, sha = audit.canonical, hashlib.sha256
        for i in range(count):
            action, code, atype, outcome, details = _KINDS[seq % 4]
            # 1 % hostile names (spreadsheet formulas) as a failed-login flood would leave
            actor = f"=HYPERLINK(\"x{seq}\")" if seq % 100 == 7 else _USERS[seq % 50]
            source, target = f"10.{seq % 7}.{seq % 251}.{seq % 13 + 1}", f"user:{seq % 50}" if atype == "user" else ""
            ts = t_base + seq * 0.01
            content = canonical(seq, ts, code, action, atype, actor, source, target, outcome, details)
            digest = sha(prev + content).digest()
            rows.append((seq, ts, code, action, atype, actor, source, target, outcome, details, prev, digest))
            prev, seq = digest, seq + 1
        conn.executemany(_INSERT_FULL, rows)
        return rows

    return job


def fill(data_dir: Path, tmp: Path) -> dict:
    from appliance.app import open_database

    db, _ = open_database(data_dir, readers=2)
    try:
        ddl = _schema(db)
        plain = _plain(tmp / "plain-copy.db", ddl)
        existing = db.read_sync(lambda c: [tuple(r) for r in c.execute(
            "SELECT seq, ts, code, action, actor_type, actor, source, target, outcome, details, prev_hash, hash"
            " FROM audit_log ORDER BY seq")])
        plain.execute("BEGIN")
        plain.executemany(_INSERT_FULL, existing)
        plain.execute("COMMIT")
        t_base = time.time() - RECORDS * 0.01
        enc_s = 0.0
        plain_s = [0.0]

        def copy_plain(rows) -> None:  # runs beside the next encrypted job (sqlite releases the GIL)
            t1 = time.perf_counter()
            plain.execute("BEGIN")
            plain.executemany(_INSERT_FULL, rows)
            plain.execute("COMMIT")
            plain_s[0] += time.perf_counter() - t1

        t_fill = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(1) as copier:
            pending = None
            for start in range(0, RECORDS, FILL_BATCH):
                t0 = time.perf_counter()
                rows = db.write_sync(_fill_job(min(FILL_BATCH, RECORDS - start), t_base))
                enc_s += time.perf_counter() - t0
                if pending is not None:
                    pending.result()
                pending = copier.submit(copy_plain, rows)
            pending.result()
        plain_s = plain_s[0]
        fill_wall = time.perf_counter() - t_fill
        total = db.read_sync(lambda c: c.execute("SELECT count(*) FROM audit_log").fetchone()[0])

        # (c) verification on the encrypted database, then the references
        from appliance.audit import export
        from appliance.audit import log as audit
        from appliance.audit.models import AuditFilter

        cpu0, t0 = time.process_time(), time.perf_counter()
        report = db.read_sync(audit.verify_chain)
        verify = {"s": time.perf_counter() - t0, "cpu": time.process_time() - cpu0, "ok": report.ok,
                  "checked": report.checked}
        cpu0, t0 = time.process_time(), time.perf_counter()
        report_plain = audit.verify_chain(plain)
        verify_plain = {"s": time.perf_counter() - t0, "cpu": time.process_time() - cpu0, "ok": report_plain.ok,
                        "checked": report_plain.checked}
        verify_hashlib = _hashlib_chain(plain)

        # in-process product CSV formatting (no HTTP/TLS) on the encrypted DB: a sample
        t0 = time.perf_counter()
        lines = 0
        with db.reader() as conn, open(os.devnull, "wb") as sink:
            for chunk in export.csv_chunks(conn, AuditFilter()):
                sink.write(chunk)
                lines += chunk.count(b"\n")
                if lines > CSV_SAMPLE:
                    break
        csv_inproc = {"rows": lines - 1, "s": time.perf_counter() - t0}
        plain.close()
    finally:
        t0 = time.perf_counter()
        db.close()
        close_s = time.perf_counter() - t0
    t0 = time.perf_counter()  # a reopen of the filled database: integrity checks run at every open
    open_database(data_dir, readers=2)[0].close()
    open_s = time.perf_counter() - t0
    return {"records": total, "fill_enc_rate": RECORDS / enc_s, "fill_plain_rate": RECORDS / plain_s,
            "fill_wall": fill_wall,
            "open_s": open_s, "close_s": close_s, "verify": verify, "verify_plain": verify_plain,
            "verify_hashlib": verify_hashlib, "csv_inproc": csv_inproc}


def _hashlib_chain(plain: sqlite3.Connection) -> dict:
    """Plain hashlib chaining over the same canonical bytes (the bytes are built untimed)."""
    from appliance.audit import log as audit

    cur = plain.execute("SELECT seq, ts, code, action, actor_type, actor, source, target, outcome, details, hash"
                        " FROM audit_log ORDER BY seq")
    sha, total, n = hashlib.sha256, 0.0, 0
    prev = audit.GENESIS
    ok = True
    while n < HASHLIB_SAMPLE and (rows := cur.fetchmany(50_000)):
        contents = [audit.canonical(*r[:10]) for r in rows]
        digests = [r[10] for r in rows]
        t0 = time.perf_counter()
        for content, digest in zip(contents, digests):
            prev = sha(prev + content).digest()
            if prev != digest:
                ok = False
        total += time.perf_counter() - t0
        n += len(rows)
    return {"s": total, "rows": n, "ok": ok}


def csv_reference(path: Path) -> dict:
    """stdlib sqlite3 + csv.writer, same rows (hash as hex), to /dev/null."""
    conn = sqlite3.connect(path)
    try:
        t0 = time.perf_counter()
        cur = conn.execute("SELECT seq, ts, code, action, actor_type, actor, source, target, outcome, details,"
                           " hex(hash) FROM audit_log ORDER BY seq")
        with open(os.devnull, "w", newline="") as sink:
            w = csv.writer(sink, lineterminator="\r\n")
            rows = 0
            while batch := cur.fetchmany(2000):
                w.writerows(batch)
                rows += len(batch)
        return {"rows": rows, "s": time.perf_counter() - t0}
    finally:
        conn.close()


def bench_export(tmp: Path) -> dict:
    work = tmp / "export"
    data = work / "data"
    work.mkdir()
    cmd = [sys.executable, "-m", "appliance", "init", "--data-dir", str(data)]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    cfg = work / "init.toml"
    from tests.conftest import FAST_HASH_CONFIG

    cfg.write_text(FAST_HASH_CONFIG)
    subprocess.run(cmd + ["--config", str(cfg)], cwd=ROOT, check=True, capture_output=True, timeout=60)
    filled = fill(data, tmp)
    t0 = time.perf_counter()
    app = start_appliance(work)  # same data dir: the database now holds the million records
    start_s = time.perf_counter() - t0
    try:
        cookie = sign_in(app)
        pid = app.proc.pid
        time.sleep(0.3)
        rss_before = rss_bytes(pid)
        with RssSampler(pid, 0.05) as rss:
            dl = run_load({"mode": "download", "port": app.port, "ca": app.ca, "path": "/audit/export.csv",
                           "headers": {"Cookie": f"__Host-outpost={cookie}"}, "timeout": 100.0},
                          server_pid=pid, timeout=120.0)
    finally:
        app.stop()
    ref = csv_reference(tmp / "plain-copy.db")
    return {**filled, "start_s": start_s, "download": dl, "rss_before": rss_before, "rss_max": rss.max,
            "csv_ref": ref}


def run() -> list[tuple[str, str, str, str, str]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="outpost-bench-audit-") as tmp_s:
        tmp = Path(tmp_s)
        w = bench_writes(tmp)
        e = bench_export(tmp)
    o, s, b = w["ours"], w["single"], w["batch"]
    rows.append((f"PERF-4a durable audited writes ({WRITERS} concurrent tasks, group commit)",
                 f"{o['rate']:,.0f} writes/s ({o['writes']:,} in {o['elapsed']:.1f} s; avg batch {o['avg_batch']:.0f},"
                 f" largest {o['largest']})" + ("" if o["chain_ok"] else "; CHAIN DID NOT VERIFY"),
                 f"stdlib sqlite3 FULL: {s['rate']:,.0f} rows/s one row per txn; {b['rate']:,.0f} rows/s"
                 f" {WRITERS} rows per txn",
                 f"≥ {BUDGET_WRITES:,}/s",
                 f"ours {o['cpu']:.1f} s CPU in {o['elapsed']:.1f} s (loop + writer thread, one process);"
                 f" refs {s['cpu']:.1f} s / {b['cpu']:.1f} s"))
    d = e["download"]
    exported = d["lines"] - 1
    ok_status = d["statuses"] == {"200": 1}
    rate = exported / d["elapsed_s"]
    growth = e["rss_max"] - e["rss_before"]
    rows.append((f"PERF-4b GET /audit/export.csv over HTTPS ({exported:,} rows, {d['bytes'] / 1e6:.0f} MB)",
                 f"{rate:,.0f} rows/s ({d['elapsed_s']:.1f} s, first byte {d['ttfb_ms']} ms);"
                 f" {exported / max(1e-9, d['server_cpu_s']):,.0f} rows per server CPU second"
                 + ("" if ok_status else f"; STATUS {d['statuses']}"),
                 f"stdlib sqlite3 + csv to /dev/null: {e['csv_ref']['rows'] / e['csv_ref']['s']:,.0f} rows/s;"
                 f" product csv_chunks in-process (no HTTP/TLS): {e['csv_inproc']['rows'] / e['csv_inproc']['s']:,.0f}"
                 f" rows/s",
                 f"≥ {BUDGET_EXPORT:,} rows/s",
                 f"server {d['server_cpu_s']:.1f} s / client {d['cpu_s']:.1f} s in {d['elapsed_s']:.1f} s;"
                 f" other processes {d.get('other_cpu_s', 0):.1f} s"))
    rows.append(("PERF-4b server RSS growth during the export",
                 f"+{mib(growth)} (max {mib(e['rss_max'])}, before {mib(e['rss_before'])})", "",
                 f"< {mib(BUDGET_EXPORT_RSS)}", ""))
    v, vp, vh = e["verify"], e["verify_plain"], e["verify_hashlib"]
    rows.append((f"PERF-4c verify_chain ({v['checked']:,} records, SQLCipher)",
                 f"{v['checked'] / v['s']:,.0f} records/s wall ({v['s']:.1f} s); {v['checked'] / v['cpu']:,.0f}/s per"
                 f" CPU second" + ("" if v["ok"] else "; CHAIN BROKEN"),
                 f"same code on stdlib sqlite3 copy: {vp['checked'] / vp['s']:,.0f}/s wall,"
                 f" {vp['checked'] / vp['cpu']:,.0f}/s per CPU s; plain hashlib chain over the same bytes:"
                 f" {vh['rows'] / vh['s']:,.0f}/s",
                 f"≥ {BUDGET_VERIFY:,}/s", f"{v['cpu']:.1f} s CPU in {v['s']:.1f} s (one thread)"))
    rows.append(("PERF-4 setup figures (informational)",
                 f"fill: {RECORDS:,} chained records via db.write_sync, {FILL_BATCH:,} per job, in {e['fill_wall']:.1f} s"
                 f" ({e['fill_enc_rate']:,.0f}/s in the writer)",
                 f"stdlib sqlite3 copy of the same rows, inserted alongside: {e['fill_plain_rate']:,.0f} rows/s",
                 "",
                 f"open_database() of the filled DB {e['open_s']:.1f} s (integrity checks at every open);"
                 f" server start with 1M records {e['start_s']:.1f} s"))
    return rows


def main() -> int:
    print_table(run(), "PERF-4 audit")
    return 0


if __name__ == "__main__":
    sys.exit(main())
