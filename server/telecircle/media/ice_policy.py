"""The aioice seams: which local addresses ICE gathers on, and how a dead path is noticed.

aioice 0.13 has no settings for either, so while installed this module replaces

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

These are process-wide: the policy remembers what it replaced and puts it back on
:meth:`IcePolicy.uninstall`. tests/media/test_aiortc_seams.py fails if the aioice
names used here change.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
from collections.abc import Callable, Coroutine
from typing import Any

import aioice.ice
from aioice import stun

HOST_ADDRESSES_FUNCTION = "get_host_addresses"
CONSENT_METHOD = "query_consent"
# aioice.ice.Connection internals the consent loop uses.
CONNECTION_INTERNALS = (
    "_closing",
    "_nominated",
    "_query_consent_task",
    "remote_password",
    "build_request",
)
# Retransmissions per consent check: STUN timeouts at 0.5, 1.5 and 3.5 s.
CONSENT_RETRANSMISSIONS = 2


class IcePolicy:
    """Installs the configured ICE behaviour into aioice; install/uninstall are idempotent."""

    def __init__(
        self, host_addresses: tuple[str, ...], consent_interval: float, consent_timeout: float
    ) -> None:
        self._addresses = tuple(host_addresses)
        self._host_addresses = self._make_host_addresses()
        self._consent = self._make_consent_loop(consent_interval, consent_timeout)
        self._saved: tuple[Any, Any] | None = None

    @property
    def installed(self) -> bool:
        return self._saved is not None

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
    def _make_consent_loop(
        interval: float, timeout: float
    ) -> Callable[[Any], Coroutine[Any, Any, None]]:
        async def query_consent(connection: Any) -> None:
            if connection._closing or connection.remote_password is None:
                return
            loop = asyncio.get_running_loop()
            key = connection.remote_password.encode("utf8")
            fresh_at = loop.time()
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
                    except stun.TransactionError:
                        pass
                if loop.time() - fresh_at >= timeout:
                    # As aioice does on expiry: forget the task, then close (which would
                    # otherwise cancel the task running this very code).
                    connection._query_consent_task = None
                    await connection.close()
                    return

        return query_consent

    def install(self) -> None:
        if self._saved is not None:
            return
        self._saved = (
            getattr(aioice.ice, HOST_ADDRESSES_FUNCTION),
            getattr(aioice.ice.Connection, CONSENT_METHOD),
        )
        setattr(aioice.ice, HOST_ADDRESSES_FUNCTION, self._host_addresses)
        setattr(aioice.ice.Connection, CONSENT_METHOD, self._consent)

    def uninstall(self) -> None:
        if self._saved is None:
            return
        host_addresses, consent = self._saved
        # Only undo our own change: another policy may have been installed after us.
        if getattr(aioice.ice, HOST_ADDRESSES_FUNCTION) is self._host_addresses:
            setattr(aioice.ice, HOST_ADDRESSES_FUNCTION, host_addresses)
        if getattr(aioice.ice.Connection, CONSENT_METHOD) is self._consent:
            setattr(aioice.ice.Connection, CONSENT_METHOD, consent)
        self._saved = None
