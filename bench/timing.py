"""Timing properties the tests used to assert, measured here instead.

    python -m bench.timing

On a shared 2-core machine a duration is a figure, not a pass/fail: the tests check the
behaviour (the same refusal on the same code path, a 303 rather than a 503, a command cut
off) and this benchmark prints how long it takes, beside the budget the tests used to assert:

1. AUTH-4, unknown user vs wrong password: median time of 15 interleaved failed sign-ins of
   each, in process (real encrypted database, the DEFAULT argon2 parameters). Budget: within
   10 %. tests/auth/test_service.py checks both make one argon2 verification of the same cost
   and get the same refusal.
2. AUTH-2/AUTH-4, a real sign-in during a sign-in flood: the appliance with the production
   argon2 parameters and hash_queue_seconds = 1 is flooded from 40 addresses
   (tests/auth/signins.py); the admin's first answer time and the flood's median refusal
   time. Budgets: < 5 s and < 0.5 s. tests/auth/test_throttling.py checks the answers.
3. PROBE-1, a command past its timeout: `sleep 30` with timeout=1.0 on a real sshd
   (tests/ssh/sshd.py: needs root, sshd and unshare). Budget: cut off within 2.5 s.
   tests/probe/test_hostile.py checks it is cut off and the connection survives.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

import msgspec

from bench.load import ROOT, print_table

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PASSWORD = "a long enough passphrase for the timing bench"
SAMPLES = 15
BUDGET_RATIO = 0.10
BUDGET_FIRST_ANSWER_S = 5.0
BUDGET_REFUSAL_S = 0.5
COMMAND_TIMEOUT_S = 1.0
BUDGET_CUT_OFF_S = 2.5


def bench_login_paths(tmp: Path) -> tuple[str, str, str, str, str]:
    from appliance.app import open_database
    from appliance.auth.errors import LoginFailedError
    from appliance.clock import SystemClock
    from appliance.config import AuthConfig
    from appliance.crypto.passwords import PasswordHasher
    from tests.auth import build_auth

    config = AuthConfig(login_attempts_per_minute=1000)
    db, _ = open_database(tmp, readers=2)
    hasher = PasswordHasher(time_cost=config.argon2_time_cost, memory_kib=config.argon2_memory_kib,
                            parallelism=config.argon2_parallelism, concurrency=config.hash_concurrency)
    try:
        auth = build_auth(db, config, SystemClock(), hasher)
        code = auth.setup.ensure_setup_code(tmp / "setup-code")
        asyncio.run(auth.setup.complete_setup(code=code, username="admin", password=PASSWORD, confirm=PASSWORD,
                                              source="bench"))

        def sample(username: str, i: int) -> float:
            started = time.perf_counter()
            with contextlib.suppress(LoginFailedError):
                asyncio.run(auth.sessions.login(username=username, password="not the password",
                                                source=f"b-{username}-{i}", user_agent=""))
            return time.perf_counter() - started

        auth.policy.current = msgspec.structs.replace(auth.policy.current, lockout_threshold=100)  # no lockout
        known, unknown = [], []
        for i in range(SAMPLES):  # interleaved
            known.append(sample("admin", i))
            unknown.append(sample("ghost", i))
    finally:
        hasher.close()
        db.close()
    a, b = statistics.median(known), statistics.median(unknown)
    ratio = abs(a - b) / max(a, b)
    return ("AUTH-4 failed sign-in: unknown user vs wrong password (median of 15 each)",
            f"{ratio:.1%} apart: wrong password {a * 1000:.0f} ms, unknown user {b * 1000:.0f} ms",
            f"argon2 t={config.argon2_time_cost}, {config.argon2_memory_kib // 1024} MiB,"
            f" p={config.argon2_parallelism}",
            f"within {BUDGET_RATIO:.0%}", "")


def bench_flood(tmp: Path) -> tuple[str, str, str, str, str]:
    from tests.auth.signins import FLOOD_ADDRESSES, FLOOD_CONFIG, sign_in_during_flood
    from tests.conftest import Appliance, do_setup

    app = Appliance(tmp / "data", config=FLOOD_CONFIG)
    try:
        with app.client() as c:
            if do_setup(c, app.setup_code()).status_code != 303:
                raise RuntimeError("setup failed")
        outcome = sign_in_during_flood(app)
    finally:
        app.stop()
    refused = [d for s, d in outcome.flood if s == 503]
    checked = [d for s, d in outcome.flood if s == 401]
    median_refusal = statistics.median(refused) if refused else float("nan")
    return ("AUTH-2/4 real sign-in during a sign-in flood",
            f"first answer {outcome.first_status} in {outcome.real_seconds:.2f} s ({outcome.retries} retries);"
            f" refusals (503): median {median_refusal:.3f} s of {len(refused)}",
            f"{len(outcome.flood)} flood attempts from {FLOOD_ADDRESSES} addresses, {len(checked)} hashed (401)",
            f"first answer < {BUDGET_FIRST_ANSWER_S:.0f} s; refusal < {BUDGET_REFUSAL_S} s", "")


def bench_command_timeout(tmp: Path) -> tuple[str, str, str, str, str]:
    import pytest

    from appliance.ssh.connect import Credential, Endpoint, Policy, open_session
    from appliance.ssh.errors import CommandTimeoutError
    from appliance.ssh.targets import TargetPolicy
    from tests.ssh.sshd import Sshd

    label = f"PROBE-1 `sleep 30` with a {COMMAND_TIMEOUT_S:.0f} s command timeout, real sshd"
    try:
        sshd = Sshd(tmp / "sshd")
    except pytest.skip.Exception as exc:
        return (label, f"not run: {exc}", "", f"cut off < {BUDGET_CUT_OFF_S} s", "")
    policy = Policy(connect_timeout=1.5, auth_timeout=2.0, command_timeout=2.0, output_cap=100_000,
                    targets=TargetPolicy(allow_loopback=True))
    sshd.start("a")

    async def main() -> list[float]:
        session = await open_session(Endpoint(address="127.0.0.1", port=sshd.port, host_key=sshd.host_line_a),
                                     Credential(username=sshd.user, password=sshd.password), policy)
        took = []
        try:
            for _ in range(5):
                started = time.monotonic()
                try:
                    await session.run("sleep 30", timeout=COMMAND_TIMEOUT_S)
                except CommandTimeoutError:
                    took.append(time.monotonic() - started)
        finally:
            await session.wait_closed()
        return took

    try:
        took = asyncio.run(main())
    finally:
        sshd.stop()
    figure = f"cut off after {max(took):.2f} s at worst (median {statistics.median(took):.2f} s, {len(took)} runs)"
    return (label, figure, "", f"< {BUDGET_CUT_OFF_S} s", "")


def run() -> list[tuple[str, str, str, str, str]]:
    with tempfile.TemporaryDirectory(prefix="outpost-bench-timing-") as tmp_s:
        tmp = Path(tmp_s)
        rows = []
        for name, fn in (("logins", bench_login_paths), ("flood", bench_flood), ("ssh", bench_command_timeout)):
            (tmp / name).mkdir()
            rows.append(fn(tmp / name))
    return rows


def main() -> int:
    print_table(run(), "Timing properties (were test assertions)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
