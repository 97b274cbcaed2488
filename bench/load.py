"""Shared load generator and helpers for the benchmarks.

Client side (`python -m bench.load '<json spec>'`, always a process of its own so its
CPU is measured apart from the server's): asyncio on uvloop, raw TLS connections
with HTTP/1.1 keep-alive, responses parsed by httptools (the parser uvicorn uses).
Modes:

- get:      N keep-alive connections, each with one request in flight (like wrk);
            warm-up, then a measured phase bounded in time and in request count.
- flood:    N workers, each GET /login (pre-session cookie + CSRF token), then POST
            /login with a wrong password for a distinct unknown user, in a loop;
            optionally spread over `sources` loopback addresses (127.0.1.x).
- probe:    one connection, one request every `interval` seconds (latency sampler).
- download: one GET whose body is streamed and counted (bytes and lines), not kept.

The process prints "START" when its measured phase begins, "END" when it ends, then
one JSON line with the result. The orchestrator side (`run_load`) snapshots the
server's CPU time at START and END, so both sides' CPU cover the same interval.

Orchestrator helpers: `start_appliance`, `sign_in`, `RssSampler`, `cpu_seconds`,
`print_table`, `wrk`.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SESSION_COOKIE = "__Host-outpost"
PRE_COOKIE = "__Host-outpost-pre"
HARD_TIMEOUT_S = 120.0  # no load process ever lives longer than this
if str(ROOT) not in sys.path:  # tests.conftest (the real-server fixture) is imported from the repository
    sys.path.insert(0, str(ROOT))


# ---------------------------------------------------------------------------------------
# client side (runs in the load-generator process)
# ---------------------------------------------------------------------------------------

class _Conn:
    """One keep-alive HTTP/1.1 connection over TLS (an asyncio Protocol)."""

    def __init__(self, loop) -> None:
        import httptools

        self.loop = loop
        self.transport = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter = None
        self.status = 0
        self.parts: list[bytes] | None = None
        self.keep_body = False
        self.count_lines = False
        self.nbytes = 0
        self.newlines = 0
        self.first_byte = 0.0
        self.set_cookies: list[bytes] = []
        self.closed = False

    # asyncio.Protocol
    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if not self.first_byte:
            self.first_byte = time.perf_counter()
        try:
            self.parser.feed_data(data)
        except Exception as exc:  # malformed response: fail the request, drop the connection
            self._fail(exc)
            self.transport.close()

    def eof_received(self):
        return False

    def pause_writing(self) -> None:
        pass

    def resume_writing(self) -> None:
        pass

    def connection_lost(self, exc) -> None:
        self.closed = True
        self._fail(exc or ConnectionError("connection closed"))

    def _fail(self, exc: BaseException) -> None:
        w = self.waiter
        if w is not None and not w.done():
            w.set_exception(exc)

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.status, self.nbytes, self.newlines = 0, 0, 0
        self.parts = [] if self.keep_body else None
        self.set_cookies = []

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"set-cookie":
            self.set_cookies.append(value)

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self.nbytes += len(body)
        if self.count_lines:
            self.newlines += body.count(b"\n")
        if self.parts is not None:
            self.parts.append(body)

    def on_message_complete(self) -> None:
        if not self.parser.should_keep_alive():
            self.closed = True
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(self.status)

    async def request(self, raw: bytes, *, keep_body: bool = False, count_lines: bool = False) -> int:
        if self.closed:
            raise ConnectionError("connection closed")
        self.keep_body, self.count_lines, self.first_byte = keep_body, count_lines, 0.0
        self.waiter = self.loop.create_future()
        self.transport.write(raw)
        return await self.waiter

    def body(self) -> bytes:
        return b"".join(self.parts or [])

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def _client_context(spec: dict) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=spec["ca"])
    return ctx


async def _connect(spec: dict, ctx: ssl.SSLContext, source: str | None = None) -> _Conn:
    """A TLS connection to 127.0.0.1; `source` picks another loopback address to come from."""
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_connection(lambda: _Conn(loop), "127.0.0.1", spec["port"], ssl=ctx,
                                            server_hostname="localhost",
                                            local_addr=(source, 0) if source else None)
    return proto


def _source(spec: dict, i: int) -> str | None:
    """Worker i's source address: 127.0.1.x when the spec spreads load over `sources` addresses."""
    n = spec.get("sources", 0)
    return f"127.0.1.{i % n + 1}" if n else None


