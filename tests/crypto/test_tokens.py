"""Signed tokens, secrets and hashes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

import pytest

from telecircle.crypto.tokens import (
    MAX_TOKEN_LENGTH,
    new_invite_id,
    new_secret,
    secret_hash,
    sign_token,
    verify_token,
)

KEY = b"k" * 32
OTHER_KEY = b"o" * 32


def _flip(text: str, index: int) -> str:
    replacement = "A" if text[index] != "A" else "B"
    return text[:index] + replacement + text[index + 1 :]


def test_a_signed_token_verifies_to_its_value() -> None:
    token = sign_token(KEY, "invite", "i_0123")
    assert verify_token(KEY, "invite", token) == "i_0123"


def test_the_token_format_is_value_dot_unpadded_urlsafe_hmac() -> None:
    token = sign_token(KEY, "invite", "i_0123")
    digest = hmac.new(KEY, b"invite:i_0123", hashlib.sha256).digest()
    mac = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert token == f"i_0123.{mac}"
    assert "=" not in token


def test_values_with_dots_round_trip() -> None:
    token = sign_token(KEY, "invite", "a.b.c")
    assert verify_token(KEY, "invite", token) == "a.b.c"


def test_another_key_or_purpose_does_not_verify() -> None:
    token = sign_token(KEY, "invite", "i_0123")
    assert verify_token(OTHER_KEY, "invite", token) is None
    assert verify_token(KEY, "setup", token) is None


@pytest.mark.parametrize("index", [0, 3, 5, 7, 20, -1])
def test_any_altered_character_is_refused(index: int) -> None:
    token = sign_token(KEY, "invite", "i_0123")
    assert verify_token(KEY, "invite", _flip(token, index)) is None


@pytest.mark.parametrize(
    "token",
    [
        "",
        ".",
        "i_0123",
        "i_0123.",
        ".abc",
        "x" * 10_000,
        "i_0123." + "=" * 43,
        "i_0123." + "é" * 43,
        "\x00" * 50,
    ],
)
def test_malformed_tokens_are_refused(token: str) -> None:
    assert verify_token(KEY, "invite", token) is None


def test_truncated_and_extended_tokens_are_refused() -> None:
    token = sign_token(KEY, "invite", "i_0123")
    assert verify_token(KEY, "invite", token[:-1]) is None
    assert verify_token(KEY, "invite", token + "A") is None
    assert verify_token(KEY, "invite", token[1:]) is None


def test_a_valid_token_made_too_long_is_refused_unread() -> None:
    value = "v" * (MAX_TOKEN_LENGTH - 44)
    token = sign_token(KEY, "invite", value)
    assert len(token) == MAX_TOKEN_LENGTH
    assert verify_token(KEY, "invite", token) == value
    with pytest.raises(ValueError):
        sign_token(KEY, "invite", value + "v")


@pytest.mark.parametrize("purpose", ["", "a:b", "\n"])
def test_ambiguous_purposes_are_rejected(purpose: str) -> None:
    with pytest.raises(ValueError):
        sign_token(KEY, purpose, "v")
    with pytest.raises(ValueError):
        verify_token(KEY, purpose, "v.x")


def test_empty_values_and_keys_are_rejected() -> None:
    with pytest.raises(ValueError):
        sign_token(KEY, "invite", "")
    with pytest.raises(ValueError):
        sign_token(b"", "invite", "v")
    with pytest.raises(ValueError):
        sign_token(KEY, "invite", "caf\u00e9")


def test_secrets_are_fresh_urlsafe_and_hash_to_sha256_hex() -> None:
    first, second = new_secret(), new_secret()
    assert first != second
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", first)
    assert secret_hash(first) == hashlib.sha256(first.encode()).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", secret_hash(first))


def test_invite_ids_are_fresh_and_prefixed() -> None:
    first, second = new_invite_id(), new_invite_id()
    assert first != second
    assert re.fullmatch(r"i_[0-9a-f]{24}", first)
