"""Release-engineer side (build.py keygen / bundle): make keys, certify, sign, write bundles.

Runs on the signing machine, never on the appliance. Private keys are written 0600 to a
directory the engineer names; nothing secret is printed.

    python -m appliance.updates.release keygen --out DIR [--days N] [--root-name NAME] [--root-key ROOT.key]
    python -m appliance.updates.release bundle --key K --cert C --binary F --version X.Y.Z \
        [--min-version A.B.C] --out FILE
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from appliance.crypto import signing
from appliance.updates import bundle


def certify(root_private: signing.Ed25519PrivateKey, public_key: bytes, *, not_before: int,
            not_after: int) -> bundle.KeyCert:
    """A root's signature over a signing key and its validity period."""
    body = bundle.encode(bundle.KeyCertBody(key_id=signing.key_id(public_key), public_key=public_key,
                                            not_before=not_before, not_after=not_after,
                                            root_id=signing.key_id(signing.public_of(root_private))))
    return bundle.KeyCert(body=body, signature=signing.sign(root_private, body))


def sign_manifest(manifest: bundle.Manifest,
                  signers: list[tuple[signing.Ed25519PrivateKey, bundle.KeyCert]]) -> bundle.Envelope:
    raw = bundle.encode(manifest)
    sigs = [bundle.Signature(key_id=signing.key_id(signing.public_of(k)), signature=signing.sign(k, raw))
            for k, _ in signers]
    return bundle.Envelope(format=bundle.FORMAT, manifest=raw, signatures=sigs, certificates=[c for _, c in signers])


def make_bundle(out: Path, *, key: signing.Ed25519PrivateKey, cert: bundle.KeyCert,
                files: list[tuple[str, bytes, bool]], version: str, min_version: str = "0.0.0",
                created: int | None = None, product: str = bundle.PRODUCT) -> bundle.Manifest:
    """Sign and write a bundle holding `files` as (path, content, executable)."""
    bundle.parse_version(version)
    bundle.parse_version(min_version)
    manifest = bundle.Manifest(product=product, version=version, min_version=min_version,
                               created=int(created if created is not None else time.time()),
                               files=[bundle.payload_entry(p, d, x) for p, d, x in files],
                               key_ids=[signing.key_id(signing.public_of(key))])
    bundle.write(out, sign_manifest(manifest, [(key, cert)]), [d for _, d, _ in files])
    return manifest


def keygen(out: Path, days: int = 730, root_name: str = "root", root_key: Path | None = None) -> None:
    """A root key pair (or the existing `root_key`, for rotation) and one signing key
    certified by it for `days` days. Existing files are never overwritten."""
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    if root_key is None:
        root_pem, root_pub = signing.generate()
        signing.write_private(out / f"{root_name}.key", root_pem)
        (out / f"{root_name}.pub").write_text(signing.format_public(root_pub, root_name))
        root_key = out / f"{root_name}.key"
    sign_pem, sign_pub = signing.generate()
    signing.write_private(out / "signing.key", sign_pem)
    now = int(time.time())
    cert = certify(signing.load_private(root_key), sign_pub, not_before=now - 60, not_after=now + days * 86400)
    (out / "signing.cert").write_bytes(bundle.encode(cert))


def load_cert(path: Path) -> bundle.KeyCert:
    return bundle.decode_canonical(Path(path).read_bytes(), bundle.KeyCert, "signing certificate")


def _main(argv: list[str]) -> int:
    top = argparse.ArgumentParser(prog="release")
    sub = top.add_subparsers(dest="cmd", required=True)
    k = sub.add_parser("keygen")
    k.add_argument("--out", type=Path, required=True)
    k.add_argument("--days", type=int, default=730)
    k.add_argument("--root-name", default="root")
    k.add_argument("--root-key", type=Path, help="certify a new signing key under this existing root (rotation)")
    b = sub.add_parser("bundle")
    b.add_argument("--key", type=Path, required=True)
    b.add_argument("--cert", type=Path, required=True)
    b.add_argument("--binary", type=Path, default=Path("dist/outpost"))
    b.add_argument("--version", required=True)
    b.add_argument("--min-version", default="0.0.0")
    b.add_argument("--out", type=Path, required=True)
    args = top.parse_args(argv)
    try:
        if args.cmd == "keygen":
            keygen(args.out, args.days, args.root_name, args.root_key)
            root = "" if args.root_key else f"{args.root_name}.key (offline root, 0600), {args.root_name}.pub, "
            print(f"wrote {args.out}/: {root}signing.key (0600), signing.cert")
        else:
            m = make_bundle(args.out, key=signing.load_private(args.key), cert=load_cert(args.cert),
                            files=[("outpost", args.binary.read_bytes(), True)], version=args.version,
                            min_version=args.min_version)
            print(f"wrote {args.out}: outpost {m.version} (upgrades from {m.min_version} or later)")
    except (OSError, ValueError) as exc:
        print(f"release: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
