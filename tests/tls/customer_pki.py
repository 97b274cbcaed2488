"""A customer PKI built with the `openssl` CLI: root -> intermediate -> leaf, plus bad cases.

Expired certificates are made with the cryptography library (OpenSSL 3.0's `x509 -req`
cannot back-date, and faketime is not available); everything else comes from openssl.
"""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_EXT = "basicConstraints=critical,CA:true\nkeyUsage=critical,keyCertSign,cRLSign\n"


def ossl(openssl: str, *args: str, cwd: Path) -> None:
    proc = subprocess.run([openssl, *args], cwd=cwd, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")


class PKI:
    """Files in `root`: root.pem/key, int.pem/key and leaves made on demand."""

    def __init__(self, openssl: str, root: Path) -> None:
        self.openssl, self.dir = openssl, root
        root.mkdir(parents=True, exist_ok=True)
        (root / "ca.ext").write_text(CA_EXT)
        ossl(openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", "root.key", "-out", "root.pem", "-subj", "/CN=Customer Test Root", "-days", "60",
             "-addext", "basicConstraints=critical,CA:true", "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=root)
        ossl(openssl, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", "int.key", "-out", "int.csr", "-subj", "/CN=Customer Test Intermediate", cwd=root)
        ossl(openssl, "x509", "-req", "-in", "int.csr", "-CA", "root.pem", "-CAkey", "root.key", "-set_serial", "2",
             "-days", "50", "-extfile", "ca.ext", "-out", "int.pem", cwd=root)

    def leaf(self, name: str, *, san: str = "DNS:outpost.test,DNS:localhost,IP:127.0.0.1", key: str = "ec",
             days: int = 20) -> tuple[Path, Path]:
        """Leaf cert + plain PEM key signed by the intermediate. key: "ec", "ec384", "rsa:N"."""
        d = self.dir
        (d / f"{name}.ext").write_text(f"subjectAltName={san}\nbasicConstraints=CA:false\n"
                                       "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
        if key.startswith("rsa:"):
            newkey = ["-newkey", key]
        else:
            newkey = ["-newkey", "ec", "-pkeyopt", f"ec_paramgen_curve:{'P-384' if key == 'ec384' else 'P-256'}"]
        ossl(self.openssl, "req", "-new", *newkey, "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
             "-subj", f"/CN={name}", cwd=d)
        ossl(self.openssl, "x509", "-req", "-in", f"{name}.csr", "-CA", "int.pem", "-CAkey", "int.key",
             "-set_serial", str(abs(hash(name)) % 10**9 + 10), "-days", str(days), "-extfile", f"{name}.ext",
             "-out", f"{name}.pem", cwd=d)
        return d / f"{name}.pem", d / f"{name}.key"

    def chain(self, name: str, order: tuple[str, ...] = ("leaf", "int", "root")) -> Path:
        """A PEM file with the leaf `name`, the intermediate and the root in `order`."""
        files = {"leaf": self.dir / f"{name}.pem", "int": self.dir / "int.pem", "root": self.dir / "root.pem"}
        out = self.dir / f"{name}-{'-'.join(order)}.pem"
        out.write_bytes(b"".join(files[o].read_bytes() for o in order))
        return out

    def encrypt_key(self, name: str, password: str) -> Path:
        ossl(self.openssl, "pkey", "-in", f"{name}.key", "-aes256", "-passout", f"pass:{password}",
             "-out", f"{name}.enc.key", cwd=self.dir)
        return self.dir / f"{name}.enc.key"

    def pkcs12(self, name: str, password: str) -> Path:
        (self.dir / "cachain.pem").write_bytes((self.dir / "int.pem").read_bytes() + (self.dir / "root.pem").read_bytes())
        ossl(self.openssl, "pkcs12", "-export", "-inkey", f"{name}.key", "-in", f"{name}.pem", "-certfile", "cachain.pem",
             "-passout", f"pass:{password}", "-out", f"{name}.p12", cwd=self.dir)
        return self.dir / f"{name}.p12"

    def expired_leaf(self, name: str) -> tuple[Path, Path]:
        """A leaf signed by the intermediate whose validity ended yesterday (cryptography library)."""
        int_cert = x509.load_pem_x509_certificate((self.dir / "int.pem").read_bytes())
        int_key = serialization.load_pem_private_key((self.dir / "int.key").read_bytes(), None)
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                .issuer_name(int_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(days=10)).not_valid_after(now - dt.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName("outpost.test")]), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .sign(int_key, hashes.SHA256()))
        (self.dir / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (self.dir / f"{name}.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                                 serialization.PrivateFormat.PKCS8,
                                                                 serialization.NoEncryption()))
        return self.dir / f"{name}.pem", self.dir / f"{name}.key"
