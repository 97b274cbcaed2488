"""TLS: the appliance's local CA, its server certificate and the server SSLContext.

The only package that touches x509 (ARCHITECTURE 1.3). `selfsigned` holds pure
certificate functions; `manager.TLSManager` owns the files and the live context.

Must never happen: a private key written in clear, an existing CA silently replaced,
a listener restarted to change certificates, TLS below 1.2 or a non-AEAD suite offered.
"""

from appliance.tls.manager import (
    CertificateInfo,
    TLSError,
    TLSFileError,
    TLSKeyPasswordError,
    TLSManager,
)

__all__ = ["CertificateInfo", "TLSError", "TLSFileError", "TLSKeyPasswordError", "TLSManager"]
