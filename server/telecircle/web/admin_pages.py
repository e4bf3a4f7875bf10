"""The administrator's pages: clinician accounts, organisation settings, the audit log."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from telecircle.domain.access import ACCOUNT_ROLES, Action, Role
from telecircle.domain.ids import RoomId
from telecircle.errors import TelecircleError
from telecircle.services.audit import AuditAction
from telecircle.services.organisation import InvalidInput
from telecircle.storage.org_store import OrgSettings
from telecircle.web.identity import client_address, current_user, requires
from telecircle.web.keys import ACCOUNTS, AUDIT, ORGANISATION, SETTINGS
from telecircle.web.render import form_fields, refusal, render, see_other

AUDIT_PAGE_SIZE = 50
MAX_AUDIT_PAGE = 100_000


def link_url(request: web.Request, path: str) -> str:
    return request.app[SETTINGS].effective_public_url + path


async def _accounts_page(request: web.Request, status: int = 200, **extra: object) -> web.Response:
    users = await request.app[ACCOUNTS].list_users()
    return render(
        request,
        "admin_accounts.html",
        status=status,
        title="Accounts",
        users=users,
        roles=[role.value for role in ACCOUNT_ROLES],
        **({"new_link": None} | extra),
    )


@requires(Action.MANAGE_ACCOUNTS)
async def accounts(request: web.Request) -> web.Response:
    return await _accounts_page(request)


@requires(Action.MANAGE_ACCOUNTS)
async def create_account(request: web.Request) -> web.Response:
    admin = current_user(request)
    fields = await form_fields(request, "username", "display_name", "role")
    try:
        role = Role(fields["role"])
        if role not in ACCOUNT_ROLES:
            raise ValueError(role)
    except ValueError:
        return await _accounts_page(request, 422, error="Choose one of the listed roles.")
    try:
        user, token = await request.app[ACCOUNTS].create_account(
            admin.id, fields["username"], fields["display_name"], role, client_address(request)
        )
    except TelecircleError as exc:
        return await _accounts_page(request, exc.http_status, error=exc.message)
    return await _accounts_page(
        request,
        notice=f"Account {user.username} created. Send them this one-time link to choose a "
        "password; it is shown only now.",
        new_link=link_url(request, f"/password/{token}"),
    )


@requires(Action.MANAGE_ACCOUNTS)
async def account_action(request: web.Request) -> web.Response:
    admin = current_user(request)
    user_id = request.match_info["user_id"][:64]
    what = request.match_info["what"]
    service = request.app[ACCOUNTS]
    address = client_address(request)
    try:
        if what == "disable":
            await service.disable(admin.id, user_id, address)
            return await _accounts_page(request, notice="Account disabled; its sign-ins ended.")
        if what == "enable":
            await service.enable(admin.id, user_id, address)
            return await _accounts_page(request, notice="Account enabled.")
        if what == "password-link":
            token = await service.create_password_link(admin.id, user_id, address)
            return await _accounts_page(
                request,
                notice="Send this one-time link to reset the password; it is shown only now.",
                new_link=link_url(request, f"/password/{token}"),
            )
    except TelecircleError as exc:
        return await _accounts_page(request, exc.http_status, error=exc.message)
    raise web.HTTPNotFound()


# ---- settings -------------------------------------------------------------------------


async def _settings_page(request: web.Request, status: int = 200, **extra: object) -> web.Response:
    organisation = request.app[ORGANISATION]
    return render(
        request,
        "admin_settings.html",
        status=status,
        title="Settings",
        org=await organisation.settings(),
        agreement=await organisation.agreement(),
        ceiling=request.app[SETTINGS].room_limit_ceiling,
        **extra,
    )


@requires(Action.MANAGE_SETTINGS)
async def settings_page(request: web.Request) -> web.Response:
    return await _settings_page(request)


def parse_int(raw: str, what: str) -> int:
    try:
        return int(raw.strip())
    except ValueError:
        raise InvalidInput(f"The {what} must be a whole number.") from None


@requires(Action.MANAGE_SETTINGS)
async def save_settings(request: web.Request) -> web.Response:
    admin = current_user(request)
    fields = await form_fields(
        request,
        "max_participants",
        "notes_retention_days",
        "require_totp",
        "recording_consent_required",
        "agreement",
    )
    organisation = request.app[ORGANISATION]
    address = client_address(request)
    try:
        new = OrgSettings(
            max_participants=parse_int(fields["max_participants"], "maximum per room"),
            require_totp=fields["require_totp"] == "on",
            recording_consent_required=fields["recording_consent_required"] == "on",
            notes_retention_days=parse_int(fields["notes_retention_days"], "retention"),
        )
        await organisation.update_settings(admin.id, new, address)
        await organisation.update_agreement(admin.id, fields["agreement"], address)
    except TelecircleError as exc:
        return await _settings_page(request, exc.http_status, error=exc.message)
    return see_other("/admin/settings?saved=1")


# ---- rooms -----------------------------------------------------------------------------


async def _rooms_page(request: web.Request, status: int = 200, **extra: object) -> web.Response:
    organisation = request.app[ORGANISATION]
    rooms = await organisation.all_rooms()
    return render(
        request,
        "admin_rooms.html",
        status=status,
        title="Rooms",
        rooms=[(room, await organisation.effective_limit(room)) for room in rooms],
        org=await organisation.settings(),
        **extra,
    )


@requires(Action.MANAGE_SETTINGS)
async def rooms_page(request: web.Request) -> web.Response:
    return await _rooms_page(request)


@requires(Action.MANAGE_SETTINGS)
async def set_room_limit(request: web.Request) -> web.Response:
    """An administrator sets a room's limit (within the organisation's maximum)."""
    admin = current_user(request)
    room_id = RoomId(request.match_info["room_id"][:64])
    fields = await form_fields(request, "limit")
    organisation = request.app[ORGANISATION]
    try:
        room = next((r for r in await organisation.all_rooms() if r.id == room_id), None)
        if room is None:
            raise InvalidInput("There is no such room.")
        await organisation.update_room(
            admin,
            room_id,
            name=room.name,
            limit=parse_int(fields["limit"], "limit"),
            recording_consent_required=room.recording_consent_required,
            notes_retention_days=room.notes_retention_days,
            address=client_address(request),
            patients_may_unmute=room.patients_may_unmute,
            notes_shared=room.notes_shared,
        )
    except TelecircleError as exc:
        return await _rooms_page(request, exc.http_status, error=exc.message)
    return await _rooms_page(request, notice="Room limit saved; it applies to the next admit.")


# ---- audit log ------------------------------------------------------------------------


@requires(Action.VIEW_AUDIT_LOG)
async def audit_log(request: web.Request) -> web.Response:
    query = request.query
    try:
        page = min(max(int(query.get("page", "1")), 1), MAX_AUDIT_PAGE)
    except ValueError:
        page = 1
    action = query.get("action") or None
    if action is not None and action not in {a.value for a in AuditAction}:
        return refusal(request, InvalidInput("No such kind of entry."))
    actor = (query.get("actor") or "").strip()[:128] or None
    result = await request.app[AUDIT].page(
        offset=(page - 1) * AUDIT_PAGE_SIZE, limit=AUDIT_PAGE_SIZE, action=action, actor=actor
    )
    pages = max(1, -(-result.total // AUDIT_PAGE_SIZE))
    return render(
        request,
        "admin_audit.html",
        title="Audit log",
        entries=[
            (e, datetime.fromtimestamp(e.at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC"))
            for e in result.entries
        ],
        total=result.total,
        page=page,
        pages=pages,
        action=action or "",
        actor=actor or "",
        actions=sorted(a.value for a in AuditAction),
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/admin", accounts)
    app.router.add_post("/admin/accounts", create_account)
    app.router.add_post("/admin/accounts/{user_id}/{what}", account_action)
    app.router.add_get("/admin/settings", settings_page)
    app.router.add_post("/admin/settings", save_settings)
    app.router.add_get("/admin/audit", audit_log)
    app.router.add_get("/admin/rooms", rooms_page)
    app.router.add_post("/admin/rooms/{room_id}", set_room_limit)
