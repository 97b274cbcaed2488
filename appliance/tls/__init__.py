"""TLS: the appliance's local CA, its server certificate and the server SSLContext.

The only package that touches x509 (ARCHITECTURE 1.3). `selfsigned` holds pure
certificate functions; `manager.TLSManager` owns the files and the live context.

Must never happen: a private key written in clear, an existing CA silently replaced,
a listener restarted to change certificates, TLS below 1.2 or a non-AEAD suite offered.
"""

# Days before expiry from which the console, the certificate page and the dashboard warn
# (one figure for all three; [tls] renew_before_days, for the generated leaf, is separate).
EXPIRY_WARNING_DAYS = 30

from appliance.tls.manager import (  # noqa: E402 (the constant above needs no import)
    CertificateInfo,
    TLSError,
    TLSFileError,
    TLSKeyPasswordError,
    TLSManager,
)

__all__ = ["EXPIRY_WARNING_DAYS", "CertificateInfo", "TLSError", "TLSFileError", "TLSKeyPasswordError", "TLSManager"]
