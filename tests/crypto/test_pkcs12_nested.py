"""A PKCS#12 file can hide a shrouded key bag inside its encrypted SafeContents, where its
iteration count is not visible until that layer is decrypted; opening such a file would
derive with whatever count the hidden bag names. The scanner decrypts the layer (after
checking the layer's own, visible, cost) and refuses the hidden cost before any library
derives it. The file is built here from a real `openssl pkcs12 -export` file: its shrouded
key bag (made with 1,048,576 iterations, patched to 8,388,607) is moved inside a PBES2 /
AES-256-CBC encrypted SafeContents made with the cryptography library."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from appliance.crypto import der, kdfcost, pkcs12scan
from tests.conftest import require_tool

from .keyfiles import ec_key, raise_iterations, run


def _tlv(tag: int, content: bytes) -> bytes:
    n = len(content)
    length = bytes([n]) if n < 0x80 else bytes([0x80 | ((n.bit_length() + 7) // 8)]) + n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag]) + length + content


def _oid(dotted: str) -> bytes:
    arcs = [int(a) for a in dotted.split(".")]
    out = bytes([40 * arcs[0] + arcs[1]])
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        while arc > 0x7F:
            arc >>= 7
            chunk.insert(0, 0x80 | (arc & 0x7F))
        out += bytes(chunk)
    return _tlv(0x06, out)


SEQ, OCTETS, INT = 0x30, 0x04, 0x02


def _seq(*parts: bytes) -> bytes:
    return _tlv(SEQ, b"".join(parts))


def _encrypt_pbes2(plain: bytes, password: bytes, iterations: int = 2048) -> tuple[bytes, bytes]:
    salt, iv = os.urandom(16), os.urandom(16)
    key = PBKDF2HMAC(hashes.SHA256(), 32, salt, iterations).derive(password)
    padder = padding.PKCS7(128).padder()
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    sealed = enc.update(padder.update(plain) + padder.finalize()) + enc.finalize()
    alg = _seq(_oid(kdfcost.PBES2), _seq(
        _seq(_oid(kdfcost.PBKDF2), _seq(_tlv(OCTETS, salt), _tlv(INT, iterations.to_bytes(2, "big")),
                                        _seq(_oid("1.2.840.113549.2.9"), b"\x05\x00"))),
        _seq(_oid("2.16.840.1.101.3.4.1.42"), _tlv(OCTETS, iv))))
    return alg, sealed


@pytest.fixture(scope="module")
def hidden(tmp_path_factory) -> bytes:
    d = tmp_path_factory.mktemp("p12")
    openssl = require_tool("openssl")
    ec_key(d, "ec.pem")
    run(openssl, "req", "-x509", "-key", "ec.pem", "-out", "cert.pem", "-subj", "/CN=t", "-days", "2", cwd=d)
    run(openssl, "pkcs12", "-export", "-inkey", "ec.pem", "-in", "cert.pem", "-passout", "pass:pw",
        "-iter", str(1 << 20), "-nomac", "-certpbe", "NONE", "-out", "plain-certs.p12", cwd=d)
    pfx = der.read((d / "plain-certs.p12").read_bytes())
    auth_safe = der.read(pfx.child(1).child(1).child(0).octets())
    bags = b""
    for info in auth_safe.children():  # both ContentInfos are "data" here (-certpbe NONE)
        for bag in der.read(info.child(1).child(0).octets()).children():
            bags += _tlv(SEQ, bag.content)
    inner = raise_iterations(_tlv(SEQ, bags))  # the key bag now asks for 8,388,607 iterations
    alg, sealed = _encrypt_pbes2(inner, b"pw")
    encrypted_data = _seq(_tlv(INT, b"\x00"), _seq(_oid(pkcs12scan.DATA), alg, _tlv(0x80, sealed)))
    content_info = _seq(_oid(pkcs12scan.ENCRYPTED_DATA), _tlv(0xA0, encrypted_data))
    outer = _seq(_oid(pkcs12scan.DATA), _tlv(0xA0, _tlv(OCTETS, _seq(content_info))))
    return _seq(_tlv(INT, b"\x03"), outer)


def test_a_key_bag_hidden_in_the_encrypted_layer_is_refused_before_deriving(hidden):
    with pytest.raises(kdfcost.KdfCostError, match="8388607 iterations is above the limit"):
        pkcs12scan.check_pkcs12(hidden, b"pw")


def test_without_the_right_password_the_hidden_layer_is_not_opened(hidden):
    with pytest.raises(pkcs12scan.Pkcs12PasswordError):
        pkcs12scan.check_pkcs12(hidden, b"wrong")
