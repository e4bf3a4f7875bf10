"""Rendering pages and reading forms: one place for the page frame, friendly refusals,
redirects and size-limited form fields."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote, urlsplit

from aiohttp import web

from telecircle.errors import TelecircleError
from telecircle.web.identity import CSRF_FIELD, IDENTITY, Identity
from telecircle.web.keys import SETTINGS, TEMPLATES

# A same-site path with an optional query: no spaces, controls, backslashes or colons.
SAFE_PATH = re.compile(r"/[A-Za-z0-9._~!$&'()*+,;=@%/?-]*")
# Optional values of the page frame (templates are strict about undefined names).
PAGE_DEFAULTS: dict[str, Any] = {"error": None, "notice": None, "link": None, "link_text": ""}
# Longest single form field accepted (the agreement text is the largest).
MAX_FIELD_CHARS = 20_000


def asset_version(request: web.Request) -> str:
    bundle = request.app[SETTINGS].webclient_dist / "app.js"
    try:
        return str(int(bundle.stat().st_mtime))
    except OSError:
        return "0"


def render(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    """Render ``template`` in the page frame; the identity and CSRF token come along."""
    identity: Identity | None = request.get(IDENTITY)
    values = {**PAGE_DEFAULTS, **context}
    html = (
        request.app[TEMPLATES]
        .get_template(template)
        .render(
            identity=identity,
            user=None if identity is None else identity.user,
            csrf_field=CSRF_FIELD,
            csrf_token="" if identity is None else identity.csrf_token,
            asset_version=asset_version(request),
            **values,
        )
    )
    return web.Response(
        text=html, content_type="text/html", status=status, headers={"Cache-Control": "no-store"}
    )


def message(
    request: web.Request, heading: str, body: str, status: int = 200, **extra: Any
) -> web.Response:
    return render(
        request, "message.html", status=status, title=heading, heading=heading, body=body, **extra
    )


def refusal(request: web.Request, error: TelecircleError) -> web.Response:
    """A friendly page for an expected refusal: its safe message and HTTP status."""
    return message(request, "Sorry", error.message, status=error.http_status)


def see_other(location: str) -> web.Response:
    """Redirect after a form (303): a reload does not send the form again."""
    return web.Response(status=303, headers={"Location": location})


def sign_in_redirect(request: web.Request) -> web.Response:
    target = request.path_qs if request.method == "GET" else "/"
    return see_other("/login?next=" + quote(target, safe=""))


async def form_fields(request: web.Request, *names: str) -> dict[str, str]:
    """The named text fields of a posted form ('' when absent). Oversized fields are
    refused with a 413 page rather than cut short."""
    form = await request.post()
    fields: dict[str, str] = {}
    for name in names:
        value = form.get(name, "")
        text = value if isinstance(value, str) else ""
        if len(text) > MAX_FIELD_CHARS:
            raise web.HTTPRequestEntityTooLarge(
                max_size=MAX_FIELD_CHARS, actual_size=len(text), text="A field is too long."
            )
        fields[name] = text
    return fields


def safe_next(target: str) -> str:
    """A path on this site to continue to after signing in; anything else is "/".

    Only plain path characters are accepted: browsers drop tabs and newlines from
    ``Location`` and read backslashes as slashes, so ``/\t/evil.example`` would
    otherwise leave the site."""
    if (
        len(target) <= 512
        and SAFE_PATH.fullmatch(target)
        and not target.startswith("//")
        and not urlsplit(target).netloc
    ):
        return target
    return "/"
