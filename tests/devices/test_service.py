"""DeviceService in process: a real encrypted database, the real vault, a frozen clock."""


import msgspec
import pytest

from appliance.app import open_database
from appliance.audit.models import Actor
from appliance.clock import FrozenClock
from appliance.crypto import vault
from appliance.crypto.keypool import KeyPool
from appliance.devices import queries
from appliance.devices.credentials import open_credential
from appliance.devices.errors import CredentialInUseError, HostKeyRefusedError, StaleReviewError
from appliance.devices.models import CredentialCreate, CredentialUpdate, DeviceCreate, DeviceUpdate
from appliance.devices.service import DeviceService
from appliance.errors import ValidationError
from tests.conftest import run
from tests.devices.keys import fingerprint, keygen

ACTOR = Actor(type="user", name="op", source="127.0.0.1")
SENTINEL = "S3ntinel-pa55-Xq9"


@pytest.fixture
def svc(tmp_path):
    db, _ = open_database(tmp_path, readers=2)
    pool = KeyPool()
    service = DeviceService(db, b"k" * 32, FrozenClock(), pool)
    yield service
    pool.close()
    db.close()


def _device(svc, **kw) -> DeviceCreate:
    values = {"name": "web1", "address": "192.0.2.10", "port": 22, "tags": ["prod", "web"], "poll_interval": 60, **kw}
    return DeviceCreate(**values)


def _change(svc, **kw) -> DeviceUpdate:
    """Every field, as an edit form sends them."""
    return DeviceUpdate(**msgspec.structs.asdict(_device(svc, **kw)))


def audit_rows(svc):
    return svc.db.read_sync(
        lambda c: c.execute("SELECT action, target, details FROM audit_log ORDER BY seq").fetchall())


def test_create_list_search_update_delete_notify(svc):
    seen = []
    svc.subscribe(seen.append)
    cred = run(svc.create_credential(CredentialCreate(name="shared", username="root", kind="password",
                                                     password=SENTINEL), actor=ACTOR))
    a = run(svc.create_device(_device(svc, credential_id=cred), actor=ACTOR))
    b = run(svc.create_device(_device(svc, name="db1", address="db1.example.net", tags=["prod", "db"],
                                      credential_id=cred), actor=ACTOR))
    assert seen == [a, b]
    assert [d.name for d in run(svc.list_devices(search="example"))] == ["db1"]
    assert [d.name for d in run(svc.list_devices(tag="web"))] == ["web1"]
    assert [d.name for d in run(svc.list_devices(search="prod"))] == ["db1", "web1"]
    assert run(svc.list_tags()) == ["db", "prod", "web"]
    # shared credential: both devices get it; rotating it notifies both
    targets = run(svc.list_probe_targets())
    assert {t.credential.password for t in targets} == {SENTINEL}
    assert SENTINEL not in repr(targets)
    run(svc.update_credential(cred, CredentialUpdate(name="shared", username="admin", kind="password",
                                                    password="new-" + SENTINEL), actor=ACTOR))
    assert sorted(seen[2:]) == sorted([a, b])
    assert run(svc.get_probe_target(a)).credential.username == "admin"
    with pytest.raises(CredentialInUseError):
        run(svc.delete_credential(cred, actor=ACTOR))
    run(svc.update_device(a, _change(svc, enabled=False, port=2222), actor=ACTOR))
    assert [t.device_id for t in run(svc.list_probe_targets())] == [b]
    assert run(svc.get_probe_target(a)).port == 2222
    run(svc.delete_device(a, actor=ACTOR))
    assert run(svc.get_device(a)) is None
    actions = [r[0] for r in audit_rows(svc)]
    assert actions == ["credential.create", "device.create", "device.create", "credential.update", "device.update",
                       "device.delete"]
    assert all(SENTINEL not in r[2] for r in audit_rows(svc))


def test_duplicate_name_refused_and_nothing_changes(svc):
    run(svc.create_device(_device(svc), actor=ACTOR))
    with pytest.raises(ValidationError) as exc:
        run(svc.create_device(_device(svc, name="WEB1"), actor=ACTOR))
    assert "name" in exc.value.details
    assert len(run(svc.list_devices())) == 1


