"""Fixtures for the store tests: a random key and an open database on real SQLCipher in tmp_path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from appliance.store import Database


@pytest.fixture
def key() -> bytes:
    return os.urandom(32)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    return data / "outpost.db"


@pytest.fixture
def db(db_path: Path, key: bytes):
    database = Database.open(db_path, key)
    yield database
    database.close()

