"""Atomic file replacement: exact mode, no temp file left, old content until the rename."""

from __future__ import annotations

import os
import stat

import pytest

from appliance.store import copy_atomic, write_atomic


def test_write_atomic_creates_and_replaces_with_exact_mode(tmp_path):
    path = tmp_path / "secret"
    old_umask = os.umask(0)  # a permissive umask must not widen the mode
    try:
        write_atomic(path, b"one")
        assert path.read_bytes() == b"one"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        write_atomic(path, b"two", mode=0o640)
        assert path.read_bytes() == b"two"
        assert stat.S_IMODE(path.stat().st_mode) == 0o640
    finally:
        os.umask(old_umask)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret"]


def test_failed_write_keeps_old_content_and_leaves_no_temp(tmp_path):
    path = tmp_path / "secret"
    write_atomic(path, b"old")
    with pytest.raises(TypeError):
        write_atomic(path, "not bytes")  # type: ignore[arg-type]
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret"]


def test_copy_atomic_streams_a_copy(tmp_path):
    src = tmp_path / "src"
    src.write_bytes(os.urandom(3 * 1024 * 1024 + 7))
    dst = tmp_path / "dst"
    copy_atomic(src, dst)
    assert dst.read_bytes() == src.read_bytes()
    assert stat.S_IMODE(dst.stat().st_mode) == 0o600
