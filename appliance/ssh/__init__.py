"""SSH client side: the only package that imports asyncssh.

Invariants (what must never happen):
- No connection is ever made with host-key checking off. A device either has a
  pinned key (the only key trusted) or is on first contact (TOFU), where the
  presented key is captured during the handshake and must be pinned by the caller.
- On a host-key mismatch the handshake is aborted before user authentication:
  no password, key signature or username is sent (DEV-3).
- Keys and pins are passed to asyncssh as loaded objects, never file paths, and
  ~/.ssh (config, known_hosts, agent, default keys) is never consulted.
- Output read from a device is capped in bytes and time; nothing a device sends can
  grow memory without bound.
"""
