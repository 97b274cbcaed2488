"""Finding 8 (issue 11): key-derivation costs named by a key file are checked against the
documented caps (crypto/kdfcost.py) BEFORE anything is derived. Files from the real tools
with their defaults (and common higher settings) pass; patched costs are refused at once,
with a message naming the cost and the limit."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from appliance.crypto import kdfcost, pkcs12scan, sshkeys
from tests.conftest import require_tool

from .keyfiles import ec_key, patch_openssh_rounds, pkcs8, raise_iterations, run, ssh_key

FAST = 0.5  # CPU seconds; a refusal derives nothing, so it is far below this


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("keys")
    openssl = require_tool("openssl")
    ssh_key(d, "ssh16", rounds=16)
    ssh_key(d, "ssh100", rounds=100)
    ssh_key(d, "plain", passphrase="")
    ec = ec_key(d, "ec.pem")
    pkcs8(d, ec, "p8.pem")
    pkcs8(d, ec, "p8-scrypt.pem", "-scrypt")
    pkcs8(d, ec, "p8-v1.pem", "-v1", "PBE-SHA1-3DES")
    pkcs8(d, ec, "p8-600k.pem", "-iter", "600000")
    pkcs8(d, ec, "p8-1m.pem", "-iter", str(1 << 20))
    run(openssl, "req", "-x509", "-key", "ec.pem", "-out", "cert.pem", "-subj", "/CN=t", "-days", "2", cwd=d)
    common = ["pkcs12", "-export", "-inkey", "ec.pem", "-in", "cert.pem", "-passout", "pass:pw"]
    run(openssl, *common, "-out", "default.p12", cwd=d)
    run(openssl, *common, "-keypbe", "PBE-SHA1-3DES", "-certpbe", "PBE-SHA1-3DES", "-iter", "10000",
        "-out", "3des.p12", cwd=d)
    run(openssl, *common, "-iter", str(1 << 20), "-out", "1m.p12", cwd=d)
    run(openssl, *common, "-legacy", "-out", "legacy.p12", cwd=d)
    return d


@pytest.mark.parametrize("name", ["ssh16", "ssh100", "plain", "p8.pem", "p8-scrypt.pem", "p8-v1.pem", "p8-600k.pem"])
def test_keys_from_current_tools_pass(files, name):
    kdfcost.check_private_key_pem((files / name).read_bytes())


@pytest.mark.parametrize("name", ["default.p12", "3des.p12"])
def test_pkcs12_from_current_tools_pass(files, name):
    pkcs12scan.check_pkcs12((files / name).read_bytes(), b"pw")


def _refused_fast(fn, *args) -> str:
    start = time.process_time()
    with pytest.raises(kdfcost.KdfCostError) as err:
        fn(*args)
    assert time.process_time() - start < FAST
    return str(err.value)


@pytest.mark.parametrize("rounds", [129, 1600, 2**32 - 1])
def test_openssh_rounds_above_the_cap_are_refused_before_deriving(files, rounds):
    text = patch_openssh_rounds(files / "ssh16", rounds)
    message = _refused_fast(kdfcost.check_private_key_pem, text.encode())
    assert message == f"key derivation cost {rounds} rounds is above the limit of 128"
    start = time.process_time()
    with pytest.raises(sshkeys.SSHKeyError, match=f"cost {rounds} rounds is above the limit of 128"):
        sshkeys.parse_private_key(text, "key passphrase")
    assert time.process_time() - start < FAST


def test_openssh_at_the_cap_is_accepted(files):
    kdfcost.check_private_key_pem(patch_openssh_rounds(files / "ssh16", 128).encode())


def test_pkcs8_iterations_above_the_cap_are_refused(files):
    hostile = raise_iterations((files / "p8-1m.pem").read_bytes())
    assert "8388607 iterations is above the limit of 1000000" in _refused_fast(kdfcost.check_private_key_pem, hostile)
    relabelled = hostile.replace(b"ENCRYPTED PRIVATE KEY", b"PRIVATE KEY")  # the label does not matter
    _refused_fast(kdfcost.check_private_key_pem, relabelled)


def test_pkcs12_iterations_above_the_cap_are_refused(files):
    hostile = raise_iterations((files / "1m.p12").read_bytes())
    assert "8388607 iterations is above the limit" in _refused_fast(pkcs12scan.check_pkcs12, hostile, b"pw")


def test_pkcs12_legacy_rc2_is_refused_with_advice(files):
    with pytest.raises(kdfcost.KeyFileError, match="legacy cipher"):
        pkcs12scan.check_pkcs12((files / "legacy.p12").read_bytes(), b"pw")


@pytest.mark.parametrize("n,r,p", [(1 << 20, 8, 1), (1 << 14, 8, 64)])
def test_scrypt_above_the_cap_is_refused(n, r, p):
    with pytest.raises(kdfcost.KdfCostError, match="above the limit of 32 MiB"):
        kdfcost.check_scrypt(n, r, p)


def test_damaged_files_get_a_clear_error(files):
    text = (files / "ssh16").read_text()
    cut = text.splitlines()
    with pytest.raises(kdfcost.KeyFileError, match="damaged"):
        kdfcost.check_private_key_pem(("\n".join(cut[:2]) + "\n" + cut[-1] + "\n").encode())
    with pytest.raises(kdfcost.KeyFileError, match="could not be opened"):
        pkcs12scan.check_pkcs12(b"\x30\x80" * 20, b"pw")
