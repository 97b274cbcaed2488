"""Pure cryptographic primitives: password hashing, tokens, key files, signing.

The only package that imports argon2 and pyotp. Functions here do no I/O beyond
what their name says and never log or embed secrets in exceptions.
"""
