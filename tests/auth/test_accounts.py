"""AUTH-3..8, ACL-1 in process: users and roles, forced change, history, TOTP sign-in,
recovery codes, session revocation and step-up, with a frozen clock and a real
encrypted database. Codes come from oathtool, the RFC 6238 reference tool."""

import subprocess
from datetime import UTC, datetime

import msgspec
import pytest

from appliance.app import open_database
from appliance.audit.models import Actor
from appliance.auth.errors import LastAdminError, LoginFailedError, ReauthRequiredError
from appliance.auth.secondfactor import InvalidRecoveryCodeError
from appliance.auth.models import SecondFactorRequired, UserCreate, UserUpdate
from appliance.clock import FrozenClock
from appliance.config import AuthConfig
from appliance.crypto import totp
from appliance.errors import ConflictError, NotFoundError, PermissionDeniedError, ValidationError
from tests.auth import build_auth
from tests.conftest import FAST_AUTH, fast_hasher, require_tool, run

PASSWORD = "a long enough passphrase for tests"
NEW = "another quite long passphrase here"


def oathtool(seed: str, at: float) -> str:
    when = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return subprocess.run([require_tool("oathtool"), "--totp", "-b", "--now", when, seed], check=True,
                          capture_output=True, text=True, timeout=10).stdout.strip()


@pytest.fixture
def clock():
    return FrozenClock(1_800_000_000.0)


@pytest.fixture
def auth(tmp_path, clock):
    db, _ = open_database(tmp_path, readers=2)
    hasher = fast_hasher(concurrency=2)
    service = build_auth(db, AuthConfig(**FAST_AUTH, login_attempts_per_minute=1000), clock, hasher, hostname="gatehouse")
    code = service.setup.ensure_setup_code(tmp_path / "setup-code")
    run(service.setup.complete_setup(code=code, username="admin", password=PASSWORD, confirm=PASSWORD, source="t"))
    yield service
    hasher.close()
    db.close()


def login(auth, username="admin", password=PASSWORD, pre="pre-token", source="127.0.0.1"):
    return run(auth.sessions.login(username=username, password=password, source=source, user_agent="ua", pre_session=pre))


def audit_count(auth, action, outcome="success"):
    return auth.context.db.read_sync(lambda c: c.execute("SELECT count(*) FROM audit_log WHERE action = ? AND outcome = ?",
                                                 (action, outcome)).fetchone()[0])


def all_audit_details(auth) -> str:
    return " ".join(r[0] for r in auth.context.db.read_sync(lambda c: c.execute("SELECT details FROM audit_log").fetchall()))


def make_user(auth, admin, username="bob", role="viewer"):
    temp = run(auth.accounts.create_user(admin, UserCreate(username=username, role=role), source="t"))
    first = login(auth, username, temp.password)
    assert first.principal.must_change_password and first.principal.pending_step == "password"
    changed = run(auth.accounts.change_password(first.principal, current=temp.password, new=NEW, confirm=NEW, source="t",
                                       user_agent="ua"))
    return temp, changed


def test_admin_creates_user_with_forced_change_and_no_secret_in_audit(auth):
    admin = login(auth).principal
    temp, changed = make_user(auth, admin)
    assert not changed.principal.must_change_password and changed.principal.pending_step is None
    assert temp.password not in all_audit_details(auth) and NEW not in all_audit_details(auth)
    assert audit_count(auth, "user.create") == 1 and audit_count(auth, "user.password.change") == 1
    with pytest.raises(LoginFailedError):
        login(auth, "bob", temp.password)  # the temporary password is gone
    with pytest.raises(ValidationError) as err:
        run(auth.accounts.create_user(admin, UserCreate(username="BOB", role="viewer"), source="t"))
    assert "taken" in err.value.details["username"]
    with pytest.raises(ValidationError) as err:
        run(auth.accounts.create_user(admin, UserCreate(username="eve", role="root"), source="t"))
    assert "role" in err.value.details


