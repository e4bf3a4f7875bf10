"""TOTP against the RFC 6238 test vectors, plus the window and input handling."""

from __future__ import annotations

import base64
from urllib.parse import parse_qs, urlsplit

import pytest

from telecircle.crypto import totp

# RFC 6238 appendix B, SHA-1 rows. The RFC prints 8 digits; a 6-digit code is the same
# truncated number modulo 10**6, i.e. the last six digits.
RFC_SECRET = base64.b32encode(b"12345678901234567890").decode("ascii")
RFC_VECTORS = [
    (59, "94287082"),
    (1111111109, "07081804"),
    (1111111111, "14050471"),
    (1234567890, "89005924"),
    (2000000000, "69279037"),
    (20000000000, "65353130"),
]


@pytest.mark.parametrize(("t", "eight_digits"), RFC_VECTORS)
def test_rfc_6238_sha1_vectors(t: int, eight_digits: str) -> None:
    assert totp.code_at(RFC_SECRET, t) == eight_digits[-6:]
    assert totp.verify(RFC_SECRET, eight_digits[-6:], t)


def test_new_secret_is_160_bits_of_base32() -> None:
    secret = totp.new_secret()
    assert len(secret) == 32
    assert len(base64.b32decode(secret)) == 20
    assert totp.is_valid_secret(secret)
    assert secret != totp.new_secret()


def test_one_step_either_side_is_accepted_two_are_not() -> None:
    now = 1_700_000_015.0  # mid-step
    for offset, accepted in [(-60, False), (-30, True), (0, True), (30, True), (60, False)]:
        code = totp.code_at(RFC_SECRET, now + offset)
        assert totp.verify(RFC_SECRET, code, now) is accepted, offset


def test_matching_step_names_the_step() -> None:
    now = 1_700_000_015.0
    step = int(now // 30)
    assert totp.matching_step(RFC_SECRET, totp.code_at(RFC_SECRET, now - 30), now) == step - 1
    assert totp.matching_step(RFC_SECRET, totp.code_at(RFC_SECRET, now), now) == step


def test_window_zero_accepts_only_the_current_step() -> None:
    now = 1_700_000_015.0
    assert totp.verify(RFC_SECRET, totp.code_at(RFC_SECRET, now), now, window=0)
    assert not totp.verify(RFC_SECRET, totp.code_at(RFC_SECRET, now - 30), now, window=0)


def test_spaces_in_the_code_and_lower_case_secret_are_tolerated() -> None:
    now = 1_700_000_000.0
    code = totp.code_at(RFC_SECRET, now)
    assert totp.verify(RFC_SECRET.lower(), f"{code[:3]} {code[3:]}", now)


@pytest.mark.parametrize("code", ["", "12345", "1234567", "abcdef", "١٢٣٤٥٦", "12 34"])
def test_malformed_codes_never_match(code: str) -> None:
    assert not totp.verify(RFC_SECRET, code, 1_700_000_000.0)


def test_malformed_secret_never_matches_and_code_at_refuses_it() -> None:
    assert not totp.is_valid_secret("not base32!")
    assert not totp.is_valid_secret("")
    assert not totp.is_valid_secret("AAAA")  # too short
    assert not totp.verify("not base32!", "123456", 1_700_000_000.0)
    with pytest.raises(ValueError):
        totp.code_at("not base32!", 0)


def test_provisioning_uri() -> None:
    uri = totp.provisioning_uri("JBSWY3DPEHPK3PXP", "alice")
    parts = urlsplit(uri)
    assert parts.scheme == "otpauth"
    assert parts.netloc == "totp"
    assert parts.path == "/Telecircle:alice"
    query = parse_qs(parts.query)
    assert query == {
        "secret": ["JBSWY3DPEHPK3PXP"],
        "issuer": ["Telecircle"],
        "algorithm": ["SHA1"],
        "digits": ["6"],
        "period": ["30"],
    }


def test_provisioning_uri_quotes_the_label() -> None:
    uri = totp.provisioning_uri("JBSWY3DPEHPK3PXP", "a b/c", issuer="My Clinic")
    assert uri.startswith("otpauth://totp/My%20Clinic:a%20b%2Fc?")
    assert "issuer=My%20Clinic" in uri