def test_ciphertext_moved_to_another_row_does_not_open(svc):
    one = run(svc.create_credential(CredentialCreate(name="one", username="u1", kind="password", password=SENTINEL),
                                    actor=ACTOR))
    two = run(svc.create_credential(CredentialCreate(name="two", username="u2", kind="password", password="other"),
                                    actor=ACTOR))
    blob = svc.db.read_sync(lambda c: queries.get_sealed_secret(c, one))[1]
    assert SENTINEL.encode() not in blob
    assert open_credential(svc._key, one, "u1", blob).password == SENTINEL
    with pytest.raises(vault.VaultError):
        open_credential(svc._key, two, "u2", blob)
    svc.db.write_sync(lambda c: queries.update_secret(c, two, blob))  # an attacker with SQL access moves it
    dev = run(svc.create_device(_device(svc, credential_id=two), actor=ACTOR))
    assert run(svc.get_probe_target(dev)).credential is None  # refused, not opened as row one's secret


@pytest.mark.parametrize("kind,bits,fmt", [("ed25519", 0, ""), ("ecdsa", 384, ""), ("rsa", 2048, "PEM"),
                                           ("rsa", 3072, "")])
def test_key_credentials_show_type_and_fingerprint(svc, kind, bits, fmt):
    private, public = keygen(kind, bits, "pw phrase", fmt)
    cid = run(svc.create_credential(CredentialCreate(name="k", username="u", kind="key", private_key=private,
                                                    passphrase="pw phrase"), actor=ACTOR))
    cred = run(svc.get_credential(cid))
    assert cred.fingerprint == fingerprint(public)
    assert cred.kind == "key" and cred.has_passphrase and cred.key_type.startswith(("ssh-", "ecdsa-"))


def test_bad_keys_get_clear_errors(svc):
    from tests.devices.keys import small_rsa
    private, _ = keygen("ed25519", 0, "right-one")
    cases = [
        (dict(private_key=private, passphrase="wrong-one"), "passphrase", "does not open"),
        (dict(private_key=private), "passphrase", "encrypted"),
        (dict(private_key=small_rsa()), "private_key", "at least 2048"),
        (dict(private_key="-----BEGIN OPENSSH PRIVATE KEY-----\ngarbage\n-----END OPENSSH PRIVATE KEY-----"),
         "private_key", "could not be read"),
        (dict(private_key="hello"), "private_key", "not a private key"),
        (dict(private_key=keygen("ed25519")[1]), "private_key", "not a private key"),
        (dict(), "private_key", "Paste"),
    ]
    for fields, field, words in cases:
        with pytest.raises(ValidationError) as exc:
            run(svc.create_credential(CredentialCreate(name="k", username="u", kind="key", **fields), actor=ACTOR))
        assert words in exc.value.details[field], (fields.keys(), exc.value.details)
        assert "wrong-one" not in str(exc.value.details) and "right-one" not in str(exc.value.details)
    assert run(svc.list_credentials()) == []


def test_tofu_pin_then_mismatch_review_repin(svc):
    _, key1 = keygen("ed25519")
    _, key2 = keygen("ecdsa", 256)
    dev = run(svc.create_device(_device(svc), actor=ACTOR))
    target = run(svc.get_probe_target(dev))
    assert target.host_key is None and target.check_host_key(key1) == "tofu"
    run(svc.pin_host_key(dev, key1, actor=Actor.system(), mode="tofu"))
    run(svc.pin_host_key(dev, key1, actor=Actor.system(), mode="tofu"))  # same key again: no new record
    target = run(svc.get_probe_target(dev))
    assert target.host_key_status == "pinned" and target.check_host_key(key1) == "match"
    assert target.check_host_key(key2) == "mismatch"
    with pytest.raises(HostKeyRefusedError):
        run(svc.pin_host_key(dev, key2, actor=Actor.system(), mode="tofu"))
    run(svc.record_host_key_mismatch(dev, key2))
    run(svc.record_host_key_mismatch(dev, key2))  # idempotent
    device = run(svc.get_device(dev))
    assert device.host_key_status == "mismatch"
    assert device.host_key_fingerprint == fingerprint(key1) and device.presented_fingerprint == fingerprint(key2)
    with pytest.raises(StaleReviewError):
        run(svc.trust_presented_key(dev, fingerprint(key1), actor=ACTOR))
    run(svc.trust_presented_key(dev, fingerprint(key2), actor=ACTOR))
    device = run(svc.get_device(dev))
    assert device.host_key_status == "pinned" and device.host_key_fingerprint == fingerprint(key2)
    assert device.presented_key is None and device.pin_mode == "review"
    actions = [(r[0], r[2]) for r in audit_rows(svc) if r[0].startswith("device.hostkey")]
    assert [a for a, _ in actions] == ["device.hostkey.pin", "device.hostkey.mismatch", "device.hostkey.repin"]
    assert fingerprint(key1) in actions[0][1] and fingerprint(key2) in actions[2][1]


