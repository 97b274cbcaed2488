"""The database key file: created safely, never overwritten, refused when wrong."""

from __future__ import annotations

import os
import stat

import pytest

from appliance.crypto.keyfile import (
    BadKeyFileError,
    KeyFileError,
    KeyFileExistsError,
    MissingKeyError,
    create_key,
    load_key,
)
from appliance.errors import OutpostError


def test_create_writes_0600_file_in_0700_dir_and_load_returns_the_key(tmp_path):
    path = tmp_path / "keys" / "db.key"
    key = create_key(path)
    assert len(key) == 32
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes() == key.hex().encode() + b"\n"
    assert load_key(path) == key
    assert [p.name for p in path.parent.iterdir()] == ["db.key"]  # no temp file left behind


def test_create_refuses_to_overwrite(tmp_path):
    path = tmp_path / "keys" / "db.key"
    key = create_key(path)
    with pytest.raises(KeyFileExistsError, match="already exists"):
        create_key(path)
    assert load_key(path) == key


def test_two_keys_differ(tmp_path):
    assert create_key(tmp_path / "a.key") != create_key(tmp_path / "b.key")


def test_missing_key_file(tmp_path):
    path = tmp_path / "keys" / "db.key"
    with pytest.raises(MissingKeyError) as err:
        load_key(path)
    assert str(err.value) == f"database key file {path} is missing; the database cannot be opened without it"
    assert isinstance(err.value, KeyFileError) and isinstance(err.value, OutpostError)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\n",
        b"ab" * 31 + b"\n",  # too short
        b"ab" * 33 + b"\n",  # too long
        b"zz" * 32 + b"\n",  # not hex
        os.urandom(32),  # raw bytes are not the documented format
        ("é" * 32).encode() + b"\n",
    ],
)
def test_bad_content_is_refused_without_echoing_it(tmp_path, content):
    path = tmp_path / "db.key"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(BadKeyFileError, match="damaged") as err:
        load_key(path)
    shown = content.decode("ascii", errors="ignore").strip()
    if shown:
        assert shown not in str(err.value)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660])
def test_key_readable_by_others_is_refused(tmp_path, mode):
    path = tmp_path / "keys" / "db.key"
    key = create_key(path)
    path.chmod(mode)
    with pytest.raises(BadKeyFileError, match="0600") as err:
        load_key(path)
    assert key.hex() not in str(err.value)


def test_directory_instead_of_file_is_refused(tmp_path):
    path = tmp_path / "db.key"
    path.mkdir(mode=0o700)
    with pytest.raises(KeyFileError):
        load_key(path)
