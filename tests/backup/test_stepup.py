"""Finding 6 (issue 11), through the real server: a full backup (database + every key) is
created only with the password, plus a current TOTP code when the user has 2FA, entered in
the request; its file is downloadable only by the session that made it, within 5 minutes of
that proof, and each download is audited before a byte is sent. Codes come from oathtool."""

from __future__ import annotations

import re
import subprocess
import time


from tests.api.helpers import sql
from tests.conftest import ADMIN_PASSWORD, csrf_of, do_login, require_tool

PASSPHRASE = "a long backup passphrase"


def _create(client, **fields):
    page = client.get("/settings/backups")
    data = {"_csrf": csrf_of(page.text), "passphrase": PASSPHRASE, "confirm": PASSPHRASE, **fields}
    return client.post("/settings/backups", data=data)


def _wait_done(client, job: str) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = client.get(job + "/status")
        if "Backup written" in status.text:
            return status.text
        time.sleep(0.2)
    raise AssertionError("the backup did not finish")


def _count(appliance, action: str, outcome: str = "success") -> int:
    return sql(appliance, "SELECT count(*) FROM audit_log WHERE action = ? AND outcome = ?", (action, outcome))[0][0]


def test_creating_a_backup_needs_the_password(appliance, admin_client):
    r = _create(admin_client)
    assert r.status_code == 400 and "Enter your password." in r.text
    r = _create(admin_client, current_password="not my password at all")
    assert r.status_code == 400 and "That is not right" in r.text
    assert _count(appliance, "auth.reauth", "failure") == 1
    assert _count(appliance, "backup.create") == 0 and not admin_client.get("/settings/backups").text.count("Backup written")
    r = _create(admin_client, current_password=ADMIN_PASSWORD)
    assert r.status_code == 303
    job = r.headers["location"]
    text = _wait_done(admin_client, job)
    href = re.search(r'id="download" href="([^"]+)"', text).group(1)
    assert href == job + "/download"
    download = admin_client.get(href)
    assert download.status_code == 200 and download.content[:8] == b"OUTPOSTB"
    assert _count(appliance, "backup.download") == 1


def test_only_the_session_that_made_it_can_download_it(appliance, admin_client):
    r = _create(admin_client, current_password=ADMIN_PASSWORD)
    job = r.headers["location"]
    _wait_done(admin_client, job)
    with appliance.client() as other:  # the same admin, signed in elsewhere
        assert do_login(other).status_code == 303
        assert other.get(job).status_code == 404
        assert other.get(job + "/download").status_code == 404
    assert _count(appliance, "backup.download") == 0


def _oathtool(seed: str, offset: int = 0) -> str:
    return subprocess.run([require_tool("oathtool"), "--totp", "-b", "--now", f"now {offset:+d} seconds", seed],
                          capture_output=True, text=True, check=True).stdout.strip()


def test_a_2fa_user_also_needs_a_current_code(appliance, admin_client):
    require_tool("oathtool")
    admin_client.post("/account/2fa/start", data={"_csrf": csrf_of(admin_client.get("/account").text)})
    page = admin_client.get("/account/2fa").text
    seed = re.search(r'id="totp-seed">([A-Z2-7]+)<', page).group(1)
    r = admin_client.post("/account/2fa/confirm", data={"_csrf": csrf_of(page), "code": _oathtool(seed, -30)})
    assert r.status_code == 200, r.text[-500:]

    form = admin_client.get("/settings/backups").text
    assert 'name="totp_code"' in form
    r = _create(admin_client, current_password=ADMIN_PASSWORD)
    assert r.status_code == 400 and "6-digit code" in r.text
    r = _create(admin_client, current_password=_oathtool(seed), totp_code=_oathtool(seed))
    assert r.status_code == 400 and "Enter your password here" in r.text  # a code is not a password
    assert _count(appliance, "backup.create") == 0
    r = _create(admin_client, current_password=ADMIN_PASSWORD, totp_code=_oathtool(seed))
    assert r.status_code == 303, r.text[-800:]
    job = r.headers["location"]
    _wait_done(admin_client, job)
    assert admin_client.get(job + "/download").status_code == 200
    assert _count(appliance, "backup.download") == 1


def test_download_needs_the_proof_again_after_five_minutes(tmp_path):
    """On a frozen clock (the server is built by the same composition root, app.build, with a
    FrozenClock instead of the system clock, and served over real TLS): 5 minutes after the
    proof the download is refused until the password is entered again."""
    import ssl
    import tomllib

    import httpx

    from appliance import app as app_mod
    from appliance import config as config_mod
    from appliance.clock import FrozenClock
    from appliance.web import create_asgi
    from tests.conftest import FAST_HASH_CONFIG, do_setup
    from tests.serving import ServerThread

    cfg = config_mod.with_data_dir(config_mod.parse(tomllib.loads(FAST_HASH_CONFIG)), str(tmp_path / "data"))
    clock = FrozenClock(start=time.time())
    services = app_mod.build(cfg, clock)
    services.auth.setup.ensure_setup_code(services.setup_code_file)
    server = ServerThread(services.tls.ssl_context(), app=create_asgi(services)).start()
    url = f"https://localhost:{server.port}"
    try:
        with httpx.Client(base_url=url, headers={"Origin": url}, timeout=30,
                          verify=ssl.create_default_context(cafile=str(tmp_path / "data" / "tls" / "ca.pem"))) as c:
            assert do_setup(c, services.setup_code_file.read_text().strip()).status_code == 303
            assert do_login(c).status_code == 303
            job = _create(c, current_password=ADMIN_PASSWORD).headers["location"]
            _wait_done(c, job)
            clock.advance(5 * 60 + 1)
            stale = c.get(job + "/download")
            assert stale.status_code == 403 and "Confirm it is you again" in stale.text
            page = c.get(job)
            assert 'action="' + job + '/confirm"' in page.text
            r = c.post(job + "/confirm", data={"_csrf": csrf_of(page.text), "current_password": "wrong wrong wrong"})
            assert r.status_code == 400 and c.get(job + "/download").status_code == 403
            r = c.post(job + "/confirm", data={"_csrf": csrf_of(page.text), "current_password": ADMIN_PASSWORD})
            assert r.status_code == 303
            assert c.get(job + "/download").status_code == 200
    finally:
        server.stop()
        services.close()
