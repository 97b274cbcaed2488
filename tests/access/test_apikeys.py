"""ACL-2 in process with a frozen clock and a real encrypted database: format, HMAC
storage, escalation, expiry, revocation, last-used write bounding, object-level checks."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from appliance.access.apikeys import KEY_LENGTH, ApiKeyService, InvalidApiKeyError, KeyEscalationError, parse_key
from appliance.app import open_database
from appliance.audit.models import Actor
from appliance.auth import permissions, queries as auth_queries
from appliance.clock import FrozenClock
from appliance.config import AccessConfig
from appliance.errors import ConflictError, NotFoundError, ValidationError
from tests.conftest import run

PEPPER = bytes(range(32))
ACTOR = Actor(type="user", name="t", source="127.0.0.1")


@pytest.fixture
def env(tmp_path):
    db, _ = open_database(tmp_path, readers=2)
    clock = FrozenClock()
    svc = ApiKeyService(db, AccessConfig(api_keys_per_user=3), clock, PEPPER, grantable=permissions.covers)
    ids = {}
    for name, role in (("ada", "admin"), ("otto", "operator"), ("vera", "viewer"), ("aude", "auditor")):
        ids[name] = db.write_sync(lambda c, n=name, r=role: auth_queries.insert_user(
            c, username=n, role=r, password_hash="x", must_change_password=False, now=clock.now()))
    yield svc, db, clock, ids
    db.close()


def _audit(db, action):
    return db.read_sync(lambda c: [tuple(r) for r in c.execute(
        "SELECT outcome, details FROM audit_log WHERE action = ? ORDER BY seq", (action,))])


def test_key_format_and_storage(env):
    svc, db, _, ids = env
    issued = run(svc.create(owner_id=ids["ada"], name="backup", role="viewer", days=None, actor=ACTOR, caller_role="admin"))
    key = issued.plaintext
    assert len(key) == KEY_LENGTH == 59 and key.startswith(f"op_{issued.key.id}_")
    secret = key[16:]
    assert len(secret) == 43  # 256 bits, base64url
    stored = db.read_sync(lambda c: bytes(c.execute("SELECT secret_mac FROM api_keys").fetchone()[0]))
    assert stored == hmac.new(PEPPER, key.encode(), hashlib.sha256).digest()
    assert issued.key.expires_at - issued.key.created_at == 90 * 86400, "default expiry 90 days"
    outcome, details = _audit(db, "apikey.create")[0]
    assert outcome == "success" and secret not in details and key not in details


@pytest.mark.parametrize("token, reason", [
    ("", "prefix"), ("Bearer op_", "prefix"), ("op_", "length"), ("op_" + "a" * 56, "format"),
    ("op_ABCDEF012345_" + "a" * 43, "format"), ("op_0123456789ab-" + "a" * 43, "format"),
    ("op_0123456789ab_" + "a" * 42 + "=", "format"),
])
def test_malformed_keys_name_what_is_wrong(token, reason):
    with pytest.raises(InvalidApiKeyError) as err:
        parse_key(token)
    assert err.value.reason == reason and err.value.status == 401


def test_authenticate_revoke_expire_disable(env):
    svc, db, clock, ids = env
    key = run(svc.create(owner_id=ids["otto"], name="k", role="operator", days=10, actor=ACTOR, caller_role="admin")).plaintext
    principal = run(svc.authenticate(key, "127.0.0.9"))
    assert (principal.username, principal.role, principal.kind) == ("otto", "operator", "api_key")
    with pytest.raises(InvalidApiKeyError, match="unknown"):
        run(svc.authenticate(key[:-1] + ("B" if key[-1] != "B" else "C"), "127.0.0.9"))
    clock.advance(10 * 86400)
    with pytest.raises(InvalidApiKeyError) as err:
        run(svc.authenticate(key, "127.0.0.9"))
    assert err.value.reason == "expired"
    key2 = run(svc.create(owner_id=ids["otto"], name="k2", role="viewer", days=1, actor=ACTOR, caller_role="admin")).plaintext
    run(svc.revoke(key2[3:15], by_user_id=ids["otto"], revoke_any=False, actor=ACTOR))
    with pytest.raises(InvalidApiKeyError, match="revoked"):
        run(svc.authenticate(key2, "127.0.0.9"))
    key3 = run(svc.create(owner_id=ids["otto"], name="k3", role="viewer", days=1, actor=ACTOR, caller_role="admin")).plaintext
    db.write_sync(lambda c: c.execute("UPDATE users SET disabled = 1 WHERE id = ?", (ids["otto"],)))
    with pytest.raises(InvalidApiKeyError, match="disabled"):
        run(svc.authenticate(key3, "127.0.0.9"))


def test_demoted_owner_limits_the_key(env):
    svc, db, _, ids = env
    key = run(svc.create(owner_id=ids["ada"], name="admin key", role="admin", days=5, actor=ACTOR, caller_role="admin")).plaintext
    db.write_sync(lambda c: c.execute("UPDATE users SET role = 'operator' WHERE id = ?", (ids["ada"],)))
    with pytest.raises(InvalidApiKeyError) as err:
        run(svc.authenticate(key, "127.0.0.1"))
    assert err.value.reason == "owner_role"


@pytest.mark.parametrize("owner, role", [("otto", "admin"), ("otto", "auditor"), ("vera", "operator"),
                                         ("aude", "viewer"), ("vera", "admin")])
def test_escalation_is_refused_and_audited(env, owner, role):
    svc, db, _, ids = env
    with pytest.raises(KeyEscalationError) as err:
        run(svc.create(owner_id=ids[owner], name="up", role=role, days=5, actor=ACTOR, caller_role="admin"))
    assert err.value.status == 403 and "role" in err.value.details
    assert db.read_sync(lambda c: c.execute("SELECT count(*) FROM api_keys").fetchone()[0]) == 0
    assert _audit(db, "apikey.create")[-1][0] == "denied"


def test_input_errors_and_limits(env):
    svc, _, _, ids = env
    for kw, field in [({"name": ""}, "name"), ({"name": "x" * 65}, "name"), ({"name": "tab\there"}, "name"),
                      ({"role": "root"}, "role"), ({"days": 0}, "expires_days"), ({"days": 366}, "expires_days")]:
        args = {"name": "ok", "role": "viewer", "days": 5, **kw}
        with pytest.raises(ValidationError) as err:
            run(svc.create(owner_id=ids["vera"], actor=ACTOR, caller_role="admin", **args))
        assert field in err.value.details
    for i in range(3):
        run(svc.create(owner_id=ids["vera"], name=f"k{i}", role="viewer", days=5, actor=ACTOR, caller_role="admin"))
    with pytest.raises(ConflictError, match="revoke one first"):
        run(svc.create(owner_id=ids["vera"], name="k4", role="viewer", days=5, actor=ACTOR, caller_role="admin"))


def test_other_users_keys_look_absent(env):
    svc, db, _, ids = env
    key = run(svc.create(owner_id=ids["ada"], name="mine", role="viewer", days=5, actor=ACTOR, caller_role="admin"))
    for crafted in (key.key.id, key.key.id.upper(), "../" + key.key.id, "0" * 12):
        with pytest.raises(NotFoundError):
            run(svc.revoke(crafted, by_user_id=ids["vera"], revoke_any=False, actor=ACTOR))
        with pytest.raises(NotFoundError):
            run(svc.get(crafted, viewer_id=ids["vera"], see_all=False))
    assert run(svc.authenticate(key.plaintext, "127.0.0.1")).username == "ada"
    assert [o for o, _ in _audit(db, "apikey.revoke")] == ["denied"]
    assert run(svc.revoke(key.key.id, by_user_id=ids["otto"], revoke_any=True, actor=ACTOR)).revoked_at is not None


def test_last_used_is_written_at_most_every_30_seconds(env):
    svc, db, clock, ids = env
    key = run(svc.create(owner_id=ids["ada"], name="busy", role="viewer", days=5, actor=ACTOR, caller_role="admin")).plaintext

    def last_used():
        return tuple(db.read_sync(lambda c: c.execute("SELECT last_used_at, last_used_ip FROM api_keys").fetchone()))

    run(svc.authenticate(key, "127.0.0.1"))
    first = last_used()
    assert first == (clock.now(), "127.0.0.1")
    clock.advance(10)
    run(svc.authenticate(key, "127.0.0.2"))
    assert last_used() == first, "within 30 s nothing is written"
    clock.advance(25)
    run(svc.authenticate(key, "127.0.0.2"))
    assert last_used() == (clock.now(), "127.0.0.2")
