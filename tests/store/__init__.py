"""Tests for appliance.store and appliance.crypto.keyfile (real SQLCipher in tmp_path)."""
