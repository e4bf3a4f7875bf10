"""The aioice seams: which local addresses ICE gathers on, and how fast a dead path is noticed.

aioice has no settings for either, so while installed this module replaces
``aioice.ice.get_host_addresses`` (aioice leaves 127.0.0.1 out) and the module constants
``CONSENT_INTERVAL`` / ``CONSENT_FAILURES`` (30 s to notice a dead path by default).
It also fixes a leak: aioice 0.13 starts the consent task at the end of ``connect()``
even when ``close()`` ran meanwhile (a connection closed while ICE completes), and that
task then loops forever; ``Connection.query_consent`` is wrapped to return at once on a
closing connection.

These are process-wide: the policy remembers what it replaced and puts it back on
:meth:`IcePolicy.uninstall`. tests/media/test_aiortc_seams.py fails if the names change.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

import aioice.ice

HOST_ADDRESSES_FUNCTION = "get_host_addresses"
CONSENT_INTERVAL = "CONSENT_INTERVAL"
CONSENT_FAILURES = "CONSENT_FAILURES"
PATCHED_NAMES = (HOST_ADDRESSES_FUNCTION, CONSENT_INTERVAL, CONSENT_FAILURES)
CONSENT_METHOD = "query_consent"
CLOSING_FLAG = "_closing"


class IcePolicy:
    """Installs the configured ICE behaviour into aioice; install/uninstall are idempotent."""

    def __init__(
        self, host_addresses: tuple[str, ...], consent_interval: float, consent_failures: int
    ) -> None:
        self._addresses = tuple(host_addresses)
        self._values: dict[str, Any] = {
            HOST_ADDRESSES_FUNCTION: self._make_host_addresses(),
            CONSENT_INTERVAL: consent_interval,
            CONSENT_FAILURES: consent_failures,
        }
        self._saved: dict[str, Any] | None = None
        self._original_consent: Any = None
        self._consent_wrapper: Any = None

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

    def install(self) -> None:
        if self._saved is not None:
            return
        self._saved = {name: getattr(aioice.ice, name) for name in PATCHED_NAMES}
        for name, value in self._values.items():
            setattr(aioice.ice, name, value)
        original = getattr(aioice.ice.Connection, CONSENT_METHOD)

        async def query_consent(connection: Any) -> None:
            if getattr(connection, CLOSING_FLAG):
                return
            await original(connection)

        self._original_consent, self._consent_wrapper = original, query_consent
        setattr(aioice.ice.Connection, CONSENT_METHOD, query_consent)

    def uninstall(self) -> None:
        if self._saved is None:
            return
        for name, value in self._saved.items():
            # Only undo our own change: another policy may have been installed after us.
            if getattr(aioice.ice, name) is self._values[name]:
                setattr(aioice.ice, name, value)
        if getattr(aioice.ice.Connection, CONSENT_METHOD) is self._consent_wrapper:
            setattr(aioice.ice.Connection, CONSENT_METHOD, self._original_consent)
        self._saved = None
