"""Test keys made once per session with the real ssh-keygen (and one with cryptography for RSA-1024,
which recent OpenSSH refuses to generate)."""

import functools
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest


@functools.cache
def _dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="outpost-keys-"))


@functools.cache
def keygen(kind: str, bits: int = 0, passphrase: str = "", fmt: str = "") -> tuple[str, str]:
    """(private key text, public key line) made by ssh-keygen."""
    if shutil.which("ssh-keygen") is None:
        pytest.skip("missing tool: ssh-keygen (apt openssh-client)")
    path = _dir() / f"{kind}-{bits}-{abs(hash(passphrase))}-{fmt or 'openssh'}"
    if path.exists():  # the same key asked for with different argument spellings (cache keys differ)
        return path.read_text(), Path(str(path) + ".pub").read_text().strip()
    args = ["ssh-keygen", "-q", "-t", kind, "-N", passphrase, "-C", "test", "-f", str(path)]
    if bits:
        args += ["-b", str(bits)]
    if fmt:
        args += ["-m", fmt]
    subprocess.run(args, check=True, capture_output=True, timeout=30)
    return path.read_text(), Path(str(path) + ".pub").read_text().strip()


@functools.cache
def small_rsa() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption()).decode()


def fingerprint(public_line: str) -> str:
    """What ssh-keygen -lf says (the reference for our own fingerprint code)."""
    path = _dir() / "fp.pub"
    path.write_text(public_line + "\n")
    out = subprocess.run(["ssh-keygen", "-lf", str(path)], check=True, capture_output=True, text=True, timeout=30)
    return out.stdout.split()[1]
