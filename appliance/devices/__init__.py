"""Devices: the inventory, the SSH credential vault and host-key pins (DEV-1..4, STORE-3).

Invariants: secrets are sealed per row (crypto/vault.py) and leave this package
only inside `DeviceSecret` for the probe; responses show "set", type and key
fingerprint only. Every change is audited in its own transaction, without values
of secrets. A pinned host key is replaced only by an operator's review.
"""
