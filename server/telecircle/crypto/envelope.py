"""Envelope encryption of notes (DESIGN §5; issue 6): the cipher work, no storage.

Each session has a random AES-256-GCM *data key*. The data key is stored only wrapped
(encrypted) by a *key-encryption key* (KEK) that lives outside the database and has a
version, so KEKs can be rotated (re-wrap every data key; notes are untouched) and a KMS
can take the KEK's place. Every encryption uses a fresh random 96-bit nonce; the
associated data binds a ciphertext to where it belongs (the note, its session, its
author, the KEK version), so a ciphertext copied to another row, or any changed byte of
nonce, ciphertext or associated data, fails to decrypt. Failures raise
:class:`DecryptionFailed` and never return partial or empty text.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from telecircle.errors import TelecircleError

KEY_BYTES = 32
NONCE_BYTES = 12


class DecryptionFailed(TelecircleError):
    """A ciphertext did not authenticate: wrong key, tampered bytes, or it belongs to
    another row. Never shown as an empty note."""

    code = "decryption_failed"
    http_status = 500


@dataclass(frozen=True, slots=True)
class KeyEncryptionKey:
    """A KEK and its version. Its repr never shows the key."""

    version: int
    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.secret) != KEY_BYTES:
            raise ValueError(f"a key-encryption key is {KEY_BYTES} bytes")
        if self.version < 1:
            raise ValueError("key versions start at 1")


@dataclass(frozen=True, slots=True)
class WrappedKey:
    """A data key as stored: encrypted under KEK ``kek_version``."""

    kek_version: int
    nonce: bytes
    ciphertext: bytes


@dataclass(frozen=True, slots=True)
class Sealed:
    """A note's text as stored."""

    nonce: bytes
    ciphertext: bytes


@dataclass(frozen=True, slots=True)
class NoteBinding:
    """Where a note's ciphertext belongs; all of it is authenticated with the text.

    ``version`` is the note's version, so one version's ciphertext cannot stand in for
    another's; ``kek_version`` is the key-encryption key version the session's data key
    was wrapped under when the text was sealed (it stays with the version: rotation
    re-wraps data keys and leaves sealed notes as they are)."""

    note_id: str
    session_id: str
    author: str
    kek_version: int
    version: int

    def associated_data(self) -> bytes:
        return _join(
            "note",
            self.note_id,
            self.session_id,
            self.author,
            str(self.kek_version),
            str(self.version),
        )


def new_data_key() -> bytes:
    """A fresh random AES-256 data key (for one session)."""
    return AESGCM.generate_key(bit_length=8 * KEY_BYTES)


def wrap(data_key: bytes, kek: KeyEncryptionKey, session_id: str) -> WrappedKey:
    """The data key of ``session_id`` encrypted under ``kek``."""
    nonce = os.urandom(NONCE_BYTES)
    ciphertext = AESGCM(kek.secret).encrypt(nonce, data_key, _wrap_data(session_id, kek.version))
    return WrappedKey(kek.version, nonce, ciphertext)


def unwrap(wrapped: WrappedKey, kek: KeyEncryptionKey, session_id: str) -> bytes:
    """The data key, or DecryptionFailed (wrong KEK or version, another session's key,
    tampered bytes)."""
    if wrapped.kek_version != kek.version:
        raise DecryptionFailed("the data key was wrapped by another key version")
    try:
        key = AESGCM(kek.secret).decrypt(
            wrapped.nonce, wrapped.ciphertext, _wrap_data(session_id, kek.version)
        )
    except (InvalidTag, ValueError):
        raise DecryptionFailed("the data key did not unwrap") from None
    if len(key) != KEY_BYTES:
        raise DecryptionFailed("the data key did not unwrap")
    return key


def rewrap(
    wrapped: WrappedKey, old: KeyEncryptionKey, new: KeyEncryptionKey, session_id: str
) -> WrappedKey:
    """The same data key wrapped under ``new`` (rotation: the notes are untouched)."""
    return wrap(unwrap(wrapped, old, session_id), new, session_id)


def seal(data_key: bytes, text: str, binding: NoteBinding) -> Sealed:
    """Encrypt a note's text with a fresh nonce, bound to ``binding``."""
    nonce = os.urandom(NONCE_BYTES)
    ciphertext = AESGCM(data_key).encrypt(nonce, text.encode("utf-8"), binding.associated_data())
    return Sealed(nonce, ciphertext)


def open_sealed(data_key: bytes, sealed: Sealed, binding: NoteBinding) -> str:
    """The note's text, or DecryptionFailed."""
    try:
        plain = AESGCM(data_key).decrypt(sealed.nonce, sealed.ciphertext, binding.associated_data())
        return plain.decode("utf-8")
    except (InvalidTag, ValueError, UnicodeDecodeError):
        raise DecryptionFailed("the note did not decrypt") from None


def _wrap_data(session_id: str, kek_version: int) -> bytes:
    return _join("data-key", session_id, str(kek_version))


def _join(*parts: str) -> bytes:
    # Length-prefixed, so no two different tuples of parts give the same bytes.
    out = bytearray(b"telecircle:")
    for part in parts:
        raw = part.encode("utf-8")
        out += len(raw).to_bytes(4, "big") + raw
    return bytes(out)