def test_preset_fingerprint_and_preset_key(svc):
    _, key1 = keygen("ed25519")
    _, key2 = keygen("ecdsa", 256)
    dev = run(svc.create_device(_device(svc, host_key=fingerprint(key1)), actor=ACTOR))
    target = run(svc.get_probe_target(dev))
    assert target.preset_fingerprint == fingerprint(key1)
    assert target.check_host_key(key2) == "mismatch" and target.check_host_key(key1) == "preset"
    with pytest.raises(HostKeyRefusedError):
        run(svc.pin_host_key(dev, key2, actor=Actor.system(), mode="tofu"))
    run(svc.pin_host_key(dev, key1, actor=Actor.system(), mode="preset"))
    assert run(svc.get_device(dev)).pin_mode == "preset"
    other = run(svc.create_device(_device(svc, name="other", host_key=key2 + " comment"), actor=ACTOR))
    device = run(svc.get_device(other))
    assert device.host_key_status == "pinned" and device.host_key_fingerprint == fingerprint(key2)


def test_forget_pin(svc):
    _, key1 = keygen("ed25519")
    dev = run(svc.create_device(_device(svc), actor=ACTOR))
    run(svc.pin_host_key(dev, key1, actor=Actor.system(), mode="tofu"))
    run(svc.forget_host_key(dev, actor=ACTOR))
    assert run(svc.get_device(dev)).host_key_status == "unpinned"


def test_preset_fingerprint_on_a_pinned_device_is_refused_not_ignored(svc):
    _, key1 = keygen("ed25519")
    _, key2 = keygen("ecdsa", 256)
    dev = run(svc.create_device(_device(svc), actor=ACTOR))
    run(svc.pin_host_key(dev, key1, actor=Actor.system(), mode="tofu"))
    run(svc.update_device(dev, _change(svc, host_key=fingerprint(key1)), actor=ACTOR))  # same key: fine
    with pytest.raises(ValidationError) as exc:
        run(svc.update_device(dev, _change(svc, host_key=fingerprint(key2)), actor=ACTOR))
    assert "already pinned" in exc.value.details["host_key"]
    run(svc.update_device(dev, _change(svc, host_key=key2), actor=ACTOR))  # a full key line re-pins (preset)
    device = run(svc.get_device(dev))
    assert device.host_key_fingerprint == fingerprint(key2) and device.pin_mode == "preset"


def test_a_change_sets_only_its_fields(svc):
    """DeviceUpdate (what PATCH decodes into): fields left out keep their value, credential_id None removes it."""
    cred = run(svc.create_credential(CredentialCreate(name="c", username="u", password="pw-pw-pw"), actor=ACTOR))
    key = keygen("ed25519")[1]
    dev = run(svc.create_device(_device(svc, port=2200, notes="first", credential_id=cred, legacy_algorithms=True,
                                        host_key=fingerprint(key), enabled=False), actor=ACTOR))
    before = run(svc.get_device(dev))
    run(svc.update_device(dev, DeviceUpdate(notes="second"), actor=ACTOR))
    after = run(svc.get_device(dev))
    kept = ("name", "address", "port", "tags", "poll_interval", "enabled", "legacy_algorithms", "credential_id",
            "preset_fingerprint")
    assert {k: getattr(after, k) for k in kept} == {k: getattr(before, k) for k in kept}
    assert after.notes == "second" and after.credential_id == cred and after.preset_fingerprint == fingerprint(key)
    run(svc.update_device(dev, DeviceUpdate(credential_id=None), actor=ACTOR))
    assert run(svc.get_device(dev)).credential_id is None and run(svc.get_device(dev)).port == 2200


def test_csv_import_reaches_no_service_internals():
    """The CSV import stores rows through devices/changes.py, not DeviceService's private methods (no import cycle)."""
    import ast
    import inspect

    from appliance.devices import csvimport

    tree = ast.parse(inspect.getsource(csvimport))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert "appliance.devices.service" not in imported
    private = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr.startswith("_")
               and not n.attr.startswith("__")}
    assert not private, private
