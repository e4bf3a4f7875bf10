"""TURN: each configured server answers and accepts Telecircle's credentials.

The check does what a browser does with the credentials it is handed: it makes a
short-lived TURN REST credential (username ``"<expiry>:doctor"``) from
TELECIRCLE_TURN_SECRET, asks the server for a relay allocation over the URL's transport
with aioice's TURN client, and gives the allocation back at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from dataclasses import dataclass
from typing import Any

from aioice import stun
from aioice.turn import create_turn_endpoint

from telecircle.deployment_config import TURN_URL
from telecircle.diagnostics.deployment import Deployment
from telecircle.diagnostics.results import CheckResult, ok, problem, reason, warning
from telecircle.services.turn import turn_password, turn_username

ALLOCATE_TIMEOUT = 5.0
CREDENTIAL_TTL = 600
# Asked of the server so that an allocation left behind (a lost deletion) soon expires.
ALLOCATION_LIFETIME = 120
DEFAULT_PORTS = {"turn": 3478, "turns": 5349}
HOLDER = "doctor"


@dataclass(frozen=True, slots=True)
class TurnServer:
    """One TURN URL, taken apart: ``secure`` for turns:, ``transport`` udp or tcp."""

    url: str
    secure: bool
    host: str
    port: int
    transport: str


def parse_turn_url(url: str) -> TurnServer:
    """The parts of a URL that passed the settings' TURN_URL check (RFC 7065 defaults:
    port 3478, or 5349 for turns:; udp, or tcp for turns:)."""
    match = TURN_URL.fullmatch(url)
    if match is None:
        raise ValueError(f"{url!r} is not a TURN URL")
    scheme = url.split(":", 1)[0]
    secure = scheme == "turns"
    host = match.group(1).strip("[]")
    port = int(match.group(2)[1:]) if match.group(2) else DEFAULT_PORTS[scheme]
    transport = match.group(4) or ("tcp" if secure else "udp")
    return TurnServer(url, secure, host, port, transport)


def doctor_credentials(secret: str, now: float) -> tuple[str, str]:
    """A TURN REST username and password valid for :data:`CREDENTIAL_TTL` seconds."""
    username = turn_username(int(now) + CREDENTIAL_TTL, HOLDER)
    return username, turn_password(secret, username)


class _Receiver(asyncio.DatagramProtocol):
    """Stands in for the ICE layer over the relay; learns when the allocation is gone."""

    def __init__(self) -> None:
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


async def allocate(server: TurnServer, username: str, password: str) -> str:
    """Allocate a relay at ``server`` and delete it again; returns the relayed address.

    Raises stun.TransactionFailed (an error response), TimeoutError, OSError or
    ssl.SSLError.
    """
    context: ssl.SSLContext | None = ssl.create_default_context() if server.secure else None
    transport, receiver = await asyncio.wait_for(
        create_turn_endpoint(
            _Receiver,
            (server.host, server.port),
            username=username,
            password=password,
            lifetime=ALLOCATION_LIFETIME,
            ssl=context,
            transport=server.transport,
        ),
        ALLOCATE_TIMEOUT,
    )
    relayed: Any = transport.get_extra_info("sockname")
    transport.close()  # deletes the allocation, then closes the socket
    with contextlib.suppress(TimeoutError):
        # Bounded: if the deletion gets no answer, the allocation expires by itself.
        await asyncio.wait_for(receiver.closed, ALLOCATE_TIMEOUT)
    return f"{relayed[0]}:{relayed[1]}" if relayed else "unknown"


async def check_turn_server(deployment: Deployment, *, url: str) -> CheckResult:
    """The TURN server at ``url`` answers and grants an allocation with credentials
    made from TELECIRCLE_TURN_SECRET; a 401 means coturn has another secret."""
    name = f"TURN {url}"
    server = parse_turn_url(url)
    where = f"{server.host}:{server.port} over {server.transport.upper()}"
    if server.secure and server.transport == "udp":
        return warning(
            name,
            "not checked: TURN over DTLS cannot be tried from here; prefer "
            "turns:HOST:443?transport=tcp for networks that block UDP",
        )
    username, password = doctor_credentials(deployment.settings.turn_secret, time.time())
    try:
        relayed = await allocate(server, username, password)
    except stun.TransactionFailed as exc:
        code = exc.response.error_code
        if code == 401:
            return problem(
                name,
                "the TURN server refused Telecircle's credentials (401 Unauthorized): "
                "TELECIRCLE_TURN_SECRET differs from coturn's static-auth-secret (coturn "
                "also needs use-auth-secret, and its clock must be right)",
            )
        return problem(name, f"the TURN server refused a relay allocation ({exc})")
    except (stun.TransactionTimeout, TimeoutError):
        return problem(
            name,
            f"no answer from {where} within {ALLOCATE_TIMEOUT:.0f} s: is coturn running "
            "and listening there, and does the firewall let it through?",
        )
    except ssl.SSLError as exc:
        return problem(
            name,
            f"TLS with {where} failed ({reason(exc)}): coturn needs a certificate for "
            f"{server.host} from a public authority (cert= and pkey= in turnserver.conf)",
        )
    except OSError as exc:
        return problem(
            name,
            f"cannot reach {where} ({reason(exc)}): is coturn running and listening there?",
        )
    return ok(
        name,
        f"allocated a relay ({relayed}) with short-lived credentials from TELECIRCLE_TURN_SECRET",
    )


def check_turn_configured(deployment: Deployment) -> CheckResult:
    """No TURN_URLS: fine on a local network, a warning where patients come from the
    internet (strict NATs and firewalls need a relay)."""
    name = "TURN"
    if deployment.needs_public_media:
        return warning(
            name,
            "not configured (TELECIRCLE_TURN_URLS is empty): patients behind strict NATs "
            "or firewalls cannot join. Run coturn and set TELECIRCLE_TURN_URLS and "
            "TELECIRCLE_TURN_SECRET",
        )
    return ok(name, "not configured (fine on a local network)")
