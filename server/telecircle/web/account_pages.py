"""Accounts in the browser: first-run setup, signing in and out, the second factor,
setting a password from a one-time link, and one's own account page."""

from __future__ import annotations

from aiohttp import web

from telecircle.domain.access import Action, Role
from telecircle.errors import TelecircleError
from telecircle.services.entry import user_key
from telecircle.storage.accounts_store import LinkPurpose
from telecircle.web.identity import (
    SESSION_COOKIE,
    clear_cookie,
    client_address,
    current_user,
    identity_of,
    requires,
    set_cookie,
)
from telecircle.web.keys import ACCOUNTS, ORGANISATION, SETTINGS, SIGNALLING
from telecircle.web.render import form_fields, message, refusal, render, safe_next, see_other

LINK_GONE = (
    "This link has expired or was already used. Please ask your administrator for a new one."
)


def home_of(role: Role) -> str:
    if role is Role.ADMINISTRATOR:
        return "/admin"
    if role in (Role.THERAPIST, Role.CO_FACILITATOR):
        return "/clinic"
    if role is Role.PATIENT:
        return "/join"
    return "/login"


@requires(Action.VIEW_PUBLIC_PAGE)
async def index(request: web.Request) -> web.Response:
    identity = identity_of(request)
    if identity.role is not Role.ANONYMOUS:
        return see_other(home_of(identity.role))
    if await request.app[ACCOUNTS].needs_setup():
        return message(
            request,
            "Telecircle is not set up yet",
            "The administrator finishes the setup with the link printed by "
            "'telecircle serve' when it started.",
        )
    return message(
        request,
        "Telecircle",
        "To join a group, open the link your therapist sent you. Clinicians sign in below.",
        link="/login",
        link_text="Sign in",
    )


@requires(Action.VIEW_PUBLIC_PAGE)
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


# ---- first-run setup and password links -----------------------------------------------


LinkForm = tuple[str, str, LinkPurpose]  # template, title, the link's purpose
SETUP: LinkForm = ("setup.html", "Set up Telecircle", "setup")
PASSWORD_FORM: LinkForm = ("password.html", "Choose a password", "set_password")
PASSWORDS_DIFFER = "The two passwords differ."


def _link_form(
    request: web.Request, form: LinkForm, status: int = 200, **context: object
) -> web.Response:
    template, title, _ = form
    return render(request, template, status=status, title=title, **context)


def _link_refused(
    request: web.Request, form: LinkForm, exc: TelecircleError, **keep: object
) -> web.Response:
    """A used or expired link gets its own page; anything else re-shows the form with
    the problem (and what was typed, passwords excepted)."""
    if exc.http_status == 410:
        return message(request, "Link no longer valid", exc.message, status=410)
    return _link_form(request, form, exc.http_status, error=exc.message, **keep)


async def _link_usable(request: web.Request, form: LinkForm) -> bool:
    token = request.match_info["token"][:256]
    return await request.app[ACCOUNTS].check_link(token, form[2])


@requires(Action.USE_ACCOUNT_LINK)
async def setup_form(request: web.Request) -> web.Response:
    if not await _link_usable(request, SETUP):
        return message(request, "Link no longer valid", LINK_GONE, status=410)
    return _link_form(request, SETUP, username="", display_name="")


@requires(Action.USE_ACCOUNT_LINK)
async def setup_submit(request: web.Request) -> web.Response:
    fields = await form_fields(request, "username", "display_name", "password", "password_again")
    keep = {"username": fields["username"], "display_name": fields["display_name"]}
    if fields["password"] != fields["password_again"]:
        return _link_form(request, SETUP, 422, error=PASSWORDS_DIFFER, **keep)
    try:
        await request.app[ACCOUNTS].complete_setup(
            request.match_info["token"],
            fields["username"],
            fields["display_name"],
            fields["password"],
            client_address(request),
        )
    except TelecircleError as exc:
        return _link_refused(request, SETUP, exc, **keep)
    return message(
        request,
        "Telecircle is ready",
        "Your administrator account exists. Sign in to add clinicians.",
        link="/login",
        link_text="Sign in",
    )


@requires(Action.USE_ACCOUNT_LINK)
async def password_form(request: web.Request) -> web.Response:
    if not await _link_usable(request, PASSWORD_FORM):
        return message(request, "Link no longer valid", LINK_GONE, status=410)
    return _link_form(request, PASSWORD_FORM)


@requires(Action.USE_ACCOUNT_LINK)
async def password_submit(request: web.Request) -> web.Response:
    fields = await form_fields(request, "password", "password_again")
    if fields["password"] != fields["password_again"]:
        return _link_form(request, PASSWORD_FORM, 422, error=PASSWORDS_DIFFER)
    try:
        user = await request.app[ACCOUNTS].set_password_with_link(
            request.match_info["token"], fields["password"], client_address(request)
        )
    except TelecircleError as exc:
        return _link_refused(request, PASSWORD_FORM, exc)
    # A new password ends every sign-in, calls included.
    await request.app[SIGNALLING].end_connections(user_key(user.id), "signed_out")
    return message(
        request, "Password saved", "You can sign in now.", link="/login", link_text="Sign in"
    )


# ---- signing in and out ---------------------------------------------------------------


@requires(Action.SIGN_IN)
async def login_form(request: web.Request) -> web.Response:
    identity = identity_of(request)
    if identity.role is not Role.ANONYMOUS and identity.login is not None:
        return see_other(home_of(identity.role))
    return render(
        request,
        "login.html",
        title="Sign in",
        username="",
        next=safe_next(request.query.get("next", "/")),
    )


