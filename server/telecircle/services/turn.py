"""Short-lived TURN credentials for browsers (the TURN REST scheme, coturn's
``use-auth-secret``).

Telecircle and coturn share one secret (TELECIRCLE_TURN_SECRET, coturn's
``static-auth-secret``) and never exchange anything else: for each participant the server
makes the username ``"<expiry unix time>:<participant id>"`` and the password
``base64(HMAC-SHA1(secret, username))``; coturn recomputes the password from the
username and refuses the username once its expiry time has passed. A browser therefore
only ever holds a credential that names one participant and dies by itself, never a
static password, and nothing needs revoking.

The expiry is about a session's length (TELECIRCLE_TURN_CREDENTIAL_TTL): coturn checks
it on every allocation and refresh, so it bounds how long a relayed path can last;
joining again (a reconnect) hands out fresh credentials.

Nothing here logs: a password is as good as the secret for its lifetime.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
from dataclasses import dataclass, field

from telecircle.deployment_config import DeploymentSettings
from telecircle.services.clock import Clock


@dataclass(frozen=True)
class TurnCredentials:
    """What one browser needs to use the TURN servers at ``urls`` until ``expires_at``
    (seconds since the epoch): an entry of ``RTCConfiguration.iceServers``."""

    urls: tuple[str, ...]
    username: str
    password: str = field(repr=False)
    expires_at: int


def turn_username(expires_at: int, holder: str) -> str:
    """The TURN REST username: ``"<expires_at>:<holder>"``. ``holder`` is an opaque id
    (a participant id): non-empty, printable, without ``:`` (coturn takes the text
    before the first colon as the expiry)."""
    if not holder or ":" in holder or not holder.isprintable():
        raise ValueError("a TURN credential holder is a non-empty printable id without ':'")
    if expires_at <= 0:
        raise ValueError("a TURN credential expiry is a positive Unix time")
    return f"{expires_at}:{holder}"


def turn_password(secret: str, username: str) -> str:
    """The TURN REST password of ``username``: base64(HMAC-SHA1(secret, username)), as
    coturn computes it from its ``static-auth-secret``."""
    digest = hmac.new(secret.encode("utf-8"), username.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


class TurnCredentialIssuer:
    """Hands out TURN credentials valid for ``ttl`` seconds from now (``clock``)."""

    def __init__(self, urls: tuple[str, ...], secret: str, ttl: float, clock: Clock) -> None:
        if not urls:
            raise ValueError("no TURN URLs: there is nothing to issue credentials for")
        if not secret:
            raise ValueError("a TURN secret is required")
        if ttl <= 0:
            raise ValueError("a TURN credential lifetime is positive")
        self._urls = urls
        self._secret = secret
        self._ttl = ttl
        self._clock = clock

    def __repr__(self) -> str:  # the secret stays out of any repr
        return f"TurnCredentialIssuer(urls={self._urls!r}, ttl={self._ttl!r})"

    @classmethod
    def from_settings(
        cls, settings: DeploymentSettings, clock: Clock
    ) -> TurnCredentialIssuer | None:
        """The issuer for TELECIRCLE_TURN_URLS / _SECRET / _CREDENTIAL_TTL, or None when
        no TURN server is configured."""
        if not settings.turn_urls:
            return None
        return cls(settings.turn_urls, settings.turn_secret, settings.turn_credential_ttl, clock)

    def issue(self, holder: str) -> TurnCredentials:
        """Fresh credentials for ``holder`` (a participant id), expiring ``ttl`` seconds
        from now (rounded up to a whole second)."""
        expires_at = math.ceil(self._clock.now() + self._ttl)
        username = turn_username(expires_at, holder)
        return TurnCredentials(
            urls=self._urls,
            username=username,
            password=turn_password(self._secret, username),
            expires_at=expires_at,
        )
