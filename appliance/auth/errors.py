"""Auth failure modes. Messages are safe to show; none names a secret or says which
of username/password was wrong."""

from __future__ import annotations

from appliance.errors import OutpostError

LOGIN_FAILED = "Sign-in failed: wrong username or password, or the account is temporarily locked."


class AuthError(OutpostError):
    code = "auth_error"


class LoginFailedError(AuthError):
    """Uniform for unknown user, wrong password, locked or disabled account."""

    code = "login_failed"
    status = 401

    def __init__(self) -> None:
        super().__init__(LOGIN_FAILED)


class SetupError(AuthError):
    """Setup refused; the message says why in plain words, details name the field.

    `reason` (audited as setup.failure) is one of: done, no_code, used, wrong_code, expired."""

    code = "setup_refused"
    status = 400

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message, details={"code": message} if reason != "done" else {})
        self.reason = reason


class ReauthRequiredError(AuthError):
    """A sensitive action needs the password (or a TOTP code) entered within the last 5 minutes (AUTH-8)."""

    code = "reauth_required"
    status = 403

    def __init__(self) -> None:
        super().__init__("Confirm it is you: enter your password again to continue (required for sensitive changes).")


class LastAdminError(AuthError):
    """The change would leave no active admin (only `outpost reset-admin` could recover)."""

    code = "last_admin"
    status = 409

    def __init__(self) -> None:
        super().__init__("This is the last active administrator; make another user an admin first.")


class SessionEndedError(AuthError):
    """The session was revoked or expired while a request was changing it (e.g. a rotation)."""

    code = "session_ended"
    status = 401

    def __init__(self) -> None:
        super().__init__("Your session has ended; sign in again.")
