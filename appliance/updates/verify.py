"""Verify a staged bundle completely before anything from it is used (UPD-2).

Order: framing -> signatures (root -> signing key -> manifest bytes) -> manifest rules
(product, anti-rollback, floor, paths) -> exact length -> every payload hash. Every
refusal is a `BundleRefusedError` whose message says why in plain words.

Invariants (what must never happen):
- A manifest is decoded or believed before a valid signature over its exact bytes by a
  signing key certified, and currently valid, under a root built into this binary.
- Any signature in the bundle is bad and the bundle is still accepted (no "one good
  signature is enough" ambiguity), or manifest key_ids differ from who signed.
- A version not newer than the installed one is accepted (anti-rollback), or one whose
  floor is above the installed one.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import msgspec

from appliance.crypto import signing
from appliance.errors import OutpostError
from appliance.updates import bundle
from appliance.updates.roots import TrustStore

_CHUNK = 1 << 20
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


class BundleRefusedError(OutpostError):
    code = "update_refused"


class Verified(msgspec.Struct, frozen=True, kw_only=True):
    manifest: bundle.Manifest
    header: bytes          # the exact envelope bytes, kept next to the installed slot (UPD-4)
    payload_offset: int


def check_signatures(envelope: bundle.Envelope, trust: TrustStore, now: float, *, check_validity: bool = True) -> None:
    """Raise unless every signature verifies under a root-certified signing key."""
    if not envelope.signatures:
        raise BundleRefusedError("the bundle is not signed")
    certs: dict[str, bundle.KeyCertBody] = {}
    for cert in envelope.certificates:
        try:
            body = bundle.decode_canonical(cert.body, bundle.KeyCertBody, "signing-key certificate")
        except bundle.BundleFormatError as exc:
            raise BundleRefusedError(str(exc)) from None
        root = trust.get(body.root_id)
        if root is None:
            raise BundleRefusedError(f"signing key {body.key_id} is certified by an unknown root {body.root_id}")
        if not signing.verify(root.public_key, cert.body, cert.signature):
            raise BundleRefusedError(f"the certificate of signing key {body.key_id} has a bad root signature")
        if signing.key_id(body.public_key) != body.key_id:
            raise BundleRefusedError(f"the certificate of signing key {body.key_id} names a different key")
        certs[body.key_id] = body
    signers = []
    for sig in envelope.signatures:
        signed_by = certs.get(sig.key_id)
        if signed_by is None:
            raise BundleRefusedError(f"the bundle is signed by an unknown key {sig.key_id}")
        if check_validity and not signed_by.not_before <= now <= signed_by.not_after:
            raise BundleRefusedError(f"signing key {sig.key_id} is not valid now (valid from {signed_by.not_before} "
                                     f"to {signed_by.not_after}, Unix time); it has expired or is not yet valid")
        if not signing.verify(signed_by.public_key, envelope.manifest, sig.signature):
            raise BundleRefusedError(f"bad signature by key {sig.key_id}: the manifest was altered or not signed by it")
        signers.append(sig.key_id)
    try:
        key_ids = msgspec.json.decode(envelope.manifest, type=bundle.Manifest).key_ids
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError):
        raise BundleRefusedError("the signed manifest is malformed") from None
    if sorted(key_ids) != sorted(signers):
        raise BundleRefusedError("the manifest's signing key ids do not match its signatures")


def check_manifest(raw: bytes, installed_version: str) -> bundle.Manifest:
    """Decode the (already signature-checked) manifest and apply the update rules."""
    try:
        manifest = bundle.decode_canonical(raw, bundle.Manifest, "manifest")
        new, floor = bundle.parse_version(manifest.version), bundle.parse_version(manifest.min_version)
        installed = bundle.parse_version(installed_version)
        paths = set()
        for entry in manifest.files:  # every entry, each refusal naming its entry
            bundle.check_path(entry.path)
            if entry.size < 0 or not _SHA256_HEX.fullmatch(entry.sha256):
                raise BundleRefusedError(f"the manifest entry for {entry.path!r} has an invalid size or hash "
                                         "(size must be >= 0, hash 64 lowercase hex digits)")
            if entry.path.lower() in paths:
                raise BundleRefusedError(f"the manifest lists {entry.path!r} twice (duplicate entries)")
            paths.add(entry.path.lower())
        for p in paths:  # a file may not also be a directory of another entry ("lib" and "lib/x")
            if any(q.startswith(p + "/") for q in paths):
                raise BundleRefusedError(f"the manifest uses {p!r} both as a file and as a directory")
    except bundle.BundleFormatError as exc:
        raise BundleRefusedError(str(exc)) from None
    if manifest.product != bundle.PRODUCT:
        raise BundleRefusedError(f"the bundle is for product {manifest.product!r}, not {bundle.PRODUCT!r}")
    if new == installed:
        raise BundleRefusedError(f"version {manifest.version} is already installed")
    if new < installed:
        raise BundleRefusedError(f"version {manifest.version} is older than the installed {installed_version} "
                                 "(downgrades are refused)")
    if installed < floor:
        raise BundleRefusedError(f"version {manifest.version} upgrades only from {manifest.min_version} or later; "
                                 f"installed is {installed_version} (below the floor): "
                                 "install an intermediate release first")
    if not any(f.path == "outpost" and f.executable for f in manifest.files):
        raise BundleRefusedError("the bundle has no executable 'outpost' program")
    return manifest


def verify_file(path: Path, trust: TrustStore, *, installed_version: str, now: float) -> Verified:
    """Verify the staged copy at `path` completely; BundleRefusedError on any problem."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        try:
            envelope, offset = bundle.read_header(f, size)
        except bundle.BundleFormatError as exc:
            raise BundleRefusedError(str(exc)) from None
        check_signatures(envelope, trust, now)
        manifest = check_manifest(envelope.manifest, installed_version)
        expected = offset + sum(f_.size for f_ in manifest.files)
        if size < expected:
            raise BundleRefusedError(f"the file is truncated: {size} bytes, the manifest needs {expected}")
        if size > expected:
            raise BundleRefusedError(f"size mismatch: {size} bytes, the manifest accounts for {expected}")
        for entry in manifest.files:
            digest, left = hashlib.sha256(), entry.size
            while left:
                chunk = f.read(min(_CHUNK, left))
                if not chunk:
                    raise BundleRefusedError("the file is truncated")
                digest.update(chunk)
                left -= len(chunk)
            if digest.hexdigest() != entry.sha256:
                raise BundleRefusedError(f"payload file {entry.path!r}: SHA-256 does not match the signed manifest")
        f.seek(0)
        header = f.read(offset)
    return Verified(manifest=manifest, header=header, payload_offset=offset)


def read_release(header_path: Path, trust: TrustStore) -> bundle.Manifest:
    """The signed manifest kept next to an installed slot, signature chain re-checked
    (validity periods not: a signing key may expire after its release was installed)."""
    data = Path(header_path).read_bytes()
    import io
    try:
        envelope, _ = bundle.read_header(io.BytesIO(data), len(data))
        check_signatures(envelope, trust, 0, check_validity=False)
        return bundle.decode_canonical(envelope.manifest, bundle.Manifest, "manifest")
    except bundle.BundleFormatError as exc:
        raise BundleRefusedError(str(exc)) from None