def _request(method: str, path: str, spec: dict, headers: dict | None = None, body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: localhost:{spec['port']}", "User-Agent: outpost-bench",
             "Accept: */*"]
    for k, v in {**spec.get("headers", {}), **(headers or {})}.items():
        lines.append(f"{k}: {v}")
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _percentiles(samples: list[float]) -> dict:
    if not samples:
        return {"p50_ms": None, "p90_ms": None, "p99_ms": None, "max_ms": None}
    s = sorted(samples)

    def pct(p: float) -> float:
        return round(1000 * s[min(len(s) - 1, int(p * len(s)))], 2)

    return {"p50_ms": pct(0.50), "p90_ms": pct(0.90), "p99_ms": pct(0.99), "max_ms": round(1000 * s[-1], 2)}


def _mark(word: str) -> None:
    print(word, flush=True)


class _Phase:
    """Measured phase bookkeeping shared by the workers of one mode."""

    def __init__(self, max_count: int) -> None:
        self.measuring = False
        self.stop = False
        self.count = 0
        self.max_count = max_count
        self.lat: list[float] = []
        self.statuses: Counter = Counter()
        self.errors = 0
        self.t0 = self.t1 = 0.0
        self.cpu0 = self.cpu1 = 0.0

    def begin(self) -> None:
        self.cpu0, self.t0 = time.process_time(), time.perf_counter()
        self.measuring = True
        _mark("START")

    def end(self) -> None:
        self.stop = True
        self.measuring = False
        self.t1, self.cpu1 = time.perf_counter(), time.process_time()
        _mark("END")

    async def run_for(self, duration: float) -> None:
        self.begin()
        deadline = time.perf_counter() + duration
        while time.perf_counter() < deadline and self.count < self.max_count:
            await asyncio.sleep(0.02)
        self.end()

    def result(self, **extra) -> dict:
        elapsed = max(1e-9, self.t1 - self.t0)
        return {"requests": self.count, "elapsed_s": round(elapsed, 3), "rps": round(self.count / elapsed, 1),
                **_percentiles(self.lat), "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
                "errors": self.errors, "cpu_s": round(self.cpu1 - self.cpu0, 3), **extra}


async def _stop_workers(tasks: list[asyncio.Task], conns: list[_Conn]) -> None:
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for c in conns:
        c.close()
    await asyncio.sleep(0.05)


async def mode_get(spec: dict) -> dict:
    """N connections, one request in flight each, warm-up then measured phase."""
    ctx = _client_context(spec)
    raw = _request("GET", spec["path"], spec)
    conns = list(await asyncio.gather(*[_connect(spec, ctx) for _ in range(spec["conns"])]))
    phase = _Phase(spec.get("max_requests", 1_000_000))
    max_errors = spec.get("max_errors", 1000)

    async def worker(i: int) -> None:
        conn = conns[i]
        while not phase.stop:
            t0 = time.perf_counter()
            try:
                status = await conn.request(raw)
            except Exception:
                phase.errors += 1
                if phase.errors > max_errors:
                    return
                conn.close()
                conn = conns[i] = await _connect(spec, ctx)
                continue
            if phase.measuring and t0 >= phase.t0:
                phase.lat.append(time.perf_counter() - t0)
                phase.statuses[status] += 1
                phase.count += 1
            if conn.closed:
                conn = conns[i] = await _connect(spec, ctx)

    tasks = [asyncio.create_task(worker(i)) for i in range(len(conns))]
    await asyncio.sleep(spec.get("warmup", 1.0))
    await phase.run_for(spec["duration"])
    await _stop_workers(tasks, conns)
    return phase.result(conns=len(conns))


_CSRF = re.compile(rb'name="_csrf" value="([^"]+)"')


def _cookie_value(set_cookies: list[bytes], name: str) -> str | None:
    prefix = name.encode() + b"="
    for raw in set_cookies:
        if raw.startswith(prefix):
            return raw[len(prefix):].split(b";", 1)[0].decode("latin-1")
    return None


