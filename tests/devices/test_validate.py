"""Table-driven checks of address/field validation and of the CSV import parser (DEV-1)."""

import asyncio

import pytest

from appliance.app import open_database
from appliance.audit.models import Actor
from appliance.clock import FrozenClock
from appliance.crypto import sshkeys
from appliance.crypto.keypool import KeyPool
from appliance.devices import csvimport, validate
from appliance.devices.service import DeviceService
from tests.devices.keys import fingerprint, keygen, small_rsa

ACTOR = Actor(type="user", name="op", source="127.0.0.1")


@pytest.mark.parametrize("raw,expected", [
    ("192.0.2.1", "192.0.2.1"), (" 10.0.0.254 ", "10.0.0.254"), ("Router-1.Example.NET.", "router-1.example.net"),
    ("localhost", "localhost"), ("2001:DB8::1", "2001:db8::1"), ("[::1]", "::1"), ("fe80::1%eth0", "fe80::1%eth0"),
    ("sw01", "sw01"), ("a" * 63 + ".example", "a" * 63 + ".example"),
])
def test_good_addresses(raw, expected):
    assert validate.address(raw) == expected


@pytest.mark.parametrize("raw", [
    "", " ", "https://host", "ssh://root@host", "host/path", "host name", "host;reboot", "host|x", "host&", "`id`",
    "$(id)", "host'", 'host"', "a..b", "-host", "host-", "a" * 64, "1.2.3.256", "01.2.3.4", "1.2.3", "::1::",
    "fe80::1%eth0;x", "host:22", "user@host", "ho\x00st", "h\u00f6st", "x" * 300, "*.example", "host\n",
])
def test_bad_addresses(raw):
    with pytest.raises(ValueError):
        validate.address(raw)


@pytest.mark.parametrize("raw", ["SHA256:abc", "MD5:aa:bb", "ssh-ed25519 !!!", "ssh-dss AAAAB3NzaC1kc3MAAACBAP",
                                 "ssh-ed25519 AAAAB3NzaC1yc2EAAAADAQABAAABAQ"])
def test_bad_host_key_presets(raw):
    errors = {}
    assert validate.host_key_preset(raw, errors) == (None, None) and "host_key" in errors


def test_fingerprints_match_ssh_keygen():
    for kind, bits in (("ed25519", 0), ("ecdsa", 256), ("rsa", 2048)):
        public = keygen(kind, bits)[1]
        assert sshkeys.fingerprint_of_key_line(public) == fingerprint(public)
        assert sshkeys.parse_fingerprint(fingerprint(public) + "=") == fingerprint(public)


@pytest.fixture
def svc(tmp_path):
    db, _ = open_database(tmp_path, readers=2)
    pool = KeyPool()
    yield DeviceService(db, b"v" * 32, FrozenClock(), pool)
    pool.close()
    db.close()


def _import(svc, text: str | bytes):
    return asyncio.run(svc.import_csv(text.encode() if isinstance(text, str) else text, actor=ACTOR))


def test_csv_import_rows_with_keys_and_shared_credentials(svc):
    private, public = keygen("ed25519", 0, "csv-phrase")
    quoted = '"' + private.replace('"', '""') + '"'
    text = ("name,address,port,tags,poll_interval,enabled,legacy_algorithms,username,private_key,passphrase,host_key\n"
            f"k1,192.0.2.1,2222,a;b,30,no,yes,root,{quoted},csv-phrase,{fingerprint(public)}\n"
            "k2,k2.example,,,,,,,,,\n")
    result = _import(svc, text)
    assert result.ok and result.imported == 2, result
    devices = {d.name: d for d in asyncio.run(svc.list_devices())}
    assert devices["k1"].port == 2222 and devices["k1"].tags == ["a", "b"] and not devices["k1"].enabled
    assert devices["k1"].legacy_algorithms and devices["k1"].preset_fingerprint == fingerprint(public)
    assert devices["k2"].enabled and devices["k2"].port == 22 and devices["k2"].credential_id is None
    target = asyncio.run(svc.get_probe_target(devices["k1"].id))
    assert target.credential.private_key.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    result = _import(svc, "name,address,credential\nk3,192.0.2.3,k1\n")
    assert result.ok and asyncio.run(svc.list_credentials())[0].device_count == 2


def test_csv_import_refusals_list_every_line_and_store_nothing(svc):
    private, _ = keygen("ed25519", 0, "csv-phrase")
    quoted = '"' + private + '"'
    text = ("name,address,port,username,password,private_key,passphrase,credential\n"
            "ok1,192.0.2.1,22,root,pw,,,\n"
            "dup,192.0.2.2,22,,,,,\n"
            "DUP,192.0.2.3,22,,,,,\n"
            "both,192.0.2.6,22,root,pw,,,shared\n"
            "nocred,192.0.2.7,22,,,,,missing-cred\n"
            "short,192.0.2.8\n"
            "badport,192.0.2.9,0,,,,,\n"
            f"wrongpass,192.0.2.4,22,root,,{quoted},nope-nope,\n"
            f"small,192.0.2.5,22,root,,\"{small_rsa()}\",,\n")
    result = _import(svc, text)
    assert not result.ok and result.imported == 0
    by_line = {e.line: e.errors for e in result.errors}
    assert "used again" in by_line[4]["name"]
    assert "not both" in by_line[5]["credential"]
    assert "No credential" in by_line[6]["credential"]
    assert "column" in by_line[7]["row"]
    assert "between 1 and 65535" in by_line[8]["port"]
    assert "does not open" in by_line[9]["passphrase"]  # a quoted key spans lines: errors name its first line
    assert "2048" in by_line[9 + private.count("\n") + 1]["private_key"]
    assert 2 not in by_line and 3 not in by_line
    assert "nope-nope" not in repr(result) and "PRIVATE" not in repr(result)
    assert asyncio.run(svc.list_devices()) == [] and asyncio.run(svc.list_credentials()) == []
    audit = svc.db.read_sync(lambda c: c.execute("SELECT action, outcome FROM audit_log").fetchall())
    assert [tuple(r) for r in audit] == [("device.import", "failure")]


def test_csv_existing_name_refused(svc):
    assert _import(svc, "name,address\nsame,192.0.2.1\n").ok
    result = _import(svc, "name,address\nnew,192.0.2.2\nsame,192.0.2.3\n")
    assert not result.ok and result.errors[0].line == 3 and "already exists" in result.errors[0].errors["name"]
    assert [d.name for d in asyncio.run(svc.list_devices())] == ["same"]


@pytest.mark.parametrize("data,words", [
    (b"\xef\xbb\xbfname,address\nx,192.0.2.1\n", None), (b"name,address\r\nx,192.0.2.1\r\n", None),
    (b"name,address\n\xff\xfe,1.2.3.4\n", "Line 2 is not valid UTF-8"), (b"name,address\nx\x00,1.2.3.4\n", "NUL"),
    (b"name,address\n", "no devices"), (b"   \n", "empty"), (b'name,address\n"unterminated,1.2.3.4\n', "Not valid CSV"),
    (b"name,name,address\nx,y,1.2.3.4\n", "twice"),
    (b"name,address\n" + b"r,192.0.2.1\n" * (csvimport.MAX_ROWS + 1), "rows"),
])
def test_csv_file_level_problems(svc, data, words):
    result = _import(svc, data)
    if words is None:
        assert result.ok, result
    else:
        assert not result.ok and any(words in m for e in result.errors for m in e.errors.values()), result
