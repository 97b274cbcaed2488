"""Test keys and bundle builders (a fresh root per test session: the development root's
private key is not in the repository)."""

from __future__ import annotations

import time
from pathlib import Path

from appliance.crypto import signing
from appliance.updates import bundle, release, roots
from cryptography.hazmat.primitives.serialization import load_pem_private_key

NOW = time.time()


def new_key():
    pem, _ = signing.generate()
    return load_pem_private_key(pem, password=None)


class Keys:
    def __init__(self, days: float = 30, offset: float = -60) -> None:
        self.root = new_key()
        self.signer = new_key()
        self.cert = release.certify(self.root, signing.public_of(self.signer), not_before=int(NOW + offset),
                                    not_after=int(NOW + offset + days * 86400))
        self.trust = roots.from_keys({"test": signing.public_of(self.root)})

    def write_trust_file(self, path: Path) -> Path:
        path.write_text(signing.format_public(signing.public_of(self.root), "test"))
        return path


def program(version: str, body: str = "") -> bytes:
    return (f"#!/bin/sh\n# outpost {version} (test payload)\n{body}\n").encode()


def make(path: Path, keys: Keys, version: str = "2.0.0", *, min_version: str = "0.0.0",
         files: list[tuple[str, bytes, bool]] | None = None, product: str = "outpost",
         manifest_edit=None, blobs: list[bytes] | None = None, envelope_edit=None, signers=None) -> Path:
    """A bundle; the *_edit hooks build the malicious variants (signed after manifest_edit)."""
    files = files if files is not None else [("outpost", program(version), True)]
    manifest = bundle.Manifest(product=product, version=version, min_version=min_version, created=int(NOW),
                               files=[bundle.payload_entry(p, d, x) for p, d, x in files],
                               key_ids=[signing.key_id(signing.public_of(keys.signer))])
    if manifest_edit:
        manifest = manifest_edit(manifest)
    envelope = release.sign_manifest(manifest, signers or [(keys.signer, keys.cert)])
    if envelope_edit:
        envelope = envelope_edit(envelope)
    bundle.write(path, envelope, blobs if blobs is not None else [d for _, d, _ in files])
    return path
