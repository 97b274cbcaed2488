"""TLS: the appliance's local CA, its server certificate and the server SSLContext.

The only package that touches x509 (ARCHITECTURE 1.3). `selfsigned` holds pure
certificate functions and `importer` validates customer certificates; `manager.TLSManager`
owns the TLS directory (`files`), the live context (`context`) and customer certificates
(`customer`), and audits what it does. `rekey` derives the keys' password from the database
key and re-encrypts them when it changes. This file only re-exports.

Must never happen: a private key written in clear, an existing CA silently replaced,
a listener restarted to change certificates, TLS below 1.2 or a non-AEAD suite offered.
"""

# Days before expiry from which the console, the certificate page and the dashboard warn
# (one figure for all three; [tls] renew_before_days, for the generated leaf, is separate).
EXPIRY_WARNING_DAYS = 30

from appliance.tls.errors import TLSError, TLSFileError, TLSKeyPasswordError  # noqa: E402 (the constant needs none)
from appliance.tls.manager import CertificateInfo, TLSManager  # noqa: E402

__all__ = ["EXPIRY_WARNING_DAYS", "CertificateInfo", "TLSError", "TLSFileError", "TLSKeyPasswordError", "TLSManager"]
