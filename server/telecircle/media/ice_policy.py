"""The aioice seams: local addresses, dead-path detection, and hostile datagrams.

aioice 0.13 has no settings for any of these, so while installed this module replaces

- ``aioice.ice.get_host_addresses``: aioice leaves 127.0.0.1 out of its host candidates;
  the SFU gathers on exactly the configured addresses;
- ``aioice.ice.Connection.query_consent`` (RFC 7675 consent freshness). aioice's own
  loop sends a check every 5 s, gives each one 0.5 s (no retransmission) and closes the
  path after 6 failures in a row: 30 s to notice a dead path, yet a path whose round
  trip exceeds 0.5 s for a while (a patient on a congested mobile link, a busy client)
  fails every check. Ours checks every ``consent_interval`` with retransmissions (up to
  ~3.5 s per check) and closes the path when no check has succeeded for
  ``consent_timeout`` seconds: a dead path is noticed in about that time, a slow one
  survives.

It also fixes a leak: aioice starts the consent task at the end of ``connect()`` even
when ``close()`` ran meanwhile (a connection closed while ICE completes); our loop
returns at once on a closing connection.

And it keeps hostile datagrams harmless; :mod:`telecircle.media.datagram_guard` says
which upstream behaviour each check defends against:

- ``aioice.ice.Connection.data_received`` drops datagrams that cannot be DTLS, SRTP or
  SRTCP before aiortc sees them (:func:`~telecircle.media.datagram_guard.could_be_media`).
  It is the narrowest point: aioice 0.13's ``StunProtocol.datagram_received`` hands it
  every datagram that does not parse as STUN, from any source address, host or
  TURN-relayed, and it only queues them for aiortc;
- ``aioice.ice.StunProtocol.datagram_received`` passes a non-STUN datagram on only from
  a checked source, and ``data_received`` queues at most
  :data:`~telecircle.media.datagram_guard.MAX_QUEUED_DATAGRAMS` of them
  (:func:`~telecircle.media.datagram_guard.from_checked_source`);
- ``aioice.stun.parse_message`` raises only the ValueError aioice catches;
- ``aioice.ice.Connection.request_received`` (which also notes the peer's consent
  checks) drops binding requests from anywhere but the nominated pair once a component
  has one, so nobody else can move a participant's media path.

With a UDP port range or an announced address configured it also replaces
``aioice.ice.Connection.get_component_candidates``, which binds the host sockets and
makes their candidates (:mod:`telecircle.media.ice_network`).

These are process-wide: the policy remembers what it replaced and puts it back on
:meth:`IcePolicy.uninstall`. tests/media/test_aiortc_seams.py fails if the aioice
names used here change.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import random
import weakref
from collections.abc import Callable, Coroutine
from typing import Any

import aioice.ice
from aioice import stun

from telecircle.media.datagram_guard import (
    MAX_QUEUED_DATAGRAMS,
    STUN_FIRST_BYTES,
    could_be_media,
    from_checked_source,
    off_nominated_path,
    strict_stun_parser,
)
from telecircle.media.ice_network import (
    COMPONENT_CANDIDATES_METHOD,
    IceNetwork,
    component_gatherer,
)

HOST_ADDRESSES_FUNCTION = "get_host_addresses"
CONSENT_METHOD = "query_consent"
# aioice.ice.Connection internals the consent loop uses.
CONNECTION_INTERNALS = (
    "_closing",
    "_nominated",
    "_query_consent_task",
    "remote_password",
    "build_request",
    "local_password",
    "_valid_username",
    "_check_list",
    "_queue",
)
DATA_RECEIVED_METHOD = "data_received"
# aioice.ice.StunProtocol's datagram handler, and the attributes it hands data on with.
DATAGRAM_RECEIVED_METHOD = "datagram_received"
STUN_PROTOCOL_INTERNALS = ("receiver", "local_candidate")
# aioice.ice.Connection's handler of incoming STUN requests (wrapped to note consent and
# to keep the nominated path where it is).
REQUEST_RECEIVED_METHOD = "request_received"
# aioice.stun's parser, which ice.StunProtocol (and turn) call through the module.
STUN_PARSER_FUNCTION = "parse_message"
# Retransmissions per consent check: STUN timeouts at 0.5, 1.5 and 3.5 s.
CONSENT_RETRANSMISSIONS = 2
# Unanswered checks in a row needed (besides the timeout) before a path counts as dead.
CONSENT_MIN_FAILURES = 2


class IcePolicy:
    """Installs the configured ICE behaviour into aioice; install/uninstall are idempotent."""

    def __init__(
        self,
        host_addresses: tuple[str, ...],
        consent_interval: float,
        consent_timeout: float,
        network: IceNetwork | None = None,
    ) -> None:
        self._addresses = tuple(host_addresses)
        self._network = network or IceNetwork()
        self._host_addresses = self._make_host_addresses()
        # When each connection last got an authenticated check from its peer.
        self._peer_checks: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()
        self._consent = self._make_consent_loop(
            consent_interval, consent_timeout, self._peer_checks
        )
        self._request_hook = self._make_request_hook(self._peer_checks)
        # (owner, name, upstream value, our replacement) for each installed seam.
        self._patches: list[tuple[Any, str, Any, Any]] | None = None

    @property
    def network(self) -> IceNetwork:
        return self._network

    @property
    def installed(self) -> bool:
        return self._patches is not None

    def _make_host_addresses(self) -> Callable[[bool, bool], list[str]]:
        addresses = self._addresses

        def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
            result = []
            for address in addresses:
                version = ipaddress.ip_address(address).version
                if (version == 4 and use_ipv4) or (version == 6 and use_ipv6):
                    result.append(address)
            return result

        return get_host_addresses

    @staticmethod
    def _make_request_hook(
        peer_checks: weakref.WeakKeyDictionary[Any, float],
    ) -> Callable[[Callable[..., None]], Callable[..., None]]:
        """Wraps aioice's request handler.

        Once a component has a nominated pair, a request from any other address is
        dropped unanswered (see :func:`~telecircle.media.datagram_guard.off_nominated_path`:
        otherwise a replayed request and a relay move the participant's media path).
        An authenticated binding request from the peer on the nominated pair (same
        address, same socket) proves the path alive as well as an answer to our own
        check does: under a receive backlog (a starved process) answers to our checks
        can come too late while the peer's own checks still arrive in time."""

        def hook(original: Callable[..., None]) -> Callable[..., None]:
            @functools.wraps(original)
            def request_received(connection: Any, message: Any, addr: Any, protocol: Any) -> None:
                if off_nominated_path(connection, addr, protocol):
                    return
                try:
                    original(connection, message, addr, protocol)
                except KeyError:
                    # aioice 0.13's check_incoming reads PRIORITY unchecked: an
                    # authenticated request without it, from an address not yet
                    # paired, would raise into the event loop (a logged traceback per
                    # datagram). Such a request is no connectivity check: dropped.
                    return
                attributes = message.attributes
                on_path = any(
                    pair.remote_addr == addr and pair.protocol is protocol
                    for pair in connection._nominated.values()
                )
                if (
                    on_path
                    and not connection._closing
                    and "USERNAME" in attributes
                    and "MESSAGE-INTEGRITY" in attributes
                    and connection._valid_username(attributes["USERNAME"])
                    and message.check_message_integrity(connection.local_password.encode("utf8"))
                ):
                    peer_checks[connection] = asyncio.get_running_loop().time()

            return request_received

        return hook

    @staticmethod
    def _make_consent_loop(
        interval: float, timeout: float, peer_checks: weakref.WeakKeyDictionary[Any, float]
    ) -> Callable[[Any], Coroutine[Any, Any, None]]:
        async def query_consent(connection: Any) -> None:
            if connection._closing or connection.remote_password is None:
                return
            loop = asyncio.get_running_loop()
            key = connection.remote_password.encode("utf8")
            fresh_at = loop.time()
            failures = 0
            while not connection._closing:
                await asyncio.sleep(interval * (0.8 + 0.4 * random.random()))  # noqa: S311
                for pair in list(connection._nominated.values()):
                    request = connection.build_request(pair, nominate=False)
                    try:
                        await pair.protocol.request(
                            request,
                            pair.remote_addr,
                            integrity_key=key,
                            retransmissions=CONSENT_RETRANSMISSIONS,
                        )
                        fresh_at = loop.time()
                        failures = 0
                    except stun.TransactionError:
                        failures += 1
                # Both conditions: a stalled event loop (a long pause in this process)
                # must not count as the peer's silence, so expiry also needs checks that
                # were actually sent and went unanswered.
                fresh_at = max(fresh_at, peer_checks.get(connection, fresh_at))
                if loop.time() - fresh_at >= timeout and failures >= CONSENT_MIN_FAILURES:
                    # As aioice does on expiry: forget the task, then close (which would
                    # otherwise cancel the task running this very code).
                    connection._query_consent_task = None
                    await connection.close()
                    return

        return query_consent

    @staticmethod
    def _make_data_filter(
        deliver: Callable[[Any, bytes, int], None],
    ) -> Callable[[Any, bytes, int], None]:
        def data_received(connection: Any, data: bytes, component: int) -> None:
            if could_be_media(data) and connection._queue.qsize() < MAX_QUEUED_DATAGRAMS:
                deliver(connection, data, component)

        return data_received

    @staticmethod
    def _make_datagram_gate(
        original: Callable[[Any, bytes, Any], None],
    ) -> Callable[[Any, bytes, Any], None]:
        def datagram_received(protocol: Any, data: bytes, addr: Any) -> None:
            if data and data[0] not in STUN_FIRST_BYTES:
                # What aioice does with a datagram that is not STUN, from a checked
                # source only.
                connection = protocol.receiver
                if from_checked_source(connection, (addr[0], addr[1]), protocol):
                    connection.data_received(data, protocol.local_candidate.component)
                return
            original(protocol, data, addr)

        return datagram_received

    def install(self) -> None:
        if self._patches is not None:
            return
        seams: tuple[tuple[Any, str, Callable[[Any], Any]], ...] = (
            (aioice.ice, HOST_ADDRESSES_FUNCTION, lambda _: self._host_addresses),
            (aioice.ice.Connection, CONSENT_METHOD, lambda _: self._consent),
            (aioice.ice.Connection, DATA_RECEIVED_METHOD, self._make_data_filter),
            (aioice.ice.Connection, REQUEST_RECEIVED_METHOD, self._request_hook),
            (aioice.ice.StunProtocol, DATAGRAM_RECEIVED_METHOD, self._make_datagram_gate),
            (stun, STUN_PARSER_FUNCTION, strict_stun_parser),
        )
        if self._network.active:
            network = self._network
            seams += (
                (
                    aioice.ice.Connection,
                    COMPONENT_CANDIDATES_METHOD,
                    lambda upstream: component_gatherer(network, upstream),
                ),
            )
        self._patches = []
        for owner, name, replace in seams:
            upstream = getattr(owner, name)
            replacement = replace(upstream)
            setattr(owner, name, replacement)
            self._patches.append((owner, name, upstream, replacement))

    def uninstall(self) -> None:
        if self._patches is None:
            return
        for owner, name, upstream, replacement in reversed(self._patches):
            # Only undo our own change: another policy may have been installed after us.
            if getattr(owner, name) is replacement:
                setattr(owner, name, upstream)
        self._patches = None
