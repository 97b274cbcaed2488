"""Sign-ins against a real appliance from chosen loopback addresses, and a real sign-in in the
middle of a flood of wrong ones. tests/auth/test_throttling.py checks what the appliance
answers; bench/timing.py measures how long the answers take (a figure on a shared machine,
not a test failure).

Every 127.0.0.0/8 address is this machine, so clients bind 127.0.0.x (or 127.0.1.x) to
appear as different addresses to the appliance (the socket peer is the client address)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import httpx

from tests.conftest import ADMIN, ADMIN_PASSWORD, Appliance, csrf_of

# The production argon2id parameters (t=3, 64 MiB, p=4): the flood must cost what it costs in the field.
FLOOD_CONFIG = """
[auth]
totp_policy = "optional"
login_attempts_per_minute = 1000
hash_queue_seconds = 1.0
"""
FLOOD_ADDRESSES = 40
FILL_SECONDS = 4.0  # the flood runs this long before the real sign-in


def client_from(appliance: Appliance, address: str) -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=address, verify=appliance.tls())
    return httpx.Client(base_url=appliance.url, transport=transport, headers={"Origin": appliance.url}, timeout=60)


def sign_in(c: httpx.Client, username: str, password: str) -> httpx.Response:
    page = c.get("/login")
    return c.post("/login", data={"_csrf": csrf_of(page.text), "username": username, "password": password})


@dataclass
class FloodOutcome:
    flood: list[tuple[int, float]] = field(default_factory=list)  # (status, seconds) of every flood attempt
    first_status: int = 0  # the real sign-in's first answer
    real_seconds: float = 0.0  # how long that first answer took
    busy_answers: list[tuple[str, str]] = field(default_factory=list)  # (Retry-After, body) of each 503 it got
    retries: int = 0


def _flooder(appliance: Appliance, n: int, stop: threading.Event, flood: list[tuple[int, float]]) -> None:
    with client_from(appliance, f"127.0.1.{n}") as c:
        token = csrf_of(c.get("/login").text)
        i = 0
        while not stop.is_set():
            i += 1
            started = time.monotonic()
            # A new username each time: no per-account budget, only the hash queue holds it back.
            r = c.post("/login", data={"_csrf": token, "username": f"u{n}x{i}", "password": "flood guess"})
            flood.append((r.status_code, time.monotonic() - started))
            if r.status_code != 401:
                # Refused: retry 4 times a second (160 requests/s from the 40 addresses). Faster
                # loops measure the CPU cost of HTTP requests, not the hashing queue.
                time.sleep(0.25)


def sign_in_during_flood(appliance: Appliance) -> FloodOutcome:
    """Flood /login with wrong passwords from FLOOD_ADDRESSES addresses; after FILL_SECONDS, the
    admin signs in from 127.0.0.1, retrying as told while answered 503 (at most 20 times)."""
    outcome = FloodOutcome()
    stop = threading.Event()
    threads = [threading.Thread(target=_flooder, args=(appliance, n, stop, outcome.flood), daemon=True)
               for n in range(1, FLOOD_ADDRESSES + 1)]
    for t in threads:
        t.start()
    try:
        time.sleep(FILL_SECONDS)  # the queue fills
        with client_from(appliance, "127.0.0.1") as owner:
            page = owner.get("/login")
            form = {"_csrf": csrf_of(page.text), "username": ADMIN, "password": ADMIN_PASSWORD}
            started = time.monotonic()
            r = owner.post("/login", data=form)
            outcome.real_seconds = time.monotonic() - started
            outcome.first_status = r.status_code
            while r.status_code == 503 and outcome.retries < 20:  # what a person does: try again as told
                outcome.busy_answers.append((r.headers.get("retry-after", ""), r.text))
                time.sleep(max(1, int(r.headers.get("retry-after") or 1)))
                outcome.retries += 1
                r = owner.post("/login", data=form)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    return outcome
