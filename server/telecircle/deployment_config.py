"""Settings for running on a real network: TLS, the announced address and UDP port range
of the media plane, TURN, trusted reverse proxies, and how many sessions run at once.

:class:`DeploymentSettings` is a base of :class:`telecircle.config.Settings`; each
refusal names the setting (``TELECIRCLE_*``) and says how to fix it.
"""

from __future__ import annotations

import ipaddress
import math
import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode

# Hostnames as DNS allows them (labels of letters, digits and hyphens).
HOSTNAME = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)
# turn:host[:port][?transport=udp|tcp] and turns:... (RFC 7065).
TURN_URL = re.compile(
    r"turns?:(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?(\?transport=(udp|tcp))?"
)
# The TURN REST scheme's shared secret: long enough that guessing it is hopeless.
MIN_TURN_SECRET_CHARS = 32
# Each seat holds two peer connections (publish and subscribe), one UDP port per ICE
# host address each; a reconnection or renegotiation overlaps old and new for a while.
CONNECTIONS_PER_SEAT = 2
PORT_HEADROOM = 1.5
# A trusted-proxy network wider than this trusts (nearly) everyone.
MIN_PROXY_PREFIX = {4: 8, 6: 16}


class DeploymentSettings(BaseSettings):
    # ---- HTTPS served directly (small installs) ------------------------------------
    tls_cert_file: Path = Field(
        Path(""),
        description="PEM certificate chain for serving HTTPS directly (with "
        "TLS_KEY_FILE). Leave empty when a reverse proxy ends TLS.",
    )
    tls_key_file: Path = Field(
        Path(""), description="PEM private key for TLS_CERT_FILE (owner-only permissions)."
    )
    tls_self_signed: bool = Field(
        False,
        description="Serve HTTPS with a self-signed certificate made on first run in "
        "DATA_DIR/tls (for trying Telecircle on a local network; browsers warn until "
        "the certificate is trusted). Not with TLS_CERT_FILE.",
    )

    # ---- the media plane on a public network ---------------------------------------
    ice_announced_address: str = Field(
        "",
        description="The public IP address (or DNS name) put in the server's ICE "
        "candidates instead of the interface address, for a server behind 1:1 NAT "
        "(a cloud VM). Empty: the interface addresses (ICE_HOST_ADDRESSES).",
    )
    ice_port_min: int = Field(
        0,
        ge=0,
        le=65535,
        description="Lowest UDP port of the media plane (with ICE_PORT_MAX; open exactly "
        "this range in the firewall). 0: ports the system picks.",
    )
    ice_port_max: int = Field(0, ge=0, le=65535, description="Highest UDP port of the media plane.")
    max_live_sessions: int = Field(
        20,
        ge=1,
        le=1000,
        description="Sessions running at once; one more is refused with a clear message. "
        "With a port range, the range must hold this many full rooms.",
    )

    # ---- TURN (coturn) for patients behind strict NATs and firewalls ----------------
    turn_urls: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        description="TURN server URLs handed to browsers, comma-separated, e.g. "
        "turn:turn.example.org:3478?transport=udp,turns:turn.example.org:443?transport=tcp. "
        "Empty: no TURN.",
    )
    turn_secret: str = Field(
        "",
        description="Secret shared with coturn (its static-auth-secret) for short-lived "
        f"TURN credentials; at least {MIN_TURN_SECRET_CHARS} characters. Keep it out of "
        "version control.",
        repr=False,
    )
    turn_credential_ttl: float = Field(
        4 * 3600.0,
        ge=600,
        le=48 * 3600.0,
        description="Seconds a browser's TURN credentials stay valid (about a session's length).",
    )

    @field_validator("turn_urls", mode="before")
    @classmethod
    def _split_urls(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("turn_urls")
    @classmethod
    def _check_turn_urls(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for url in value:
            if not TURN_URL.fullmatch(url):
                raise ValueError(
                    f"{url!r} is not a TURN URL: write turn:HOST:PORT?transport=udp or "
                    "turns:HOST:443?transport=tcp"
                )
        return value

    @field_validator("ice_announced_address")
    @classmethod
    def _check_announced(cls, value: str) -> str:
        if not value:
            return value
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            if not HOSTNAME.fullmatch(value) or value.replace(".", "").isdigit():
                raise ValueError(
                    f"{value!r} is neither an IP address nor a DNS name: give the server's "
                    "public IP address"
                ) from None
            return value
        if address.is_unspecified or address.is_multicast or address.is_loopback:
            raise ValueError(
                f"{value} cannot be announced to browsers: give the server's public IP address"
            )
        return value

    trusted_proxies: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        description="Reverse proxies whose X-Forwarded-For is believed: addresses or "
        "networks (10.0.0.0/24), comma-separated in the environment. Empty: the TCP peer "
        "is the client.",
    )

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            try:
                network = ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(
                    f"{entry!r} is not an IP address or network (such as 10.0.0.5 or 10.0.0.0/24)"
                ) from None
            if network.prefixlen < MIN_PROXY_PREFIX[network.version] or (
                network.network_address.is_unspecified
            ):
                raise ValueError(
                    f"{entry} would trust (nearly) everyone's X-Forwarded-For, so any client "
                    "could claim any address: list only your reverse proxies' addresses"
                )
        return value

    def proxy_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        """TRUSTED_PROXIES as networks (a single address is a /32 or /128)."""
        return tuple(ipaddress.ip_network(entry, strict=False) for entry in self.trusted_proxies)

    @property
    def tls_files_given(self) -> bool:
        return str(self.tls_cert_file) not in ("", ".")

    @property
    def serves_https(self) -> bool:
        return self.tls_files_given or self.tls_self_signed

    @model_validator(mode="after")
    def _check_deployment(self) -> DeploymentSettings:
        self._check_tls()
        self._check_ports()
        if self.turn_urls and len(self.turn_secret) < MIN_TURN_SECRET_CHARS:
            raise ValueError(
                f"TELECIRCLE_TURN_SECRET must be at least {MIN_TURN_SECRET_CHARS} characters "
                "when TELECIRCLE_TURN_URLS is set (make one with: openssl rand -hex 32, and "
                "give coturn the same as static-auth-secret)"
            )
        return self

    def _check_tls(self) -> None:
        cert = self.tls_files_given
        if cert != (str(self.tls_key_file) not in ("", ".")):
            raise ValueError(
                "TELECIRCLE_TLS_CERT_FILE and TELECIRCLE_TLS_KEY_FILE must be given together"
            )
        if cert and self.tls_self_signed:
            raise ValueError(
                "TELECIRCLE_TLS_SELF_SIGNED cannot be combined with TELECIRCLE_TLS_CERT_FILE"
            )
        files = (
            ("TELECIRCLE_TLS_CERT_FILE", self.tls_cert_file),
            ("TELECIRCLE_TLS_KEY_FILE", self.tls_key_file),
        )
        for name, path in files:
            if cert and not path.is_file():
                raise ValueError(f"{name}: {path} does not exist or is not a file")

    def _check_ports(self) -> None:
        low, high = self.ice_port_min, self.ice_port_max
        if (low == 0) != (high == 0):
            raise ValueError(
                "TELECIRCLE_ICE_PORT_MIN and TELECIRCLE_ICE_PORT_MAX must be given together"
            )
        if low != 0 and (low < 1024 or low > high):
            raise ValueError(
                "TELECIRCLE_ICE_PORT_MIN..TELECIRCLE_ICE_PORT_MAX must be a range of ports "
                f"from 1024 up, lowest first (got {low}..{high})"
            )


def ports_needed(live_sessions: int, room_ceiling: int, host_addresses: int) -> int:
    """UDP ports for ``live_sessions`` full rooms, with headroom for reconnections."""
    seats = live_sessions * room_ceiling
    return math.ceil(seats * CONNECTIONS_PER_SEAT * max(1, host_addresses) * PORT_HEADROOM)