async def mode_flood(spec: dict) -> dict:
    """Wrong-password logins for distinct unknown users, each with its own CSRF pre-session."""
    ctx = _client_context(spec)
    port = spec["port"]
    conns = list(await asyncio.gather(*[_connect(spec, ctx, _source(spec, i)) for i in range(spec["conns"])]))
    phase = _Phase(spec.get("max_requests", 1_000_000))
    get_login = _request("GET", "/login", spec)
    seq = [0]
    max_errors = spec.get("max_errors", 5000)

    async def attempt(conn: _Conn) -> int:
        await conn.request(get_login, keep_body=True)
        m = _CSRF.search(conn.body())
        pre = _cookie_value(conn.set_cookies, PRE_COOKIE)
        if not m or not pre:
            raise RuntimeError(f"/login gave no CSRF token or pre-session cookie (status {conn.status})")
        seq[0] += 1
        form = (f"_csrf={m.group(1).decode()}&username=nosuchuser-{os.getpid()}-{seq[0]}"
                f"&password=wrong-password-{seq[0]}").encode()
        raw = _request("POST", "/login", spec, {"Origin": f"https://localhost:{port}", "Cookie": f"{PRE_COOKIE}={pre}",
                                                "Content-Type": "application/x-www-form-urlencoded"}, form)
        return await conn.request(raw)

    async def worker(i: int) -> None:
        conn = conns[i]
        while not phase.stop:
            t0 = time.perf_counter()
            try:
                status = await attempt(conn)
            except Exception:
                phase.errors += 1
                if phase.errors > max_errors:
                    return
                conn.close()
                await asyncio.sleep(0.01)
                try:
                    conn = conns[i] = await _connect(spec, ctx, _source(spec, i))
                except Exception:
                    phase.errors += 1
                continue
            if phase.measuring:
                phase.lat.append(time.perf_counter() - t0)
                phase.statuses[status] += 1
                phase.count += 1
            if conn.closed:
                conn = conns[i] = await _connect(spec, ctx, _source(spec, i))

    phase.begin()
    tasks = [asyncio.create_task(worker(i)) for i in range(len(conns))]
    deadline = time.perf_counter() + spec["duration"]
    while time.perf_counter() < deadline and phase.count < phase.max_count:
        await asyncio.sleep(0.05)
    phase.end()
    await _stop_workers(tasks, conns)
    return phase.result(conns=len(conns))


async def mode_probe(spec: dict) -> dict:
    """One connection; one request every `interval` s after `delay` s; latency of each."""
    ctx = _client_context(spec)
    conn = await _connect(spec, ctx)
    raw = _request("GET", spec["path"], spec)
    await conn.request(raw)  # handshake and first request outside the measured phase
    await asyncio.sleep(spec.get("delay", 0.0))
    phase = _Phase(spec.get("max_requests", 100_000))
    phase.begin()
    deadline = time.perf_counter() + spec["duration"]
    timeline = []
    while time.perf_counter() < deadline and phase.count < phase.max_count:
        t0 = time.perf_counter()
        try:
            status = await asyncio.wait_for(conn.request(raw), spec.get("timeout", 10.0))
        except Exception:
            phase.errors += 1
            conn.close()
            conn = await _connect(spec, ctx)
            continue
        dt = time.perf_counter() - t0
        phase.lat.append(dt)
        timeline.append((round(t0 - phase.t0, 2), round(dt * 1000, 1)))
        phase.statuses[status] += 1
        phase.count += 1
        if conn.closed:
            conn = await _connect(spec, ctx)
        await asyncio.sleep(max(0.0, spec["interval"] - dt))
    phase.end()
    conn.close()
    return phase.result(worst=sorted(timeline, key=lambda x: -x[1])[:5])


