"""What every check needs to know about the deployment, gathered once: the settings,
the public URL and where its host is (this machine, a private network, the internet),
and how the public URL answered one request."""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp

from telecircle.config import Settings
from telecircle.diagnostics.results import reason

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
RESOLVE_TIMEOUT = 5.0
WEB_TIMEOUT = 5.0
DEFAULT_PORTS = {"http": 80, "https": 443}
# Names that never leave the machine (RFC 6761 reserves .localhost for it).
LOOPBACK_NAMES = ("localhost", "localhost.localdomain")


class Reach(enum.Enum):
    """Where a host is, as seen by a patient at home."""

    LOOPBACK = "this machine"
    PRIVATE = "a private network"
    PUBLIC = "the internet"
    UNRESOLVED = "a name that does not resolve here"


@dataclass(frozen=True, slots=True)
class PublicUrl:
    """The address patients open (TELECIRCLE_PUBLIC_URL, or http://HOST:PORT)."""

    text: str
    scheme: str
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class WebAnswer:
    """How the public URL answered one GET: ``status`` and ``date`` (its Date header),
    or ``error`` saying why there was no answer; ``sent_at`` and ``received_at`` are
    this machine's clock (seconds since the epoch) around the request."""

    status: int | None
    date: str | None
    error: str | None
    sent_at: float
    received_at: float


@dataclass(frozen=True, slots=True)
class Deployment:
    """Everything the checks look at."""

    settings: Settings
    url: PublicUrl
    reach: Reach
    web: WebAnswer

    @property
    def needs_public_media(self) -> bool:
        """True when patients may come from the internet (or where cannot be told), so
        the media plane needs a public address, an open port range and TURN."""
        return self.reach in (Reach.PUBLIC, Reach.UNRESOLVED)


def parse_public_url(text: str) -> PublicUrl:
    """The parts of ``text``; a missing port is the scheme's default."""
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    try:
        port = parts.port or DEFAULT_PORTS.get(scheme, 80)
    except ValueError:
        port = DEFAULT_PORTS.get(scheme, 80)
    return PublicUrl(text, scheme, host, port)


def reach_of(addresses: list[Address]) -> Reach:
    """PUBLIC if any address is globally routable, else LOOPBACK if all are loopback,
    else PRIVATE. An empty list is UNRESOLVED."""
    if not addresses:
        return Reach.UNRESOLVED
    if any(address.is_global for address in addresses):
        return Reach.PUBLIC
    if all(address.is_loopback for address in addresses):
        return Reach.LOOPBACK
    return Reach.PRIVATE


async def resolve(host: str) -> list[Address]:
    """The addresses of ``host`` (an IP address is its own). Raises OSError or
    TimeoutError when the name does not resolve within :data:`RESOLVE_TIMEOUT`."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    infos = await asyncio.wait_for(
        loop.getaddrinfo(host, None, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT
    )
    found: list[Address] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
        if address not in found:
            found.append(address)
    return found


async def reach_of_host(host: str) -> Reach:
    """Where ``host`` is (see :class:`Reach`)."""
    if host in LOOPBACK_NAMES or host.endswith(".localhost"):
        return Reach.LOOPBACK
    try:
        return reach_of(await resolve(host))
    except (OSError, TimeoutError):
        return Reach.UNRESOLVED


async def ask_public_url(url: PublicUrl) -> WebAnswer:
    """GET the public URL once (no redirects followed, no proxy from the environment).

    The certificate is not verified here: the certificate check does that and says
    what is wrong with it; this request only learns whether something answers and
    what its clock says.
    """
    sent_at = time.time()
    timeout = aiohttp.ClientTimeout(total=WEB_TIMEOUT)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout, trust_env=False) as session,
            session.get(url.text, allow_redirects=False, ssl=False) as response,
        ):
            return WebAnswer(
                response.status, response.headers.get("Date"), None, sent_at, time.time()
            )
    except TimeoutError:
        error = f"no answer within {WEB_TIMEOUT:.0f} s"
    except aiohttp.ClientConnectorError as exc:
        error = reason(exc.os_error)
    except (aiohttp.ClientError, OSError) as exc:
        error = reason(exc)
    return WebAnswer(None, None, error, sent_at, time.time())


async def inspect(settings: Settings) -> Deployment:
    """Gather what the checks need: parse the public URL, place its host, ask it once."""
    url = parse_public_url(settings.effective_public_url)
    reach = await reach_of_host(url.host)
    web = await ask_public_url(url)
    return Deployment(settings, url, reach, web)