def test_password_policy_history_and_plain_words(auth):
    admin = login(auth).principal
    _, s = make_user(auth, admin)
    p = s.principal
    for bad, words in [("Password1!Password1!", "commonly used"), ("my outpost passphrase is long", "product name"),
                       ("bobbobbob and a long tail", "username"), ("the gatehouse is my home", "appliance's name"),
                       ("short", "at least 15"), ("x" * 1025, "at most 1024")]:
        with pytest.raises(ValidationError) as err:
            run(auth.accounts.change_password(p, current=NEW, new=bad, confirm=bad, source="t", user_agent="ua"))
        assert words in err.value.details["new"], (bad, err.value.details)
    with pytest.raises(ValidationError) as err:  # reuse of the current password
        run(auth.accounts.change_password(p, current=NEW, new=NEW, confirm=NEW, source="t", user_agent="ua"))
    assert "reuse" in err.value.details["new"]
    with pytest.raises(ValidationError) as err:
        run(auth.accounts.change_password(p, current="wrong", new=PASSWORD, confirm=PASSWORD, source="t", user_agent="ua"))
    assert "current" in err.value.details
    passphrase = "correct horse battery staple " * 2 + "umbrella"  # 66 characters
    s2 = run(auth.accounts.change_password(p, current=NEW, new=passphrase[:64], confirm=passphrase[:64], source="t",
                                  user_agent="ua"))
    with pytest.raises(ValidationError) as err:  # NEW is in the history now
        run(auth.accounts.change_password(s2.principal, current=passphrase[:64], new=NEW, confirm=NEW, source="t", user_agent="ua"))
    assert "reuse" in err.value.details["new"]


def test_password_change_revokes_other_sessions_and_rotates_own(auth):
    admin = login(auth).principal
    _, first = make_user(auth, admin)
    other = login(auth, "bob", NEW)
    new = "a third long passphrase for him"
    rotated = run(auth.accounts.change_password(first.principal, current=NEW, new=new, confirm=new, source="t", user_agent="ua"))
    assert run(auth.sessions.resolve(other.token, "t")) is None, "other session revoked"
    assert run(auth.sessions.resolve(first.token, "t")) is None, "old id of the current session no longer works"
    assert run(auth.sessions.resolve(rotated.token, "t")).username == "bob"


def test_role_change_disable_and_last_admin(auth, clock):
    admin = login(auth).principal
    _, bob = make_user(auth, admin)
    with pytest.raises(LastAdminError):
        run(auth.accounts.update_user(admin, admin.user_id, UserUpdate(role="viewer"), source="t"))
    with pytest.raises(LastAdminError):
        run(auth.accounts.update_user(admin, admin.user_id, UserUpdate(disabled=True), source="t"))
    run(auth.accounts.update_user(admin, bob.principal.user_id, UserUpdate(role="operator"), source="t"))
    assert run(auth.sessions.resolve(bob.token, "t")) is None, "role change revokes sessions"
    bob2 = login(auth, "bob", NEW)
    run(auth.accounts.update_user(admin, bob2.principal.user_id, UserUpdate(disabled=True), source="t"))
    assert run(auth.sessions.resolve(bob2.token, "t")) is None
    with pytest.raises(LoginFailedError):
        login(auth, "bob", NEW)
    clock.advance(301)  # step-up window over: enabling grants access again, so it needs re-authentication
    with pytest.raises(ReauthRequiredError):
        run(auth.accounts.update_user(admin, bob2.principal.user_id, UserUpdate(disabled=False), source="t"))
    run(auth.stepup.reauthenticate(admin, secret=PASSWORD, source="t"))
    admin = run(auth.sessions.resolve(login(auth).token, "t"))
    run(auth.accounts.update_user(admin, bob2.principal.user_id, UserUpdate(disabled=False, role="admin"), source="t"))
    run(auth.accounts.update_user(admin, admin.user_id, UserUpdate(role="viewer"), source="t"))  # now allowed: bob is admin
    assert audit_count(auth, "user.role.change") == 3 and audit_count(auth, "user.disable") == 1


def test_non_admins_cannot_manage_or_read_others(auth):
    admin = login(auth).principal
    _, bob = make_user(auth, admin)
    _, carol = make_user(auth, admin, "carol", "operator")
    b = bob.principal
    with pytest.raises(PermissionDeniedError):
        run(auth.accounts.create_user(b, UserCreate(username="mallory", role="admin"), source="t"))
    with pytest.raises(PermissionDeniedError):
        run(auth.accounts.update_user(b, b.user_id, UserUpdate(role="admin"), source="t"))
    with pytest.raises(PermissionDeniedError):
        run(auth.accounts.list_users(b))
    with pytest.raises(NotFoundError):  # crafted id: another user's account and sessions look absent
        run(auth.accounts.get_user(b, carol.principal.user_id))
    with pytest.raises(NotFoundError):
        run(auth.sessions.list_sessions(b, admin.user_id))
    with pytest.raises(NotFoundError):
        run(auth.sessions.revoke_session(b, carol.principal.handle, source="t"))
    assert run(auth.sessions.resolve(carol.token, "t")) is not None
    assert run(auth.accounts.get_user(b, b.user_id)).username == "bob"
    assert [s.current for s in run(auth.sessions.list_sessions(b))] == [True]


