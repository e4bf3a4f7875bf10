"""The media plane on a public network: a UDP port range and an announced address.

aioice 0.13 has neither option. Its ``Connection.get_component_candidates`` binds one
UDP socket per host address with ``loop.create_datagram_endpoint(...,
local_addr=(address, 0))`` (a port the system picks), enlarges its receive buffer, and
makes a host candidate of the socket's own address. While installed (by
:class:`~telecircle.media.ice_policy.IcePolicy`, only when a range or an announced
address is configured) :func:`component_gatherer` does the same, except that

- each socket binds to a free port of the configured range: from a random start, each
  port tried at most once; a range with no free port refuses the offer/answer with
  MediaError ``ports_exhausted`` (a ``media.ports_exhausted`` log line) after closing
  whatever it had bound;
- the host candidates carry the announced address instead of the interface address of
  the same family (like Janus's ``nat_1_1_mapping``): a server behind 1:1 NAT (a cloud
  VM) binds its private address while browsers are told its public one. The sockets
  stay where they are, so checks and media arrive through the NAT as before.

Connections with a STUN or TURN server (never the server's own: it has none) keep
aioice's own gathering. tests/media/test_aiortc_seams.py fails if the upstream method
changes shape.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import secrets
import socket
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any

from aioice import turn
from aioice.candidate import Candidate, candidate_foundation, candidate_priority
from aioice.ice import StunProtocol

from telecircle.media.errors import MediaConfigError, ports_exhausted

logger = logging.getLogger(__name__)

ANNOUNCED_SETTING = "TELECIRCLE_ICE_ANNOUNCED_ADDRESS"
# The method replaced, and the parameters aioice calls it with (by keyword).
COMPONENT_CANDIDATES_METHOD = "get_component_candidates"
COMPONENT_CANDIDATES_PARAMETERS = ("self", "component", "addresses", "timeout")
# Resolving the announced DNS name at start-up.
RESOLVE_TIMEOUT = 10.0

GatherMethod = Callable[..., Coroutine[Any, Any, list[Candidate]]]


@dataclass(frozen=True, slots=True)
class PortRange:
    """UDP ports ``low..high`` (both included) for the media plane's sockets."""

    low: int
    high: int

    def __post_init__(self) -> None:
        if not 1 <= self.low <= self.high <= 65535:
            raise ValueError(f"not a port range: {self.low}..{self.high}")

    def __len__(self) -> int:
        return self.high - self.low + 1

    def ports(self) -> Iterator[int]:
        """Every port of the range once, from a random start (wrapping round)."""
        size = len(self)
        start = secrets.randbelow(size)
        for offset in range(size):
            yield self.low + (start + offset) % size


@dataclass(frozen=True, slots=True)
class IceNetwork:
    """Where the server's host sockets bind and what its candidates announce.

    ``ports``: None for ports the system picks. ``announced``: an IP address (resolved)
    or None; it replaces host addresses of its own family in candidates.
    """

    ports: PortRange | None = None
    announced: str | None = None

    @property
    def active(self) -> bool:
        return self.ports is not None or self.announced is not None

    def candidate_host(self, bound: str) -> str:
        if self.announced is not None and _family(self.announced) == _family(bound):
            return self.announced
        return bound


class PortsExhausted(Exception):
    """No port of the range is free on this address."""


def bind_host_socket(address: str, ports: PortRange | None) -> socket.socket:
    """A UDP socket bound to ``address`` on a free port of ``ports`` (any port: None).

    Raises PortsExhausted when every port of the range is in use, OSError when the
    address cannot be bound at all (not this machine's, say). No socket is left open
    on failure.
    """
    family = socket.AF_INET6 if _family(address) == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        # As aioice does (it sets it once the socket is bound; before is as good).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, turn.UDP_SOCKET_BUFFER_SIZE)
        if ports is None:
            sock.bind((address, 0))
            return sock
        for port in ports.ports():
            try:
                sock.bind((address, port))
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                continue
            return sock
    except BaseException:
        sock.close()
        raise
    sock.close()
    raise PortsExhausted


