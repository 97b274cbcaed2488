"""Outpost: an air-gapped, single-binary operations appliance.

The package is organised by capability (see ARCHITECTURE.md); only `web/` imports
Litestar, only `store/connection.py` imports sqlcipher3, only `crypto/` imports
argon2 and pyotp, only `tls/` touches x509.
"""

__version__ = "0.1.0"
PRODUCT = "outpost"