def test_sessions_listed_and_revoked_by_handle(auth):
    admin = login(auth).principal
    other = login(auth)
    mine = run(auth.sessions.list_sessions(admin))
    assert len(mine) == 2 and sum(s.current for s in mine) == 1 and all(len(s.handle) > 16 for s in mine)
    run(auth.sessions.revoke_session(admin, other.principal.handle, source="t"))
    assert run(auth.sessions.resolve(other.token, "t")) is None
    third = login(auth)
    assert run(auth.sessions.revoke_other_sessions(admin, source="t")) == 1
    assert run(auth.sessions.resolve(third.token, "t")) is None and run(auth.sessions.list_sessions(admin))[0].current


def test_idle_timeout_follows_the_policy_and_policy_changes_are_audited(auth, clock):
    s = login(auth)
    admin = s.principal
    values = msgspec.structs.asdict(auth.policy.current) | {"session_idle_minutes": 5, "totp_policy": "optional"}
    run(auth.policy.update(admin, values, source="t"))
    clock.advance(4 * 60)
    assert run(auth.sessions.resolve(s.token, "t")) is not None
    clock.advance(5 * 60)
    assert run(auth.sessions.resolve(s.token, "t")) is None
    details = auth.context.db.read_sync(lambda c: c.execute(
        "SELECT details FROM audit_log WHERE action = 'policy.security.update'").fetchone()[0])
    assert msgspec.json.decode(details)["changes"]["session_idle_minutes"] == [15, 5]
    with pytest.raises(ValidationError) as err:
        run(auth.policy.update(login(auth).principal, values | {"session_idle_minutes": 61, "password_min_length": 7,
                                                                 "totp_policy": "sometimes"}, source="t"))
    assert set(err.value.details) == {"session_idle_minutes", "password_min_length", "totp_policy"}


def test_step_up_window(auth, clock):
    admin = login(auth).principal
    auth.stepup.require_recent_auth(admin)
    clock.advance(301)
    admin = run(auth.sessions.resolve(login(auth).token, "t"))
    clock.advance(301)
    with pytest.raises(ReauthRequiredError):
        run(auth.accounts.create_user(admin, UserCreate(username="dave", role="admin"), source="t"))
    with pytest.raises(ValidationError):
        run(auth.stepup.reauthenticate(admin, secret="wrong password", source="t"))
    run(auth.stepup.reauthenticate(admin, secret=PASSWORD, source="t"))
    admin = run(auth.resolve_for_test(admin)) if hasattr(auth, "resolve_for_test") else admin
    fresh = auth.context.db.read_sync(lambda c: c.execute("SELECT recent_auth FROM sessions WHERE id_hash = ?",
                                                  (admin.session_hash,)).fetchone()[0])
    assert fresh == clock.now()
    assert audit_count(auth, "auth.reauth") == 1 and audit_count(auth, "auth.reauth", "failure") == 1


def _enrol(auth, session, clock):
    """Enrol TOTP with an oathtool code; return (seed, recovery codes, rotated session)."""
    p = session.principal
    started = run(auth.totp.begin_enrolment(p, source="t"))
    with pytest.raises(totp.InvalidTOTPError):
        run(auth.totp.confirm_enrolment(p, code="000000" if oathtool(started.seed, clock.now()) != "000000" else "111111",
                                        source="t", user_agent="ua"))
    done = run(auth.totp.confirm_enrolment(p, code=oathtool(started.seed, clock.now()), source="t", user_agent="ua"))
    return started.seed, done.recovery_codes, done.session


