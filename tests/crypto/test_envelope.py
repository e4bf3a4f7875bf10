"""Envelope encryption: round trips, and every tampering or misplacement fails closed."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest

from telecircle.crypto.envelope import (
    DecryptionFailed,
    KeyEncryptionKey,
    NoteBinding,
    Sealed,
    new_data_key,
    open_sealed,
    rewrap,
    seal,
    unwrap,
    wrap,
)

KEK1 = KeyEncryptionKey(1, os.urandom(32))
KEK2 = KeyEncryptionKey(2, os.urandom(32))
BINDING = NoteBinding("n_1", "s_1", "u_doc", kek_version=1, version=1)
TEXT = "Ann spoke about her sister for the first time. 🙂"


def flip(data: bytes, at: int = 0) -> bytes:
    return data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :]


def test_a_note_round_trips_and_each_seal_uses_a_fresh_nonce() -> None:
    key = new_data_key()
    first, second = seal(key, TEXT, BINDING), seal(key, TEXT, BINDING)
    assert first.nonce != second.nonce and first.ciphertext != second.ciphertext
    assert len(first.nonce) == 12
    assert TEXT.encode() not in first.ciphertext
    assert open_sealed(key, first, BINDING) == TEXT


@pytest.mark.parametrize(
    "tamper",
    [
        lambda s, b: (replace(s, ciphertext=flip(s.ciphertext)), b),
        lambda s, b: (replace(s, ciphertext=flip(s.ciphertext, len(s.ciphertext) - 1)), b),
        lambda s, b: (replace(s, nonce=flip(s.nonce)), b),
        lambda s, b: (s, replace(b, note_id="n_2")),  # copied to another note's row
        lambda s, b: (s, replace(b, session_id="s_2")),  # or another session's
        lambda s, b: (s, replace(b, author="u_co")),  # or claimed by another author
        lambda s, b: (s, replace(b, kek_version=2)),
        lambda s, b: (s, replace(b, version=2)),  # or another version of the same note
        lambda s, b: (replace(s, ciphertext=s.ciphertext[:-1]), b),
        lambda s, b: (Sealed(b"", b""), b),
    ],
    ids=[
        "ciphertext",
        "tag",
        "nonce",
        "note",
        "session",
        "author",
        "key-version",
        "note-version",
        "truncated",
        "empty",
    ],
)
def test_any_change_fails_closed(tamper: object) -> None:
    key = new_data_key()
    sealed = seal(key, TEXT, BINDING)
    changed, binding = tamper(sealed, BINDING)  # type: ignore[operator]
    with pytest.raises(DecryptionFailed) as failure:
        open_sealed(key, changed, binding)
    assert TEXT not in str(failure.value)


def test_a_note_does_not_open_with_another_sessions_key() -> None:
    sealed = seal(new_data_key(), TEXT, BINDING)
    with pytest.raises(DecryptionFailed):
        open_sealed(new_data_key(), sealed, BINDING)


def test_data_keys_wrap_unwrap_and_rewrap_to_a_new_version() -> None:
    key = new_data_key()
    wrapped = wrap(key, KEK1, "s_1")
    assert key not in wrapped.ciphertext and wrapped.kek_version == 1
    assert unwrap(wrapped, KEK1, "s_1") == key
    rotated = rewrap(wrapped, KEK1, KEK2, "s_1")
    assert rotated.kek_version == 2 and unwrap(rotated, KEK2, "s_1") == key
    # Rewrapping twice (a rotation resumed after a crash) is harmless.
    assert unwrap(rewrap(rotated, KEK2, KEK2, "s_1"), KEK2, "s_1") == key


@pytest.mark.parametrize(
    ("kek", "session"),
    [(KEK2, "s_1"), (KeyEncryptionKey(1, os.urandom(32)), "s_1"), (KEK1, "s_2")],
    ids=["other-version", "other-key", "other-session"],
)
def test_a_data_key_unwraps_only_with_its_kek_for_its_session(
    kek: KeyEncryptionKey, session: str
) -> None:
    wrapped = wrap(new_data_key(), KEK1, "s_1")
    with pytest.raises(DecryptionFailed):
        unwrap(wrapped, kek, session)
    with pytest.raises(DecryptionFailed):
        unwrap(replace(wrapped, ciphertext=flip(wrapped.ciphertext)), KEK1, "s_1")


def test_keys_are_checked_and_never_shown() -> None:
    with pytest.raises(ValueError):
        KeyEncryptionKey(1, b"short")
    with pytest.raises(ValueError):
        KeyEncryptionKey(0, os.urandom(32))
    assert KEK1.secret.hex() not in repr(KEK1)