async def mode_download(spec: dict) -> dict:
    """One streamed GET; bytes and lines counted as they arrive, nothing kept."""
    ctx = _client_context(spec)
    conn = await _connect(spec, ctx)
    raw = _request("GET", spec["path"], spec)
    phase = _Phase(1)
    phase.begin()
    t0 = time.perf_counter()
    status = await asyncio.wait_for(conn.request(raw, count_lines=True), spec.get("timeout", 90.0))
    phase.count = 1
    phase.statuses[status] += 1
    ttfb = conn.first_byte - t0 if conn.first_byte else None
    phase.end()
    conn.close()
    return phase.result(bytes=conn.nbytes, lines=conn.newlines, ttfb_ms=round(1000 * ttfb, 1) if ttfb else None)


MODES = {"get": mode_get, "flood": mode_flood, "probe": mode_probe, "download": mode_download}


def client_main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    try:
        import uvloop
        run = uvloop.run
    except ImportError:  # still works, just slower
        run = asyncio.run

    async def bounded():
        return await asyncio.wait_for(MODES[spec["mode"]](spec), spec.get("hard_timeout", HARD_TIMEOUT_S))

    result = run(bounded())
    print(json.dumps(result), flush=True)
    return 0


# ---------------------------------------------------------------------------------------
# orchestrator side
# ---------------------------------------------------------------------------------------

def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads)."""
    import psutil

    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def rss_bytes(pid: int) -> int:
    import psutil

    return psutil.Process(pid).memory_info().rss


class RssSampler:
    """Samples a process's RSS every `interval` seconds in a thread until stopped."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.pid, self.interval = pid, interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        t0 = time.monotonic()
        while not self._stop.is_set():
            try:
                self.samples.append((time.monotonic() - t0, rss_bytes(self.pid)))
            except Exception:
                return
            self._stop.wait(self.interval)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    @property
    def max(self) -> int:
        return max((s for _, s in self.samples), default=0)

    @property
    def first(self) -> int:
        return self.samples[0][1] if self.samples else 0

    @property
    def last(self) -> int:
        return self.samples[-1][1] if self.samples else 0


def run_load(spec: dict, *, server_pid: int | None = None, timeout: float = HARD_TIMEOUT_S) -> dict:
    """Run one load process; returns its result plus `server_cpu_s` over its measured phase."""
    spec = {"hard_timeout": timeout - 5, **spec}
    proc = subprocess.Popen([sys.executable, "-m", "bench.load", json.dumps(spec)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    cpu0 = cpu1 = None
    busy0 = busy1 = None
    result = None
    try:
        for line in proc.stdout:
            line = line.strip()
            if line == "START":
                cpu0 = cpu_seconds(server_pid) if server_pid else None
                busy0 = machine_busy_seconds()
            elif line == "END":
                cpu1 = cpu_seconds(server_pid) if server_pid else None
                busy1 = machine_busy_seconds()
            elif line.startswith("{"):
                result = json.loads(line)
        err = proc.stderr.read()
        proc.wait(timeout=10)
    finally:
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if result is None:
        raise RuntimeError(f"load generator failed (exit {proc.returncode}):\n{err[-3000:]}")
    if cpu0 is not None and cpu1 is not None:
        result["server_cpu_s"] = round(cpu1 - cpu0, 3)
    if busy0 is not None and busy1 is not None:
        # CPU the whole machine spent in the same interval; what is left after the server
        # and this load generator is other work (other processes on a shared machine).
        result["machine_busy_s"] = round(busy1 - busy0, 3)
        result["other_cpu_s"] = round(max(0.0, busy1 - busy0 - result.get("server_cpu_s", 0.0) - result["cpu_s"]), 3)
    return result


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (all cores), from /proc/stat via psutil."""
    import psutil

    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)


class LoadProcess:
    """A load process started in the background (for concurrent flood + probe)."""

    def __init__(self, spec: dict, *, server_pid: int | None = None, timeout: float = HARD_TIMEOUT_S) -> None:
        self.result: dict | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(spec, server_pid, timeout), daemon=True)
        self._thread.start()

    def _run(self, spec, server_pid, timeout) -> None:
        try:
            self.result = run_load(spec, server_pid=server_pid, timeout=timeout)
        except BaseException as exc:
            self.error = exc

    def join(self) -> dict:
        self._thread.join()
        if self.error is not None:
            raise self.error
        return self.result


def start_appliance(workdir: Path, config: str | None = None):
    """A real `outpost serve` subprocess (tests.conftest.Appliance: the tests' own start, wait
    and stop) on a free loopback port."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests.conftest import FAST_HASH_CONFIG, Appliance

    workdir.mkdir(parents=True, exist_ok=True)
    return Appliance(workdir / "data", config=FAST_HASH_CONFIG if config is None else config)


def sign_in(app, *, setup: bool = True) -> str:
    """Complete setup (if asked) and sign in as the admin; returns the session cookie value."""
    from tests.conftest import do_login, do_setup

    with app.client() as client:
        if setup:
            r = do_setup(client, app.setup_code())
            if r.status_code != 303:
                raise RuntimeError(f"setup failed: {r.status_code} {r.text[:300]}")
        r = do_login(client)
        if r.status_code != 303:
            raise RuntimeError(f"login failed: {r.status_code} {r.text[:300]}")
        token = client.cookies.get(SESSION_COOKIE)
    if not token:
        raise RuntimeError("login gave no session cookie")
    return token


def wrk(url: str, *, conns: int, seconds: int, headers: dict | None = None, threads: int = 1) -> dict | None:
    """wrk's figure for the same URL, if wrk is installed (None otherwise)."""
    exe = shutil.which("wrk")
    if exe is None:
        return None
    cmd = [exe, f"-t{threads}", f"-c{conns}", f"-d{seconds}s", "--latency"]
    for k, v in (headers or {}).items():
        cmd += ["-H", f"{k}: {v}"]
    try:
        out = subprocess.run(cmd + [url], capture_output=True, text=True, timeout=seconds + 30).stdout
    except subprocess.TimeoutExpired:
        return None
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)\b", out)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)

    def ms(m):
        if not m:
            return None
        return round(float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)], 2)

    return {"rps": float(rps.group(1)) if rps else None, "p50_ms": ms(p50), "p99_ms": ms(p99),
            "non2xx": int(non2xx.group(1)) if non2xx else 0}


