"""A cookie-keeping HTTP client that fills in forms the way a browser does."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]*)"')
NEW_LINK = re.compile(r'id="new-link" readonly value="([^"]+)"')


@dataclass
class Page:
    status: int
    url: str
    text: str
    headers: Any

    @property
    def csrf(self) -> str:
        match = CSRF_INPUT.search(self.text)
        assert match, f"no form on {self.url}"
        return match.group(1)

    @property
    def new_link(self) -> str:
        match = NEW_LINK.search(self.text)
        assert match, f"no one-time link on {self.url}"
        return match.group(1)


class SiteClient:
    """One browser: its own cookies; follows redirects unless told not to."""

    def __init__(self, base_url: str, cookie: str | None = None) -> None:
        self.base_url = base_url
        # unsafe: accept cookies from an IP-address host (the loopback test server).
        self.session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.headers: dict[str, str] = {}
        if cookie is not None:
            name, _, value = cookie.partition("=")
            self.session.cookie_jar.update_cookies({name: value}, URL(base_url))

    async def get(self, path: str, *, follow: bool = True) -> Page:
        async with self.session.get(
            self.base_url + path, allow_redirects=follow, headers=self.headers
        ) as response:
            return Page(response.status, str(response.url), await response.text(), response.headers)

    async def post(
        self, path: str, fields: dict[str, str], *, csrf: str | None, follow: bool = True
    ) -> Page:
        data = dict(fields)
        if csrf is not None:
            data["csrf_token"] = csrf
        async with self.session.post(
            self.base_url + path, data=data, allow_redirects=follow, headers=self.headers
        ) as response:
            return Page(response.status, str(response.url), await response.text(), response.headers)

    async def submit(
        self, form_page: str, fields: dict[str, str], action: str | None = None
    ) -> Page:
        """GET ``form_page``, then post ``fields`` with its CSRF token (to ``action``)."""
        page = await self.get(form_page)
        return await self.post(action or form_page, fields, csrf=page.csrf)

    def cookie(self, name: str) -> str | None:
        for cookie in self.session.cookie_jar:
            if cookie.key == name:
                return cookie.value
        return None

    async def close(self) -> None:
        await self.session.close()
