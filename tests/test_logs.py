"""PLAT-7 and STORE-1: JSON logs, and no secret in any output or any file under the data dir."""

import json

from tests.conftest import Appliance, csrf_of, do_login, do_setup, free_port

SENTINEL_PASSWORD = "SENTINEL-pw-7f3a9c-correct-horse"
WRONG_PASSWORD = "SENTINEL-wrong-5d1e77-battery"
SENTINEL_USER = "sentinel-admin-91c2"


def test_no_secret_in_logs_or_data_files(tmp_path):
    data = tmp_path / "data"
    app = Appliance(data, free_port())
    try:
        code = app.setup_code()
        with app.client() as c:
            assert do_setup(c, code, username=SENTINEL_USER, password=SENTINEL_PASSWORD).status_code == 303
            assert do_login(c, username=SENTINEL_USER, password=WRONG_PASSWORD).status_code == 401
            assert do_login(c, username=SENTINEL_USER, password=SENTINEL_PASSWORD).status_code == 303
            cookie = c.cookies.get("__Host-outpost")
            csrf = csrf_of(c.get("/dashboard").text)
            export = c.get("/audit/export.csv")
            assert export.status_code == 200 and SENTINEL_USER in export.text
            c.post("/logout", data={"_csrf": csrf})
    finally:
        app.stop()
    output = app.output()
    key_hex = (data / "keys" / "db.key").read_bytes().strip()
    secrets = {"password": SENTINEL_PASSWORD.encode(), "wrong password": WRONG_PASSWORD.encode(),
               "setup code": code.encode(), "session cookie": cookie.encode(), "csrf token": csrf.encode()}
    for name, value in secrets.items():
        assert value not in output.encode(), f"{name} appears in the appliance output"
    for path in data.rglob("*"):
        if path.is_file():
            blob = path.read_bytes()
            for name, value in {**secrets, "username (plaintext at rest)": SENTINEL_USER.encode()}.items():
                assert value not in blob, f"{name} found in {path.relative_to(data)}"
            if path.name != "db.key":
                assert key_hex not in blob and bytes.fromhex(key_hex.decode()) not in blob, f"db key in {path}"
    assert (data / "outpost.db").read_bytes()[:16] != b"SQLite format 3\x00"
    # every stdout line that is not the console banner is one JSON object
    lines = [line for line in output.splitlines() if line.startswith("{")]
    assert lines and all(isinstance(json.loads(line), dict) for line in lines)
    assert any(json.loads(line).get("msg") == "listening" for line in lines)
