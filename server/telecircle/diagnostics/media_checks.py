"""The media plane on a real network: a public address in the server's ICE candidates,
and a UDP port range that is set, free and big enough."""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass

from telecircle.deployment_config import ports_needed
from telecircle.diagnostics.deployment import Address, Deployment, resolve
from telecircle.diagnostics.results import CheckResult, ok, problem, reason, warning

# Ranges up to this size are tried port by port; larger ones at this many spread ports.
PORT_SAMPLE = 2048


async def check_public_address(deployment: Deployment) -> CheckResult:
    """When patients come from the internet, the server's ICE candidates must carry a
    public address: ICE_ANNOUNCED_ADDRESS, or a public one among ICE_HOST_ADDRESSES."""
    name = "Public address for media"
    settings = deployment.settings
    if not deployment.needs_public_media:
        return ok(
            name,
            f"the public URL's host {deployment.url.host} is on {deployment.reach.value}: "
            "no public address needed",
        )
    candidates: list[Address] = []
    announced = settings.ice_announced_address
    if announced:
        try:
            candidates += await resolve(announced)
        except (OSError, TimeoutError) as exc:
            return problem(
                name,
                f"TELECIRCLE_ICE_ANNOUNCED_ADDRESS {announced} does not resolve here "
                f"({reason(exc)}): give the server's public IP address",
            )
    candidates += [ipaddress.ip_address(a) for a in settings.ice_host_addresses]
    public = [str(address) for address in candidates if address.is_global]
    if public:
        return ok(name, f"browsers are told to send media to {', '.join(public)}")
    told = ", ".join(dict.fromkeys(str(a) for a in candidates))
    return problem(
        name,
        f"patients outside your network cannot reach the media: the server's ICE "
        f"candidates carry only {told}, which the internet cannot reach. Set "
        "TELECIRCLE_ICE_ANNOUNCED_ADDRESS to the server's public IP address (or put a "
        "public address in TELECIRCLE_ICE_HOST_ADDRESSES)",
    )


@dataclass(frozen=True, slots=True)
class PortProbe:
    """Ports tried on one address: how many, how many in use, and a reason if the
    address itself cannot be bound (not on this machine, not allowed)."""

    tried: int
    in_use: int
    refusal: str | None


def sample_ports(low: int, high: int, count: int = PORT_SAMPLE) -> list[int]:
    """Every port of ``low..high`` if there are at most ``count``, else ``count`` ports
    spread evenly over the range (the first and last included)."""
    size = high - low + 1
    if size <= count:
        return list(range(low, high + 1))
    return sorted({low + (i * (size - 1)) // (count - 1) for i in range(count)})


def probe_ports(address: str, ports: Iterable[int]) -> PortProbe:
    """Bind a UDP socket on ``address`` at each port (and let it go at once)."""
    family = socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
    tried = in_use = 0
    for port in ports:
        tried += 1
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind((address, port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    in_use += 1
                    continue
                if exc.errno == errno.EADDRNOTAVAIL:
                    return PortProbe(tried, in_use, "it is not an address of this machine")
                return PortProbe(tried, in_use, f"binding port {port} fails ({reason(exc)})")
    return PortProbe(tried, in_use, None)


def check_port_range(deployment: Deployment) -> CheckResult:
    """ICE_PORT_MIN..MAX: set (where patients come from the internet), bindable on
    every ICE host address, and with enough free ports for MAX_LIVE_SESSIONS full rooms
    (ports held by a running Telecircle count as in use)."""
    name = "UDP port range"
    settings = deployment.settings
    low, high = settings.ice_port_min, settings.ice_port_max
    addresses = settings.ice_host_addresses
    needed = ports_needed(settings.max_live_sessions, settings.room_limit_ceiling, len(addresses))
    if low == 0:
        if deployment.needs_public_media:
            return warning(
                name,
                "not set: media uses ports the system picks, so a firewall would have to "
                "let in every UDP port. Set TELECIRCLE_ICE_PORT_MIN and "
                f"TELECIRCLE_ICE_PORT_MAX (at least {needed} ports) and open exactly that "
                "range",
            )
        return ok(name, "not set: ports the system picks (fine on a local network)")
    size = high - low + 1
    span = f"{low}..{high}"
    sessions = (
        f"{needed} are needed for {settings.max_live_sessions} full session(s) of "
        f"{settings.room_limit_ceiling} (TELECIRCLE_MAX_LIVE_SESSIONS, "
        "TELECIRCLE_ROOM_LIMIT_CEILING)"
    )
    if size < needed:
        return problem(
            name,
            f"{span} holds {size} ports; {sessions}: widen TELECIRCLE_ICE_PORT_MIN..MAX or "
            "lower TELECIRCLE_MAX_LIVE_SESSIONS",
        )
    ports = sample_ports(low, high)
    busiest = PortProbe(0, 0, None)
    for address in addresses:
        probe = probe_ports(address, ports)
        if probe.refusal is not None:
            return problem(
                name,
                f"cannot bind UDP ports on {address} (TELECIRCLE_ICE_HOST_ADDRESSES): "
                f"{probe.refusal}. List this machine's own addresses there",
            )
        if probe.in_use >= busiest.in_use:
            busiest = probe
    free = size * (busiest.tried - busiest.in_use) // max(1, busiest.tried)
    about = "" if busiest.tried == size else "about "
    usage = f"{busiest.in_use} of {busiest.tried} ports tried are in use"
    if free < needed:
        return problem(
            name,
            f"{span}: {usage}, leaving {about}{free} free; {sessions}. Find what holds "
            "them (ss -ulpn), or move or widen the range",
        )
    return ok(name, f"{span}: {size} ports, {about}{free} free ({usage}); {sessions}")