@requires(Action.SIGN_IN)
async def login_submit(request: web.Request) -> web.Response:
    fields = await form_fields(request, "username", "password", "next")
    org = await request.app[ORGANISATION].settings()
    try:
        outcome = await request.app[ACCOUNTS].login(
            fields["username"],
            fields["password"],
            client_address(request),
            require_second_factor=org.require_totp,
        )
    except TelecircleError as exc:
        return render(
            request,
            "login.html",
            status=exc.http_status,
            title="Sign in",
            error=exc.message,
            username=fields["username"][:64],
            next=safe_next(fields["next"]),
        )
    target = "/login/second-factor" if outcome.second_factor_pending else safe_next(fields["next"])
    if target == "/":
        target = home_of(Role(outcome.user.role))
    response = see_other(target)
    set_cookie(request, response, SESSION_COOKIE, outcome.session_token)
    return response


@requires(Action.SIGN_IN)
async def second_factor_form(request: web.Request) -> web.Response:
    login = identity_of(request).login
    if login is None:
        return see_other("/login")
    if not login.second_factor_pending:
        return see_other(home_of(Role(login.user.role)))
    if login.user.totp_enabled:
        return render(request, "second_factor.html", title="Second factor", enrol=None)
    secret, uri = await request.app[ACCOUNTS].begin_totp_enrolment(login.user.id)
    return render(
        request, "second_factor.html", title="Second factor", enrol={"secret": secret, "uri": uri}
    )


@requires(Action.SIGN_IN)
async def second_factor_submit(request: web.Request) -> web.Response:
    identity = identity_of(request)
    login = identity.login
    token = request.cookies.get(SESSION_COOKIE, "")
    if login is None:
        return see_other("/login")
    fields = await form_fields(request, "code", "secret")
    accounts = request.app[ACCOUNTS]
    address = client_address(request)
    try:
        if login.user.totp_enabled:
            await accounts.complete_second_factor(token, fields["code"], address)
        else:  # enrolling now: confirming the new key also completes this sign-in
            await accounts.confirm_totp(
                login.user.id, fields["secret"], fields["code"], address, session_token=token
            )
    except TelecircleError as exc:
        enrol = None
        if not login.user.totp_enabled:
            enrol = {"secret": fields["secret"][:64], "uri": ""}
        return render(
            request,
            "second_factor.html",
            status=exc.http_status,
            title="Second factor",
            error=exc.message,
            enrol=enrol,
        )
    return see_other(home_of(Role(login.user.role)))


@requires(Action.SIGN_OUT)
async def logout(request: web.Request) -> web.Response:
    user = current_user(request)
    secret = request.cookies.get(SESSION_COOKIE, "")
    await request.app[ACCOUNTS].logout(secret)
    # A call open in this browser ends with its sign-in.
    await request.app[SIGNALLING].end_connections(user_key(user.id), "signed_out", secret)
    return _signed_out(request)


def _signed_out(request: web.Request) -> web.Response:
    """To the sign-in page, with the sign-in cookie gone and this browser's storage
    for the site cleared: notes drafts kept for a reconnect must not outlive the
    sign-in (on a shared computer, the next person would find them)."""
    response = see_other("/login")
    clear_cookie(request, response, SESSION_COOKIE)
    response.headers["Clear-Site-Data"] = '"storage"'
    return response


# ---- one's own account ----------------------------------------------------------------


@requires(Action.VIEW_OWN_ACCOUNT)
async def account_page(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    return render(
        request,
        "account.html",
        title="My account",
        idle_minutes=int(settings.login_idle_timeout // 60),
        enrol=None,
    )


@requires(Action.MANAGE_OWN_SECOND_FACTOR)
async def totp_begin(request: web.Request) -> web.Response:
    user = current_user(request)
    secret, uri = await request.app[ACCOUNTS].begin_totp_enrolment(user.id)
    return render(
        request,
        "account.html",
        title="My account",
        idle_minutes=0,
        enrol={"secret": secret, "uri": uri},
    )


@requires(Action.MANAGE_OWN_SECOND_FACTOR)
async def totp_confirm(request: web.Request) -> web.Response:
    user = current_user(request)
    fields = await form_fields(request, "code", "secret")
    try:
        await request.app[ACCOUNTS].confirm_totp(
            user.id, fields["secret"], fields["code"], client_address(request)
        )
    except TelecircleError as exc:
        return refusal(request, exc)
    return message(
        request,
        "Second factor on",
        "From now on you sign in with your password and a code.",
        link="/account",
        link_text="Back to my account",
    )


@requires(Action.SIGN_OUT)
async def sign_out_everywhere(request: web.Request) -> web.Response:
    user = current_user(request)
    await request.app[ACCOUNTS].sign_out_everywhere(user.id, client_address(request))
    await request.app[SIGNALLING].end_connections(user_key(user.id), "signed_out")
    return _signed_out(request)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", index)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/setup/{token}", setup_form)
    app.router.add_post("/setup/{token}", setup_submit)
    app.router.add_get("/password/{token}", password_form)
    app.router.add_post("/password/{token}", password_submit)
    app.router.add_get("/login", login_form)
    app.router.add_post("/login", login_submit)
    app.router.add_get("/login/second-factor", second_factor_form)
    app.router.add_post("/login/second-factor", second_factor_submit)
    app.router.add_post("/logout", logout)
    app.router.add_get("/account", account_page)
    app.router.add_post("/account/totp", totp_begin)
    app.router.add_post("/account/totp/confirm", totp_confirm)
    app.router.add_post("/account/sign-out-everywhere", sign_out_everywhere)