def test_totp_policy_enrolment_and_two_step_login(auth, clock):
    s = login(auth)
    assert s.principal.needs_totp_enrolment and s.principal.pending_step == "totp", "admins need 2FA by default"
    seed, codes, rotated = _enrol(auth, s, clock)
    assert run(auth.sessions.resolve(s.token, "t")) is None and not run(auth.sessions.resolve(rotated.token, "t")).needs_totp_enrolment
    stored = auth.context.db.read_sync(lambda c: c.execute("SELECT totp_seed FROM users WHERE username = 'admin'").fetchone()[0])
    assert seed.encode() not in bytes(stored), "seed sealed at rest"
    assert audit_count(auth, "mfa.totp.enable") == 1 and audit_count(auth, "mfa.totp.enable", "failure") == 1
    assert seed not in all_audit_details(auth)

    pending = login(auth, pre="browser-1")
    assert isinstance(pending, SecondFactorRequired)
    with pytest.raises(totp.ReplayedTOTPError):  # the enrolment code is spent
        run(auth.sessions.login_second_factor(pre_session="browser-1", code=oathtool(seed, clock.now()), source="t", user_agent="ua"))
    clock.advance(30)
    code = oathtool(seed, clock.now())
    with pytest.raises(LoginFailedError):  # another browser cannot finish this sign-in
        run(auth.sessions.login_second_factor(pre_session="browser-2", code=code, source="t", user_agent="ua"))
    done = run(auth.sessions.login_second_factor(pre_session="browser-1", code=code, source="t", user_agent="ua"))
    assert run(auth.sessions.resolve(done.token, "t")).totp_enabled
    login(auth, pre="browser-3")
    with pytest.raises(totp.ReplayedTOTPError):  # same code, fresh sign-in, still inside the window
        run(auth.sessions.login_second_factor(pre_session="browser-3", code=code, source="t", user_agent="ua"))
    with pytest.raises(totp.InvalidTOTPError):  # a code from 2 steps ago
        run(auth.sessions.login_second_factor(pre_session="browser-3", code=oathtool(seed, clock.now() - 60), source="t",
                                     user_agent="ua"))
    with pytest.raises(InvalidRecoveryCodeError):
        run(auth.sessions.login_second_factor(pre_session="browser-3", code="abcd-efgh-jkmn-pqrs", source="t", user_agent="ua"))
    ok = run(auth.sessions.login_second_factor(pre_session="browser-3", code=codes[0].upper(), source="t", user_agent="ua"))
    assert ok.principal.username == "admin" and audit_count(auth, "mfa.recovery.use") == 1
    login(auth, pre="browser-4")
    with pytest.raises(InvalidRecoveryCodeError):  # recovery codes are single use
        run(auth.sessions.login_second_factor(pre_session="browser-4", code=codes[0], source="t", user_agent="ua"))
    clock.advance(PENDING := 301)
    with pytest.raises(LoginFailedError):  # the half-done sign-in expired
        run(auth.sessions.login_second_factor(pre_session="browser-4", code=codes[1], source="t", user_agent="ua"))
    assert PENDING > 300


def test_pending_login_allows_few_attempts_and_counts_toward_lockout(auth, clock):
    s = login(auth)
    seed, _, _ = _enrol(auth, s, clock)
    login(auth, pre="b")
    for bad in ["12345x", "000000", "", "x" * 5000, "999999"]:
        with pytest.raises(totp.TOTPError):
            run(auth.sessions.login_second_factor(pre_session="b", code=bad, source="t", user_agent="ua"))
    clock.advance(30)
    with pytest.raises(LoginFailedError):
        run(auth.sessions.login_second_factor(pre_session="b", code=oathtool(seed, clock.now()), source="t", user_agent="ua"))
    failures = auth.context.db.read_sync(lambda c: c.execute("SELECT failed_logins FROM users WHERE username='admin'").fetchone()[0])
    assert failures == 5


def test_2fa_changes_need_step_up_and_admin_reset(auth, clock):
    s = login(auth)
    _enrol(auth, s, clock)
    msgspec_policy = msgspec.structs.asdict(auth.policy.current) | {"totp_policy": "optional"}
    clock.advance(30)
    admin = login(auth, pre="x")
    done = run(auth.sessions.login_second_factor(pre_session="x", code=oathtool(_seed(auth), clock.now()), source="t", user_agent="ua"))
    p = done.principal
    run(auth.policy.update(p, msgspec_policy, source="t"))
    clock.advance(301)
    p = run(auth.sessions.resolve(done.token, "t"))
    with pytest.raises(ReauthRequiredError):
        run(auth.totp.disable(p, source="t", user_agent="ua"))
    with pytest.raises(ReauthRequiredError):
        run(auth.totp.begin_enrolment(p, source="t"))
    with pytest.raises(ReauthRequiredError):
        run(auth.totp.regenerate_recovery_codes(p, source="t"))
    clock.advance(30)
    run(auth.stepup.reauthenticate(p, secret=oathtool(_seed(auth), clock.now()), source="t"))  # a TOTP code works too
    p = run(auth.sessions.resolve(done.token, "t"))
    assert len(run(auth.totp.regenerate_recovery_codes(p, source="t"))) == 10
    rotated = run(auth.totp.disable(p, source="t", user_agent="ua"))
    assert not run(auth.sessions.resolve(rotated.token, "t")).totp_enabled
    # an admin resets another user's 2FA
    _, bob = make_user(auth, rotated.principal)
    _enrol(auth, bob, clock)
    bob_id = bob.principal.user_id
    run(auth.accounts.reset_totp(rotated.principal, bob_id, source="t"))
    assert not run(auth.accounts.get_user(rotated.principal, bob_id)).totp_enabled
    assert audit_count(auth, "mfa.totp.reset") == 1 and audit_count(auth, "mfa.totp.disable") == 1
    assert isinstance(admin, SecondFactorRequired)


