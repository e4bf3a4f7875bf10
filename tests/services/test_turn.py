"""Short-lived TURN credentials (the TURN REST scheme): the maths coturn checks, expiry,
one credential per participant, handed out with every join, and never logged.

The relay itself (a real coturn accepting these and refusing expired or wrong ones) is
proved in tests/e2e/test_turn_relay.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import time
from pathlib import Path

import pytest

from telecircle.config import ConfigError, load_settings
from telecircle.services.turn import (
    TurnCredentialIssuer,
    turn_password,
    turn_username,
)
from tests.conftest import start_server
from tests.signalling.client import Client

pytestmark = pytest.mark.timeout(60)

SECRET = "c0ffee" * 8  # 48 characters, as `openssl rand -hex 24` would make
URLS = ("turn:turn.example.org:3478?transport=udp", "turns:turn.example.org:443?transport=tcp")
TTL = 3 * 3600.0


class FixedClock:
    def __init__(self, now: float) -> None:
        self.at = now

    def now(self) -> float:
        return self.at


def test_password_is_base64_hmac_sha1_of_the_username() -> None:
    # A vector computed independently of the code under test (RFC 2104 HMAC-SHA1).
    assert turn_password("north", "1700000000:p_0123") == base64.b64encode(
        hmac.new(b"north", b"1700000000:p_0123", hashlib.sha1).digest()
    ).decode("ascii")
    # The well-known RFC 2202 test case 2 ("Jefe" / "what do ya want for nothing?").
    digest = bytes.fromhex("effcdf6ae5eb2fa2d27416d5f184df9c259a7c79")
    assert turn_password("Jefe", "what do ya want for nothing?") == base64.b64encode(digest).decode(
        "ascii"
    )


def test_username_is_expiry_colon_holder() -> None:
    assert turn_username(1_700_000_000, "p_0123abcd") == "1700000000:p_0123abcd"
    for holder in ("", "p:x", "p\nx"):
        with pytest.raises(ValueError):
            turn_username(1_700_000_000, holder)
    with pytest.raises(ValueError):
        turn_username(0, "p_1")


def test_issued_credentials_expire_ttl_from_now_and_verify_with_the_secret() -> None:
    clock = FixedClock(1_700_000_000.25)
    issuer = TurnCredentialIssuer(URLS, SECRET, TTL, clock)
    issued = issuer.issue("p_00aa11bb22cc33dd")
    assert issued.urls == URLS
    assert issued.expires_at == 1_700_000_000 + 3 * 3600 + 1  # rounded up, never short
    expiry, holder = issued.username.split(":")
    assert int(expiry) == issued.expires_at and holder == "p_00aa11bb22cc33dd"
    # What coturn does with use-auth-secret: recompute the password from the username.
    expected = hmac.new(SECRET.encode(), issued.username.encode(), hashlib.sha1).digest()
    assert base64.b64decode(issued.password) == expected
    # A later issue expires later; the clock is the only source of time.
    clock.at += 600
    assert issuer.issue("p_00aa11bb22cc33dd").expires_at == issued.expires_at + 600


def test_each_participant_gets_their_own_credentials() -> None:
    issuer = TurnCredentialIssuer(URLS, SECRET, TTL, FixedClock(1_700_000_000))
    one, two = issuer.issue("p_1111111111111111"), issuer.issue("p_2222222222222222")
    assert one.username != two.username and one.password != two.password
    assert one.username.endswith(":p_1111111111111111")
    # Another secret makes other passwords: coturn with a different secret refuses them.
    other = TurnCredentialIssuer(URLS, "f" * 64, TTL, FixedClock(1_700_000_000))
    assert other.issue("p_1111111111111111").password != one.password


def test_the_secret_and_passwords_stay_out_of_reprs() -> None:
    issuer = TurnCredentialIssuer(URLS, SECRET, TTL, FixedClock(1_700_000_000))
    issued = issuer.issue("p_1111111111111111")
    assert SECRET not in repr(issuer)
    assert issued.password not in repr(issued)
    settings = load_settings(turn_urls=",".join(URLS), turn_secret=SECRET)
    assert SECRET not in repr(settings)


def test_from_settings() -> None:
    clock = FixedClock(1_700_000_000)
    assert TurnCredentialIssuer.from_settings(load_settings(), clock) is None
    settings = load_settings(turn_urls=",".join(URLS), turn_secret=SECRET, turn_credential_ttl=7200)
    issuer = TurnCredentialIssuer.from_settings(settings, clock)
    assert issuer is not None
    issued = issuer.issue("p_1")
    assert issued.urls == URLS and issued.expires_at == 1_700_000_000 + 7200
    # No static password is ever possible: a short secret is refused at start.
    with pytest.raises(ConfigError, match="TELECIRCLE_TURN_SECRET"):
        load_settings(turn_urls=URLS[0], turn_secret="short")


def test_nothing_is_issued_without_urls_or_secret() -> None:
    clock = FixedClock(1_700_000_000)
    with pytest.raises(ValueError):
        TurnCredentialIssuer((), SECRET, TTL, clock)
    with pytest.raises(ValueError):
        TurnCredentialIssuer(URLS, "", TTL, clock)
    with pytest.raises(ValueError):
        TurnCredentialIssuer(URLS, SECRET, 0, clock)


async def test_every_join_hands_out_fresh_per_participant_credentials_never_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server = await start_server(
        tmp_path, turn_urls=",".join(URLS), turn_secret=SECRET, turn_credential_ttl=TTL
    )
    clients: list[Client] = []
    try:
        code = await server.create_room()

        async def join(cookie: str) -> dict[str, object]:
            client = await Client().connect(server.url, cookie)
            clients.append(client)
            ack = await client.call("join", {"room_code": code})
            assert ack["ok"], ack
            data: dict[str, object] = ack["data"]
            return data

        therapist = await join(await server.owner_cookie(code))
        patient = await join(await server.patient_cookie(code, "Pat"))
        assert patient["place"] == "lobby"  # the waiting room gets them too, to be ready
        issued: list[dict[str, object]] = []
        for joined in (therapist, patient):
            servers = joined["ice_servers"]
            assert isinstance(servers, list) and len(servers) == 1
            entry = servers[0]
            assert entry["urls"] == list(URLS)
            expiry, holder = str(entry["username"]).split(":")
            assert holder == joined["participant_id"]
            assert int(expiry) == entry["expires_at"]
            # Valid for the configured lifetime from now (the server's clock).
            assert TTL - 60 <= int(expiry) - time.time() <= TTL + 60
            assert entry["credential"] == turn_password(SECRET, str(entry["username"]))
            issued.append(entry)
        assert issued[0]["username"] != issued[1]["username"]

        # Nothing of the secret or the passwords reaches a log.
        logged = "\n".join(f"{r.getMessage()} {vars(r)}" for r in caplog.records)
        assert "joined" in logged  # the join itself was logged (ids and event names)
        assert SECRET not in logged
        for entry in issued:
            assert str(entry["credential"]) not in logged
    finally:
        for client in clients:
            if client.sio.connected:
                await client.close()
        await server.runner.cleanup()


async def test_without_turn_the_join_names_no_ice_servers(tmp_path: Path) -> None:
    server = await start_server(tmp_path)
    client: Client | None = None
    try:
        code = await server.create_room()
        client = await Client().connect(server.url, await server.owner_cookie(code))
        ack = await client.call("join", {"room_code": code})
        assert ack["ok"] and ack["data"]["ice_servers"] == []
    finally:
        if client is not None and client.sio.connected:
            await client.close()
        await server.runner.cleanup()
