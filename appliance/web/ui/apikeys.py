"""API keys page (ACL-2): list your keys (admins: everyone's), create one (step-up,
shown once), revoke. Thin over ApiKeyService; the service enforces the rules."""

from __future__ import annotations

from litestar import Request, Response, get, post

from appliance.access.apikeys import KeyEscalationError
from appliance.auth.permissions import ROLES, allowed, covers
from appliance.errors import ConflictError, NotFoundError, ValidationError
from appliance.web.deps import actor, principal, services
from appliance.web.guards import permission
from appliance.web.ui.forms import on_page, page, redirect, text

MANAGE = permission("apikeys.manage")


def _grantable(role: str) -> list[str]:
    return [r for r in ROLES if covers(role, r)]


@get("/api-keys", guards=[MANAGE], name="apikeys")
async def keys_page(request: Request) -> Response:
    svc = services(request)
    who = principal(request)
    mine = await svc.apikeys.list_keys(who.user_id)
    everyone = await svc.apikeys.list_keys(None) if allowed(who.role, "apikeys.admin") else None
    others = [k for k in everyone if k.user_id != who.user_id] if everyone is not None else None
    notice = "The key was revoked; it stops working at once." if request.query_params.get("revoked") else ""
    return page(request, "apikeys/index.html", mine=mine, others=others, now=svc.clock.now(), notice=notice)


def _form(request: Request, *, values: dict, errors: dict, message: str = "", status: int = 200) -> Response:
    cfg = services(request).config.access
    return page(request, "apikeys/new.html", status=status, values=values, errors=errors, message=message,
                roles=_grantable(principal(request).role), max_days=cfg.api_key_max_days)


@get("/api-keys/new", guards=[MANAGE], name="apikeys_new")
async def new_page(request: Request) -> Response:
    svc = services(request)
    svc.auth.stepup.require_recent_auth(principal(request))  # step-up before the form, not after (AUTH-8)
    who = principal(request)
    return _form(request, values={"role": who.role, "expires_days": str(svc.config.access.api_key_default_days)},
                 errors={})


@post("/api-keys/new", guards=[MANAGE], name="apikeys_create", opt=on_page("/api-keys/new"))
async def create(request: Request) -> Response:
    svc = services(request)
    who = principal(request)
    form = await request.form()
    values: dict = {}
    try:
        values = {name: text(form, name) for name in ("name", "role", "expires_days")}
        svc.auth.stepup.require_recent_auth(who)
        days_text = values["expires_days"].strip()
        if not days_text.isdigit() or len(days_text) > 4:
            most = svc.config.access.api_key_max_days
            raise ValidationError("Please correct the highlighted fields.",
                                  details={"expires_days": f"Enter a whole number of days from 1 to {most}."})
        issued = await svc.apikeys.create(owner_id=who.user_id, name=values["name"], role=values["role"],
                                          days=int(days_text), actor=actor(request), caller_role=who.role)
    except (ValidationError, ConflictError) as exc:
        return _form(request, values=values, errors=exc.details, message=exc.message, status=400)
    except KeyEscalationError as exc:
        return _form(request, values=values, errors=exc.details, message=exc.message, status=403)
    except NotFoundError as exc:
        return _form(request, values=values, errors={}, message=exc.message, status=400)
    return page(request, "apikeys/created.html", status=201, issued=issued)


@post("/api-keys/{key_id:str}/revoke", guards=[MANAGE], name="apikeys_revoke", opt=on_page("/api-keys"))
async def revoke(request: Request, key_id: str) -> Response:
    who = principal(request)
    await services(request).apikeys.revoke(key_id[:64], by_user_id=who.user_id,
                                           revoke_any=allowed(who.role, "apikeys.admin"), actor=actor(request))
    return redirect("/api-keys?revoked=1")


ROUTES = [keys_page, new_page, create, revoke]
