"""The Updates page and the About page's integrity section, on the real server over TLS.

The server trusts only the built-in (development) root, whose private key is not in the
repository, so bundles here are signed under a test root: the page must refuse them
with the reason, audit the refusal and change nothing."""

from __future__ import annotations

import pytest

from tests.conftest import FAST_HASH_CONFIG, Appliance, csrf_of, do_login, do_setup, free_port

from . import kit


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("updweb")
    media = tmp / "media"
    (media / "stick").mkdir(parents=True)
    keys = kit.Keys()
    kit.make(media / "stick" / "outpost-9.0.0.opkg", keys, version="9.0.0")
    (tmp / "secret.opkg").write_bytes(b"not on the stick")
    cfg = FAST_HASH_CONFIG + f'\n[updates]\nmedia_dir = "{media}"\ninstall_root = "{tmp / "install"}"\n'
    app = Appliance(tmp / "data", free_port(), config=cfg)
    try:
        with app.client() as client:
            assert do_setup(client, app.setup_code()).status_code == 303
            assert do_login(client).status_code == 303
            yield app, client, tmp
    finally:
        app.stop()


def test_about_shows_development_build_and_integrity(site):
    _, client, _ = site
    page = client.get("/about")
    assert page.status_code == 200
    assert "development build" in page.text and "development build, not verifiable" in page.text
    r = client.post("/about/integrity", data={"_csrf": csrf_of(page.text)})
    assert r.status_code == 303
    audit = client.get("/audit", params={"action": "integrity.check"})
    assert "integrity.check" in audit.text


def test_updates_page_lists_bundles_and_versions(site):
    _, client, _ = site
    page = client.get("/updates")
    assert page.status_code == 200
    assert "stick/outpost-9.0.0.opkg" in page.text and "development build" in page.text


@pytest.mark.parametrize("action", ["verify", "apply"])
def test_bundle_under_unknown_root_is_refused_and_audited(site, action):
    _, client, tmp = site
    csrf = csrf_of(client.get("/updates").text)
    r = client.post(f"/updates/{action}", data={"_csrf": csrf, "file": "stick/outpost-9.0.0.opkg"})
    assert r.status_code == 400 and "unknown root" in r.text
    assert not (tmp / "install" / "current").exists()
    assert list((tmp / "data" / "updates" / "staging").iterdir()) == []
    assert "update.verify" in client.get("/audit", params={"action": "update.verify"}).text


@pytest.mark.parametrize("name", ["../secret.opkg", "/etc/passwd", "", "stick/../../secret.opkg"])
def test_paths_off_the_stick_are_refused(site, name):
    _, client, _ = site
    csrf = csrf_of(client.get("/updates").text)
    r = client.post("/updates/verify", data={"_csrf": csrf, "file": name})
    assert r.status_code == 400 and ("not on the USB stick" in r.text or "Choose a bundle" in r.text)


def test_rollback_without_previous_is_refused(site):
    _, client, _ = site
    csrf = csrf_of(client.get("/updates").text)
    r = client.post("/updates/rollback", data={"_csrf": csrf})
    assert r.status_code == 409 and "no previous version" in r.text


def test_state_changes_need_csrf(site):
    _, client, _ = site
    assert client.post("/updates/verify", data={"file": "stick/outpost-9.0.0.opkg"}).status_code == 403
