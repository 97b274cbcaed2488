"""Helpers for API tests against a real appliance: users and keys made in process
through the real services (same database, same pepper file), requests over TLS."""

from __future__ import annotations

import asyncio
import time

import httpx

from appliance.access.apikeys import ApiKeyService
from appliance.app import open_database
from appliance.audit.models import Actor
from appliance.auth import permissions
from appliance.clock import SystemClock
from appliance.config import AccessConfig
from appliance.crypto import keyfile
from appliance.paths import DataDir
from tests.conftest import ADMIN_PASSWORD


def make_key(appliance, username: str, role: str, *, days: int = 30) -> str:
    """A key for an existing user, created through ApiKeyService on the appliance's database."""
    db, _ = open_database(appliance.data_dir, readers=1)
    try:
        uid = db.read_sync(lambda c: c.execute("SELECT id FROM users WHERE username = ?", (username,)).fetchone()[0])
        svc = ApiKeyService(db, AccessConfig(), SystemClock(), keyfile.load_key(DataDir(appliance.data_dir).apikey_key),
                            grantable=permissions.covers)
        issued = asyncio.run(svc.create(owner_id=uid, name=f"test {role} {time.monotonic_ns()}", role=role, days=days,
                                        actor=Actor(type="system", name="test", source="local"), caller_role=role))
        return issued.plaintext
    finally:
        db.close()


def sql(appliance, statement: str, args: tuple = ()):
    db, _ = open_database(appliance.data_dir, readers=1)
    try:
        if statement.lstrip().upper().startswith("SELECT"):
            return db.read_sync(lambda c: [tuple(r) for r in c.execute(statement, args).fetchall()])
        return db.write_sync(lambda c: c.execute(statement, args).rowcount)
    finally:
        db.close()


def api(appliance, key: str | None = None, *, local_address: str = "127.0.0.1", **kw) -> httpx.Client:
    """An API client (no cookies, no Origin) bound to a loopback source address."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    headers.update(kw.pop("headers", {}))
    transport = httpx.HTTPTransport(local_address=local_address, verify=appliance.tls())
    return httpx.Client(base_url=appliance.url, transport=transport, headers=headers, timeout=30, **kw)


def key_id(plaintext: str) -> str:
    """The public id of an `op_<id>_<secret>` key (12 hex characters)."""
    return plaintext[3:15]


def seed_user(appliance, key: str, username: str, role: str) -> int:
    """A user created through the API with an admin key; returns its id."""
    with api(appliance, key) as c:
        body = {"username": username, "role": role}
        r = c.post("/api/v1/users", json=body)
        if r.status_code == 400 and "password" in r.text:  # user admin may ask for the caller's password
            r = c.post("/api/v1/users", json={**body, "password": ADMIN_PASSWORD})
        assert r.status_code == 201, r.text
        return r.json()["user"]["id"]


def error_of(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}, body
    return body["error"]
