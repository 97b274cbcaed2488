"""Finding 8 (issue 11) through the real server over TLS: key files that ask for an absurd
key-derivation cost are refused at once, with the cost and the limit in the message, and a
flood of them leaves a viewer's GET /api/v1/devices responsive.

Before the fix an OpenSSH key patched to 1600 bcrypt rounds cost ~16 s of CPU before being
refused, and seven of them stalled a viewer for ~30 s. CPU is measured on the server
process; bounds are generous (a refusal derives nothing)."""

from __future__ import annotations

import concurrent.futures
import time
from pathlib import Path

import psutil
import pytest

from tests.api.helpers import api, error_of, make_key
from tests.conftest import csrf_of, require_tool

from .keyfiles import ec_key, patch_openssh_rounds, pkcs8, raise_iterations, run, ssh_key

CPU_BOUND = 3.0  # server CPU seconds for a whole refused upload, TLS included


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("hostile")
    ssh_key(d, "ssh16", rounds=16)
    ec = ec_key(d, "ec.pem")
    pkcs8(d, ec, "p8-1m.pem", "-iter", str(1 << 20))
    (d / "p8-hostile.pem").write_bytes(raise_iterations((d / "p8-1m.pem").read_bytes()))
    run(require_tool("openssl"), "req", "-x509", "-key", "ec.pem", "-out", "cert.pem", "-subj", "/CN=localhost",
        "-addext", "subjectAltName=DNS:localhost", "-days", "2", cwd=d)
    run(require_tool("openssl"), "pkcs12", "-export", "-inkey", "ec.pem", "-in", "cert.pem", "-passout", "pass:pw",
        "-iter", str(1 << 20), "-out", "1m.p12", cwd=d)
    (d / "hostile.p12").write_bytes(raise_iterations((d / "1m.p12").read_bytes()))
    return d


def _cpu(appliance) -> float:
    times = psutil.Process(appliance.proc.pid).cpu_times()
    return times.user + times.system


def _device(n: int, private_key: str, passphrase: str) -> dict:
    return {"name": f"hostile-{n}", "address": "192.0.2.10", "port": 22,
            "credential": {"name": f"k{n}", "username": "ops", "private_key": private_key, "passphrase": passphrase}}


def test_openssh_key_with_1600_rounds_is_refused_fast_and_a_viewer_stays_served(shared_appliance, files):
    admin, viewer = make_key(shared_appliance, "admin", "admin"), make_key(shared_appliance, "admin", "viewer")
    hostile = patch_openssh_rounds(files / "ssh16", 1600)
    with api(shared_appliance, admin) as c, api(shared_appliance, viewer) as v:
        before = _cpu(shared_appliance)
        r = c.post("/api/v1/devices", json=_device(0, hostile, "key passphrase"))
        assert r.status_code == 400, r.text
        assert "key derivation cost 1600 rounds is above the limit of 128" in str(error_of(r)["details"])
        assert _cpu(shared_appliance) - before < CPU_BOUND

        # seven at once, as in the review, while a viewer lists devices
        def upload(n: int) -> int:
            with api(shared_appliance, admin) as own:
                return own.post("/api/v1/devices", json=_device(n, hostile, "key passphrase")).status_code

        with concurrent.futures.ThreadPoolExecutor(7) as pool:
            uploads = [pool.submit(upload, n) for n in range(1, 8)]
            slowest = 0.0
            for _ in range(10):
                start = time.monotonic()
                assert v.get("/api/v1/devices").status_code == 200
                slowest = max(slowest, time.monotonic() - start)
            statuses = [u.result() for u in uploads]
        assert set(statuses) <= {400, 503} and 400 in statuses, statuses
        assert slowest < 3.0, f"a viewer waited {slowest:.1f} s"

        # a key made by ssh-keygen with its defaults is still accepted
        good = c.post("/api/v1/devices", json=_device(9, (files / "ssh16").read_text(), "key passphrase"))
        assert good.status_code == 201, good.text


def test_pkcs8_key_with_huge_iterations_is_refused_fast(shared_appliance, files):
    admin = make_key(shared_appliance, "admin", "admin")
    with api(shared_appliance, admin) as c:
        before = _cpu(shared_appliance)
        r = c.post("/api/v1/devices", json=_device(0, (files / "p8-hostile.pem").read_text(), "key password"))
        assert r.status_code == 400, r.text
        assert "8388607 iterations is above the limit of 1000000" in str(error_of(r)["details"])
        assert _cpu(shared_appliance) - before < CPU_BOUND


def _import(client, files: dict, data: dict):
    page = client.get("/settings/certificates")
    return client.post("/settings/certificates/import", data={"_csrf": csrf_of(page.text), **data}, files=files)


def test_certificate_import_refuses_huge_pkcs12_and_pkcs8_costs_fast(shared_appliance, shared_admin_client, files):
    before = _cpu(shared_appliance)
    r = _import(shared_admin_client, {"p12": ("hostile.p12", (files / "hostile.p12").read_bytes())}, {"password": "pw"})
    assert r.status_code == 400 and "8388607 iterations is above the limit" in r.text, r.text[-2000:]
    assert _cpu(shared_appliance) - before < CPU_BOUND
    before = _cpu(shared_appliance)
    r = _import(shared_admin_client, {"cert": ("c.pem", (files / "cert.pem").read_bytes()),
                               "key": ("k.pem", (files / "p8-hostile.pem").read_bytes())}, {"password": "key password"})
    assert r.status_code == 400 and "8388607 iterations is above the limit" in r.text
    assert _cpu(shared_appliance) - before < CPU_BOUND
    audit = shared_admin_client.get("/audit", params={"action": "tls.cert.import.refused"}).text
    assert audit.count("above the limit") >= 2
