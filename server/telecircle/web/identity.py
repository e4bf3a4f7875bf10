"""Who is asking: cookies to an :class:`Identity`, the client's address, and the guard
that checks every route's permission and every state-changing request's CSRF token.

Cookies (all HttpOnly and SameSite=Lax; Secure when ``secure_cookies`` is set or the
public URL is https):
``tc_session`` holds a clinician's sign-in secret, ``tc_pass`` a patient's redeemed
invite, ``tc_anon`` a random value that binds the CSRF token of the sign-in and
set-password forms to this browser. Lax (not Strict) so a patient who follows the link
from their e-mail arrives with the cookie; CSRF tokens guard every unsafe request.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web
from aiohttp.typedefs import Handler

from telecircle.domain.access import Action, Role, allowed
from telecircle.services.accounts import AuthContext
from telecircle.services.entry import PASS_COOKIE, SESSION_COOKIE
from telecircle.storage.accounts_store import UserRecord
from telecircle.storage.invites_store import PassRecord
from telecircle.web.keys import ACCOUNTS, CSRF_KEY, INVITES, SETTINGS

ANON_COOKIE = "tc_anon"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
ACTION_ATTRIBUTE = "telecircle_action"
# Longest cookie value looked at; anything longer is ignored rather than hashed.
MAX_COOKIE_CHARS = 256
__all__ = ["ANON_COOKIE", "PASS_COOKIE", "SESSION_COOKIE", "Identity", "guard", "requires"]

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

H = TypeVar("H", bound=Callable[..., Awaitable[web.StreamResponse]])


@dataclass(frozen=True, slots=True)
class Identity:
    role: Role
    csrf_token: str
    login: AuthContext | None = None
    patient_pass: PassRecord | None = None
    # Set when this request must issue the anonymous CSRF cookie.
    new_anon_cookie: str | None = None

    @property
    def user(self) -> UserRecord | None:
        return None if self.login is None else self.login.user

    @property
    def actor(self) -> str | None:
        """The id written to the audit log for this identity."""
        if self.login is not None:
            return self.login.user.id
        if self.patient_pass is not None:
            return "pass:" + self.patient_pass.id[:16]
        return None


IDENTITY = web.RequestKey("identity", Identity)


def requires(action: Action) -> Callable[[H], H]:
    """Mark a handler with the action it performs; the guard checks it on every call.
    A route without a mark is refused (secure by default)."""

    def mark(handler: H) -> H:
        setattr(handler, ACTION_ATTRIBUTE, action)
        return handler

    return mark


def identity_of(request: web.Request) -> Identity:
    identity: Identity = request[IDENTITY]
    return identity


def current_user(request: web.Request) -> UserRecord:
    """The signed-in account. Handlers whose action only accounts may perform call it;
    the guard has let only accounts through, so None is a bug and refused loudly."""
    user = identity_of(request).user
    if user is None:
        raise web.HTTPForbidden(text="Sign in first.")
    return user


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address in ``text`` (IPv4-mapped IPv6 unwrapped), or None if it is none."""
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def client_address(request: web.Request) -> str:
    """The client's address: the TCP peer, or — when the peer is a configured trusted
    proxy (``TRUSTED_PROXIES``: addresses or networks) — the nearest address in
    ``X-Forwarded-For`` (every such header, in order) that is not a trusted proxy.
    Addresses are compared as addresses, not strings (an IPv4-mapped IPv6 peer is its
    IPv4 address). A malformed hop ends the walk at the last trusted address: what lies
    before it could have been written by anyone."""
    peer = _ip(request.remote or "")
    if peer is None:
        return request.remote or "unknown"
    networks = request.app[SETTINGS].proxy_networks()

    def trusted(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return any(address in network for network in networks)

    if not trusted(peer):
        return str(peer)
    hops = [
        hop
        for header in request.headers.getall("X-Forwarded-For", [])
        for hop in header.split(",")
        if hop.strip()
    ]
    nearest = peer
    for hop in reversed(hops):
        address = _ip(hop)
        if address is None:
            return str(nearest)
        if not trusted(address):
            return str(address)
        nearest = address
    return str(nearest)


def _cookie(request: web.Request, name: str) -> str | None:
    value = request.cookies.get(name)
    if not value or len(value) > MAX_COOKIE_CHARS:
        return None
    return value


def _derived_csrf(request: web.Request, kind: str, value: str) -> str:
    key = request.app[CSRF_KEY]
    return hmac.new(key, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()


async def identify(request: web.Request) -> Identity:
    """Who sent ``request``, from its cookies. A clinician's sign-in wins over a pass."""
    session_secret = _cookie(request, SESSION_COOKIE)
    if session_secret is not None:
        login = await request.app[ACCOUNTS].authenticate(session_secret)
        if login is not None:
            role = Role.ANONYMOUS if login.second_factor_pending else Role(login.user.role)
            return Identity(role=role, csrf_token=login.csrf_token, login=login)
    pass_secret = _cookie(request, PASS_COOKIE)
    if pass_secret is not None:
        patient_pass = await request.app[INVITES].authenticate_pass(pass_secret)
        if patient_pass is not None:
            csrf = _derived_csrf(request, "pass", patient_pass.id)
            return Identity(role=Role.PATIENT, csrf_token=csrf, patient_pass=patient_pass)
    anon = _cookie(request, ANON_COOKIE)
    fresh = None
    if anon is None:
        anon = fresh = secrets.token_urlsafe(24)
    return Identity(
        role=Role.ANONYMOUS, csrf_token=_derived_csrf(request, "anon", anon), new_anon_cookie=fresh
    )


def set_cookie(request: web.Request, response: web.StreamResponse, name: str, value: str) -> None:
    response.set_cookie(
        name,
        value,
        httponly=True,
        samesite="Lax",
        secure=request.app[SETTINGS].cookies_secure,
        path="/",
    )


def clear_cookie(request: web.Request, response: web.StreamResponse, name: str) -> None:
    response.del_cookie(name, path="/", secure=request.app[SETTINGS].cookies_secure, samesite="Lax")


async def _csrf_ok(request: web.Request, identity: Identity) -> bool:
    # A browser says where a request came from; a cross-site unsafe request is refused
    # whatever it carries.
    if request.headers.get("Sec-Fetch-Site") == "cross-site":
        return False
    supplied = request.headers.get(CSRF_HEADER)
    if supplied is None and request.content_type in (
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ):
        form = await request.post()
        field = form.get(CSRF_FIELD)
        supplied = field if isinstance(field, str) else None
    return supplied is not None and hmac.compare_digest(
        supplied.encode(), identity.csrf_token.encode()
    )


def _remember_anon(request: web.Request, response: web.StreamResponse, identity: Identity) -> None:
    if identity.new_anon_cookie is not None and not response.prepared:
        set_cookie(request, response, ANON_COOKIE, identity.new_anon_cookie)


Denial = Callable[[web.Request, Identity, str, Action | None], Awaitable[web.StreamResponse]]


def guard(deny: Denial, exempt_prefixes: tuple[str, ...]) -> Any:
    """Middleware: identify the sender, check the route's action and the CSRF token.

    ``deny(request, identity, why, action)`` renders the refusal (``why``: "sign_in",
    "forbidden" or "csrf"; ``action``: what the route does). Paths under
    ``exempt_prefixes`` (socket.io, which checks its own connections; static files)
    pass through untouched.
    """

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(exempt_prefixes):
            return await handler(request)
        identity = await identify(request)
        request[IDENTITY] = identity
        try:
            response = await _checked(request, handler, identity)
        except web.HTTPException as exc:
            _remember_anon(request, exc, identity)
            raise
        _remember_anon(request, response, identity)
        return response

    async def _checked(
        request: web.Request, handler: Handler, identity: Identity
    ) -> web.StreamResponse:
        action = getattr(request.match_info.handler, ACTION_ATTRIBUTE, None)
        if isinstance(request.match_info.http_exception, web.HTTPException):
            return await handler(request)  # 404 / 405: nothing to protect
        if action is None or not allowed(identity.role, action):
            why = "sign_in" if identity.role is Role.ANONYMOUS else "forbidden"
            return await deny(request, identity, why, action)
        if request.method in UNSAFE_METHODS and not await _csrf_ok(request, identity):
            return await deny(request, identity, "csrf", action)
        return await handler(request)

    return middleware