def mib(n: float) -> str:
    return f"{n / (1024 * 1024):.1f} MiB"


def print_table(rows: list[tuple], title: str = "Outpost benchmarks (SPEC §13)") -> None:
    """benchmark | ours | reference | budget | CPU, one row per figure; long cells wrap."""
    header = ("benchmark", "our figure", "reference (same run)", "budget", "CPU used (server / load gen)")
    norm = [header] + [tuple(str(c) for c in normalise_row(r)) for r in rows]
    limits = (34, 34, 40, 24, 38)
    wrapped = []
    for row in norm:
        cells = [_wrap(c, w) for c, w in zip(row, limits)]
        height = max(len(c) for c in cells)
        wrapped.append([c + [""] * (height - len(c)) for c in cells])
    widths = [max(len(line) for row in wrapped for line in row[i]) for i in range(5)]
    sep = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    print(f"\n{title}")
    print(sep)
    for n, row in enumerate(wrapped):
        for k in range(len(row[0])):
            print("| " + " | ".join(row[i][k].ljust(widths[i]) for i in range(5)) + " |")
        if n == 0:
            print(sep.replace("-", "="))
    print(sep, flush=True)


def normalise_row(row: tuple) -> tuple:
    """Rows are 5-tuples; a 3-tuple (benchmark, figure, budget-or-reference) is widened."""
    row = tuple(row)
    if len(row) >= 5:
        return row[:5]
    if len(row) == 4:
        return (*row, "")
    if len(row) == 3:  # bench.binary: (metric, figure, "budget X; reference Y")
        budget, reference = [], []
        for part in str(row[2]).split("; "):
            (budget if part.lstrip()[:1] in "≤≥<>" or part.lower().startswith("budget") else reference).append(part)
        return (row[0], row[1], "; ".join(reference), "; ".join(budget), "")
    return (*row, *[""] * (5 - len(row)))


def _wrap(text: str, width: int) -> list[str]:
    out: list[str] = []
    for para in text.split("\n"):
        line = ""
        for word in para.split(" "):
            if line and len(line) + 1 + len(word) > width:
                out.append(line)
                line = word
            else:
                line = f"{line} {word}" if line else word
        out.append(line)
    return out or [""]


if __name__ == "__main__":
    sys.exit(client_main(sys.argv[1:]))
