"""Users administration pages (ACL-1, AUTH-4, AUTH-5, AUTH-7): admins only.

Every route needs `users.manage`; the service checks the same again (defence in
depth) and refuses changes that would leave no active admin. Temporary passwords
are shown once, in the response to the action that made them.
"""

from __future__ import annotations

from litestar import Request, Response, get, post

from appliance.auth.errors import LastAdminError
from appliance.auth.models import UserCreate, UserUpdate
from appliance.auth.permissions import ROLES
from appliance.errors import ValidationError
from appliance.web.deps import client, principal, services
from appliance.web.guards import permission
from appliance.web.ui.forms import on_page, page, redirect, text

MANAGE = permission("users.manage")


async def _list(request: Request, *, status: int = 200, errors: dict | None = None, values: dict | None = None,
                message: str = "", created=None) -> Response:
    users = await services(request).auth.accounts.list_users(principal(request))
    return page(request, "users/list.html", status=status, users=users, roles=ROLES, errors=errors or {},
                values=values or {}, message=message, created=created, now=services(request).clock.now())


@get("/users", guards=[MANAGE], name="users")
async def users_page(request: Request) -> Response:
    return await _list(request)


@post("/users", guards=[MANAGE], name="users_create", opt=on_page("/users"))
async def users_create(request: Request) -> Response:
    form = await request.form()
    values = {}
    try:
        values = {"username": text(form, "username").strip(), "role": text(form, "role")}
        created = await services(request).auth.accounts.create_user(principal(request), UserCreate(**values),
                                                           source=client(request))
    except ValidationError as exc:
        return await _list(request, status=400, errors=exc.details, values=values, message=exc.message)
    return await _list(request, created=created)


async def _detail(request: Request, user_id: int, *, status: int = 200, message: str = "", notice: str = "",
                  temporary=None) -> Response:
    auth = services(request).auth
    who = principal(request)
    user = await auth.accounts.get_user(who, user_id)
    sessions = await auth.sessions.list_sessions(who, user_id)
    return page(request, "users/detail.html", status=status, user=user, sessions=sessions, roles=ROLES,
                message=message, notice=notice, temporary=temporary, now=services(request).clock.now())


@get("/users/{user_id:int}", guards=[MANAGE], name="user_detail")
async def user_detail(request: Request, user_id: int) -> Response:
    return await _detail(request, user_id, notice=request.query_params.get("done", "")[:40])


async def _update(request: Request, user_id: int, change: UserUpdate, done: str) -> Response:
    try:
        await services(request).auth.accounts.update_user(principal(request), user_id, change, source=client(request))
    except (LastAdminError, ValidationError) as exc:
        return await _detail(request, user_id, status=exc.status, message=exc.message)
    return redirect(f"/users/{user_id}?done={done}")


@post("/users/{user_id:int}/role", guards=[MANAGE], name="user_role", opt=on_page("/users/{user_id}"))
async def user_role(request: Request, user_id: int) -> Response:
    form = await request.form()
    try:
        role = text(form, "role")
    except ValidationError as exc:
        return await _detail(request, user_id, status=400, message=exc.message)
    return await _update(request, user_id, UserUpdate(role=role), "role")


@post("/users/{user_id:int}/disable", guards=[MANAGE], name="user_disable", opt=on_page("/users/{user_id}"))
async def user_disable(request: Request, user_id: int) -> Response:
    return await _update(request, user_id, UserUpdate(disabled=True), "disabled")


@post("/users/{user_id:int}/enable", guards=[MANAGE], name="user_enable", opt=on_page("/users/{user_id}"))
async def user_enable(request: Request, user_id: int) -> Response:
    return await _update(request, user_id, UserUpdate(disabled=False), "enabled")


@post("/users/{user_id:int}/unlock", guards=[MANAGE], name="user_unlock", opt=on_page("/users/{user_id}"))
async def user_unlock(request: Request, user_id: int) -> Response:
    await services(request).auth.accounts.unlock_user(principal(request), user_id, source=client(request))
    return redirect(f"/users/{user_id}?done=unlocked")


@post("/users/{user_id:int}/reset-password", guards=[MANAGE], name="user_reset_password",
      opt=on_page("/users/{user_id}"))
async def user_reset_password(request: Request, user_id: int) -> Response:
    temporary = await services(request).auth.accounts.reset_password(principal(request), user_id,
                                                                      source=client(request))
    return await _detail(request, user_id, temporary=temporary)


@post("/users/{user_id:int}/reset-2fa", guards=[MANAGE], name="user_reset_2fa", opt=on_page("/users/{user_id}"))
async def user_reset_2fa(request: Request, user_id: int) -> Response:
    await services(request).auth.accounts.reset_totp(principal(request), user_id, source=client(request))
    return redirect(f"/users/{user_id}?done=2fa")


@post("/users/{user_id:int}/sessions/revoke-all", guards=[MANAGE], name="user_sessions_revoke",
      opt=on_page("/users/{user_id}"))
async def user_sessions_revoke(request: Request, user_id: int) -> Response:
    await services(request).auth.sessions.revoke_other_sessions(principal(request), user_id, source=client(request))
    return redirect(f"/users/{user_id}?done=sessions")


@post("/users/{user_id:int}/sessions/{handle:str}/revoke", guards=[MANAGE], name="user_session_revoke",
      opt=on_page("/users/{user_id}"))
async def user_session_revoke(request: Request, user_id: int, handle: str) -> Response:
    await services(request).auth.sessions.revoke_session(principal(request), handle, source=client(request))
    return redirect(f"/users/{user_id}?done=session")


ROUTES = [users_page, users_create, user_detail, user_role, user_disable, user_enable, user_unlock,
          user_reset_password, user_reset_2fa, user_sessions_revoke, user_session_revoke]