def _seed(auth) -> str:
    from appliance.crypto import vault

    uid, blob = auth.context.db.read_sync(lambda c: c.execute("SELECT id, totp_seed FROM users WHERE username='admin'").fetchone())
    return vault.open(auth.context.vault_key, blob, vault.aad("users.totp_seed", uid)).decode()


def test_sealed_seed_copied_to_another_row_does_not_open(auth, clock):
    s = login(auth)
    _enrol(auth, s, clock)
    from appliance.crypto import vault

    blob = auth.context.db.read_sync(lambda c: c.execute("SELECT totp_seed FROM users WHERE username='admin'").fetchone()[0])
    with pytest.raises(vault.VaultError):
        vault.open(auth.context.vault_key, blob, vault.aad("users.totp_seed", 999))


def test_admin_unlock_and_reset_password(auth, clock):
    admin = login(auth).principal
    _, bob = make_user(auth, admin)
    for i in range(10):  # from 10 addresses: one address alone is throttled before the lockout
        with pytest.raises(LoginFailedError):
            login(auth, "bob", "wrong password entirely", source=f"10.0.0.{i}")
    with pytest.raises(LoginFailedError):
        login(auth, "bob", NEW)  # locked
    run(auth.accounts.unlock_user(admin, bob.principal.user_id, source="t"))
    assert login(auth, "bob", NEW).principal.username == "bob"
    temp = run(auth.accounts.reset_password(admin, bob.principal.user_id, source="t"))
    assert login(auth, "bob", temp.password).principal.must_change_password
    assert audit_count(auth, "user.unlock") == 1 and audit_count(auth, "user.password.reset") == 1


def test_reset_admin_from_the_cli_recovers_a_lost_admin(auth, clock):
    s = login(auth)
    _enrol(auth, s, clock)
    name, password = auth.accounts.reset_admin_sync(Actor(type="system", name="cli:tester", source="local"))
    assert name == "admin"
    first = login(auth, "admin", password)
    assert first.principal.must_change_password and not first.principal.totp_enabled
    assert audit_count(auth, "user.admin.recover") == 1
    actor = auth.context.db.read_sync(lambda c: c.execute(
        "SELECT actor_type, actor FROM audit_log WHERE action = 'user.admin.recover'").fetchone())
    assert tuple(actor) == ("system", "cli:tester")
    name, _ = auth.accounts.reset_admin_sync(Actor(type="system", name="cli:tester", source="local"), "rescue")
    assert name == "rescue" and run(auth.accounts.list_users(first.principal))[-1].role == "admin"


def test_disabled_policy_refusal_when_2fa_is_required(auth, clock):
    s = login(auth)
    _, _, rotated = _enrol(auth, s, clock)
    with pytest.raises(ConflictError):
        run(auth.totp.disable(rotated.principal, source="t", user_agent="ua"))


def test_per_address_limit_on_totp_step(tmp_path, clock):
    from appliance.errors import RateLimitedError

    db, _ = open_database(tmp_path, readers=1)
    hasher = fast_hasher(concurrency=1)
    try:
        service = build_auth(db, AuthConfig(**FAST_AUTH, login_attempts_per_minute=3), clock, hasher)
        for _ in range(3):
            with pytest.raises(LoginFailedError):  # no pending sign-in for this browser
                run(service.sessions.login_second_factor(pre_session="p", code="123456", source="10.9.9.9", user_agent=""))
        with pytest.raises(RateLimitedError):
            run(service.sessions.login_second_factor(pre_session="p", code="123456", source="10.9.9.9", user_agent=""))
        with pytest.raises(LoginFailedError):  # another address is unaffected
            run(service.sessions.login_second_factor(pre_session="p", code="123456", source="10.9.9.8", user_agent=""))
        throttled = db.read_sync(lambda c: c.execute(
            "SELECT count(*) FROM audit_log WHERE action = 'auth.throttle' AND details LIKE '%login_totp%'").fetchone()[0])
        assert throttled == 1
    finally:
        hasher.close()
        db.close()
