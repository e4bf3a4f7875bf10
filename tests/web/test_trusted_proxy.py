"""Trusted reverse proxies given as addresses or networks: whose X-Forwarded-For is
believed, which hop is the client, and settings that would trust everyone refused."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from telecircle.config import ConfigError, load_settings
from telecircle.storage import audit_store
from telecircle.web.identity import client_address
from telecircle.web.keys import SETTINGS
from tests.conftest import start_server

FORWARDED = "X-Forwarded-For"


def request_from(peer: str, proxies: tuple[str, ...], *chain: str) -> web.Request:
    """A request from TCP peer ``peer``, with one X-Forwarded-For header per ``chain`` item."""
    app = web.Application()
    app[SETTINGS] = load_settings(data_dir=Path("/nonexistent"), trusted_proxies=proxies)
    headers = CIMultiDict((FORWARDED, hops) for hops in chain)
    return make_mocked_request("GET", "/", headers=headers, app=app).clone(remote=peer)


@pytest.mark.parametrize(
    ("peer", "proxies", "chain", "client"),
    [
        # A proxy anywhere in a trusted network is believed.
        ("10.1.2.7", ("10.1.2.0/24",), ("203.0.113.9",), "203.0.113.9"),
        # A peer outside every trusted network is the client, whatever it claims.
        ("10.1.3.7", ("10.1.2.0/24",), ("203.0.113.9",), "10.1.3.7"),
        # Several proxies of the network in a row: the nearest hop outside it wins, and
        # what the client wrote before that (a forged first hop) is ignored.
        (
            "10.1.2.7",
            ("10.1.2.0/24",),
            ("198.51.100.66, 203.0.113.9, 10.1.2.8, 10.1.2.9",),
            "203.0.113.9",
        ),
        # Networks and single addresses mix; every header line counts, in order.
        (
            "172.16.0.1",
            ("172.16.0.1", "10.1.2.0/24"),
            ("198.51.100.66", "203.0.113.9, 10.1.2.3"),
            "203.0.113.9",
        ),
        # IPv6 networks, and an IPv4-mapped peer compared as its IPv4 address.
        ("2001:db8:aa::5", ("2001:db8:aa::/48",), ("2001:db8:ffff::1",), "2001:db8:ffff::1"),
        ("::ffff:10.1.2.7", ("10.1.2.0/24",), ("203.0.113.9",), "203.0.113.9"),
        # Every hop a trusted proxy: the farthest one is where the request came from.
        ("10.1.2.7", ("10.1.2.0/24",), ("10.1.2.8",), "10.1.2.8"),
        # A malformed hop stops the walk at the last trusted address before it.
        ("10.1.2.7", ("10.1.2.0/24",), ("203.0.113.9, junk, 10.1.2.8",), "10.1.2.8"),
        ("10.1.2.7", ("10.1.2.0/24",), ("",), "10.1.2.7"),
        # No trusted proxies: the peer, always.
        ("127.0.0.1", (), ("203.0.113.9",), "127.0.0.1"),
    ],
)
def test_the_client_is_the_nearest_hop_outside_the_trusted_networks(
    peer: str, proxies: tuple[str, ...], chain: tuple[str, ...], client: str
) -> None:
    assert client_address(request_from(peer, proxies, *chain)) == client
    # Single-address entries are /32 (or /128) networks: only that address is trusted.
    if proxies == ("10.1.2.0/24",):
        assert client_address(request_from(peer, ("10.1.2.0",), *chain)) == str(
            client_address(request_from(peer, (), *chain))
        )


@pytest.mark.parametrize(
    "proxies",
    ["0.0.0.0/0", "::/0", "10.0.0.0/4", "0.0.0.0", "::", "2000::/3", "10.0.0.5, 0.0.0.0/1"],
)
def test_a_setting_that_would_trust_everyone_is_refused_at_start(
    proxies: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TELECIRCLE_TRUSTED_PROXIES", proxies)
    with pytest.raises(ConfigError) as caught:
        load_settings(data_dir=Path("/nonexistent"))
    message = str(caught.value)
    assert "TELECIRCLE_TRUSTED_PROXIES" in message
    assert "reverse proxies" in message or "nearly" in message


def test_proxies_that_are_not_addresses_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELECIRCLE_TRUSTED_PROXIES", "proxy.example.org")
    with pytest.raises(ConfigError, match="TELECIRCLE_TRUSTED_PROXIES"):
        load_settings(data_dir=Path("/nonexistent"))


def test_the_environment_takes_a_comma_separated_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELECIRCLE_TRUSTED_PROXIES", "127.0.0.1, 10.1.2.0/24,2001:db8::/64")
    settings = load_settings(data_dir=Path("/nonexistent"))
    assert [str(n) for n in settings.proxy_networks()] == [
        "127.0.0.1/32",
        "10.1.2.0/24",
        "2001:db8::/64",
    ]


@pytest.mark.parametrize(
    ("proxies", "recorded"), [(("127.0.0.0/8",), "203.0.113.9"), ((), "127.0.0.1")]
)
async def test_a_real_server_records_the_address_a_trusted_network_forwards(
    tmp_path: Path, proxies: tuple[str, ...], recorded: str
) -> None:
    running = await start_server(tmp_path, trusted_proxies=proxies)
    try:
        # unsafe: keep the cookies of a server addressed by IP (the sign-in's CSRF cookie).
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
            async with session.get(f"{running.url}/login") as page:
                text = await page.text()
            token = text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
            async with session.post(
                f"{running.url}/login",
                data={"csrf_token": token, "username": "nobody", "password": "wrong guess!"},
                headers={FORWARDED: "203.0.113.9"},
            ) as response:
                assert response.status == 401
        entries = await audit_store.list_entries(
            running.database, offset=0, limit=10, action="login_failed"
        )
        assert [entry.address for entry in entries.entries] == [recorded]
    finally:
        await running.runner.cleanup()
