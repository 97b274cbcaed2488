"""Key files made by the real tools (ssh-keygen, openssl), and hostile variants made by
patching the cost fields of real files (so everything else in them stays genuine)."""

from __future__ import annotations

import base64
import re
import struct
import subprocess
from pathlib import Path

from tests.conftest import require_tool


def run(*argv: str, cwd: Path) -> None:
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")


def ssh_key(d: Path, name: str, *, rounds: int = 16, passphrase: str = "key passphrase") -> Path:
    run(require_tool("ssh-keygen"), "-q", "-t", "ed25519", "-a", str(rounds), "-N", passphrase, "-C", "",
        "-f", name, cwd=d)
    return d / name


def patch_openssh_rounds(path: Path, rounds: int) -> str:
    """The same OpenSSH key with its bcrypt-pbkdf rounds field replaced (a 32-bit field)."""
    text = path.read_text()
    body = "".join(text.strip().splitlines()[1:-1])
    blob = bytearray(base64.b64decode(body))
    pos = len(b"openssh-key-v1\x00")
    for _ in range(2):  # cipher name, kdf name
        pos += 4 + struct.unpack(">I", blob[pos:pos + 4])[0]
    salt_len = struct.unpack(">I", blob[pos + 4:pos + 8])[0]
    at = pos + 8 + salt_len
    blob[at:at + 4] = struct.pack(">I", rounds)
    b64 = base64.b64encode(bytes(blob)).decode()
    lines = "\n".join(b64[i:i + 70] for i in range(0, len(b64), 70))
    return f"-----BEGIN OPENSSH PRIVATE KEY-----\n{lines}\n-----END OPENSSH PRIVATE KEY-----\n"


def ec_key(d: Path, name: str) -> Path:
    run(require_tool("openssl"), "genpkey", "-algorithm", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
        "-out", name, cwd=d)
    return d / name


def pkcs8(d: Path, src: Path, name: str, *extra: str, password: str = "key password") -> Path:
    run(require_tool("openssl"), "pkcs8", "-topk8", "-in", str(src), "-passout", f"pass:{password}", *extra,
        "-out", name, cwd=d)
    return d / name


def raise_iterations(data: bytes, before: int = 1 << 20, after: int = 0x7FFFFF) -> bytes:
    """Replace every DER INTEGER `before` (3 bytes) with `after` (same length) in a DER file,
    or in the base64 body of a PEM file: made by openssl with -iter 1048576, the patched file
    asks for 8,388,607 iterations per derivation, and nothing else changes."""
    old, new = b"\x02\x03" + before.to_bytes(3, "big"), b"\x02\x03" + after.to_bytes(3, "big")
    if data.lstrip().startswith(b"-----BEGIN"):
        match = re.search(rb"(-----BEGIN [A-Z ]+-----\n)(.*?)(-----END [A-Z ]+-----\n?)", data, re.DOTALL)
        blob = base64.b64decode(b"".join(match.group(2).split()))
        assert old in blob, "no such INTEGER in the file"
        body = base64.b64encode(blob.replace(old, new))
        lines = b"\n".join(body[i:i + 64] for i in range(0, len(body), 64))
        return match.group(1) + lines + b"\n" + match.group(3)
    assert old in data, "no such INTEGER in the file"
    return data.replace(old, new)