def component_gatherer(network: IceNetwork, upstream: GatherMethod) -> GatherMethod:
    """aioice's ``Connection.get_component_candidates`` for ``network`` (see the module)."""

    async def get_component_candidates(
        connection: Any,
        component: int,
        addresses: list[str],
        timeout: int = 5,  # noqa: ASYNC109 - aioice's signature (its STUN/TURN wait)
    ) -> list[Candidate]:
        if connection.stun_server is not None or connection.turn_server is not None:
            return await upstream(connection, component, addresses, timeout)
        loop = asyncio.get_running_loop()
        protocols: list[StunProtocol] = []
        try:
            for address in addresses:
                try:
                    sock = bind_host_socket(address, network.ports)
                except PortsExhausted:
                    logger.warning("media.ports_exhausted ports=%d", len(network.ports or ()))
                    raise ports_exhausted() from None
                except OSError as exc:
                    # As aioice: an address that cannot be bound gives no candidate.
                    logger.info(
                        "media.host_bind_failed error=%s", errno.errorcode.get(exc.errno or 0)
                    )
                    continue
                try:
                    _, protocol = await loop.create_datagram_endpoint(
                        lambda: StunProtocol(connection), sock=sock
                    )
                except BaseException:
                    sock.close()
                    raise
                protocols.append(protocol)
                bound, port = sock.getsockname()[:2]
                protocol.local_candidate = Candidate(
                    foundation=candidate_foundation("host", "udp", bound),
                    component=component,
                    transport="udp",
                    priority=candidate_priority(component, "host"),
                    host=network.candidate_host(bound),
                    port=port,
                    type="host",
                )
        except BaseException:
            for protocol in protocols:
                protocol.transport.close()
            raise
        connection._protocols += protocols
        return [protocol.local_candidate for protocol in protocols]

    return get_component_candidates


def _family(address: str) -> int:
    return ipaddress.ip_address(address).version


def check_announced(announced: str, host_addresses: tuple[str, ...]) -> None:
    """Refuse (MediaConfigError) an announced IP address that cannot stand for the host
    addresses: it must be usable by browsers, and stand for exactly one host address
    of its family (the one the NAT maps it to)."""
    address = ipaddress.ip_address(announced)
    if address.is_unspecified or address.is_multicast or address.is_loopback:
        raise MediaConfigError(
            f"{ANNOUNCED_SETTING}: {announced} cannot be announced to browsers: give the "
            "server's public IP address (or a DNS name for it)"
        )
    same_family = [a for a in host_addresses if _family(a) == address.version]
    if len(same_family) != 1:
        raise MediaConfigError(
            f"{ANNOUNCED_SETTING}: the announced IPv{address.version} address stands for "
            f"one interface address, and TELECIRCLE_ICE_HOST_ADDRESSES has "
            f"{len(same_family)} of that family: list there exactly the IPv{address.version} "
            "address your NAT forwards the public address to"
        )


async def resolve_announced_address(
    announced: str, host_addresses: tuple[str, ...], within: float = RESOLVE_TIMEOUT
) -> str:
    """The announced address as an IP address: an IP as it is, a DNS name resolved (once,
    here) to its first address of a host address's family.

    Raises MediaConfigError naming TELECIRCLE_ICE_ANNOUNCED_ADDRESS when the name does not
    resolve (``within`` seconds) to a usable address, or the address cannot stand for the
    host addresses (:func:`check_announced`).
    """
    try:
        ipaddress.ip_address(announced)
    except ValueError:
        announced = await _resolve(announced, host_addresses, within)
    check_announced(announced, host_addresses)
    return announced


async def _resolve(name: str, host_addresses: tuple[str, ...], within: float) -> str:
    families = {_family(a) for a in host_addresses}
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(within):
            found = await loop.getaddrinfo(name, None, type=socket.SOCK_DGRAM)
    except (OSError, TimeoutError):
        raise MediaConfigError(
            f"{ANNOUNCED_SETTING}: the name {name!r} does not resolve: give the server's "
            "public IP address, or a DNS name that resolves to it"
        ) from None
    for *_, sockaddr in found:
        address = ipaddress.ip_address(sockaddr[0])
        if address.version in families and not (
            address.is_loopback or address.is_unspecified or address.is_multicast
        ):
            return str(address)
    raise MediaConfigError(
        f"{ANNOUNCED_SETTING}: the name {name!r} resolves to no public address of the "
        "family of TELECIRCLE_ICE_HOST_ADDRESSES: give the server's public IP address"
    )
