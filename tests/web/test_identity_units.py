"""The client address behind proxies and the continue-to path after sign-in."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from telecircle.config import load_settings
from telecircle.web.identity import client_address
from telecircle.web.keys import SETTINGS
from telecircle.web.render import safe_next


def request_from(peer: str, proxies: tuple[str, ...], *headers: tuple[str, str]) -> web.Request:
    app = web.Application()
    app[SETTINGS] = load_settings(data_dir=Path("/nonexistent"), trusted_proxies=proxies)
    request = make_mocked_request("GET", "/", headers=CIMultiDict(headers), app=app)
    return request.clone(remote=peer)


def test_the_peer_is_the_client_unless_it_is_a_trusted_proxy() -> None:
    forged = ("X-Forwarded-For", "203.0.113.9")
    assert client_address(request_from("198.51.100.1", (), forged)) == "198.51.100.1"
    assert client_address(request_from("10.0.0.2", ("10.0.0.2",), forged)) == "203.0.113.9"


def test_every_forwarded_header_counts_and_the_nearest_untrusted_hop_wins() -> None:
    # The client forged the first header; the proxy appended its own line.
    request = request_from(
        "10.0.0.2",
        ("10.0.0.2", "10.0.0.3"),
        ("X-Forwarded-For", "1.2.3.4"),
        ("X-Forwarded-For", "203.0.113.9, 10.0.0.3"),
    )
    assert client_address(request) == "203.0.113.9"


def test_addresses_compare_as_addresses() -> None:
    request = request_from("::ffff:127.0.0.1", ("127.0.0.1",), ("X-Forwarded-For", "2001:db8::1"))
    assert client_address(request) == "2001:db8::1"
    garbage = request_from("127.0.0.1", ("127.0.0.1",), ("X-Forwarded-For", "not-an-ip"))
    assert client_address(garbage) == "127.0.0.1"


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example",
        "/\t/evil.example",
        "/\\evil.example",
        "/%0d%0aSet-Cookie:x",
        "/\r\n/evil",
        "javascript:alert(1)",
        "",
    ],
)
def test_sign_in_never_continues_to_another_site(target: str) -> None:
    assert safe_next(target) == "/"


def test_sign_in_continues_to_a_path_of_this_site() -> None:
    assert safe_next("/clinic/rooms/r_1?x=1") == "/clinic/rooms/r_1?x=1"
    assert safe_next("/\t/evil.example") == "/"
    assert safe_next("/\\evil.example") == "/"
    assert safe_next("//evil.example") == "/"
