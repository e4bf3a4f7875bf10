"""Rotating and verifying the key-encryption keys (``telecircle keys rotate|verify``).

Rotation adds a new key-encryption key version and re-wraps every live data key under
it, one compare-and-swap per key; the notes themselves are not touched (their data keys
do not change). It is safe while the server runs (new sessions take the new version as
soon as its file exists, and a save racing a re-wrap keeps the key it read, which is the
same data key) and safe to repeat or to resume after a crash: every run re-wraps
whatever is still under an older version. Old versions stay in the key store — keys
restored from a database backup may still need them — until an administrator retires
them by hand once ``keys verify`` shows them unused.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from telecircle.crypto.envelope import DecryptionFailed, rewrap, unwrap
from telecircle.crypto.key_store import KeyStore, KeyStoreError
from telecircle.services.ports import AuditSink
from telecircle.storage import notes_store
from telecircle.storage.database import Database

KEYS_ROTATED = "keys_rotated"
KEYS_ROTATION_STARTED = "keys_rotation_started"
PAGE = 100
# Pages in a row that re-wrap nothing before rotation gives up (another writer keeps
# changing the same keys; running it again finishes the job).
STALLED_PAGES = 3


class RotationStalled(KeyStoreError):
    code = "rotation_stalled"


@dataclass(frozen=True, slots=True)
class RotationReport:
    version: int
    rewrapped: int


@dataclass(frozen=True, slots=True)
class VerifyReport:
    checked: int
    # Sessions whose data key did not unwrap (with why), in session order.
    failures: tuple[tuple[str, str], ...]
    versions_in_use: tuple[int, ...]
    versions_present: tuple[int, ...]

    @property
    def ok(self) -> bool:
        return not self.failures


async def rotate_keys(db: Database, keys: KeyStore, audit: AuditSink) -> RotationReport:
    """Make a new key-encryption key and re-wrap every live data key under it.

    Raises KeyStoreError (a version in use is missing), DecryptionFailed (a data key
    does not unwrap: run ``keys verify``) or :class:`RotationStalled`.
    """
    new = await asyncio.to_thread(keys.add_version)
    # On the log before any key changes: a rotation cut short is on record too.
    await audit.record(KEYS_ROTATION_STARTED, actor=None, details={"kek_version": new.version})
    rewrapped = stalled = 0
    while True:
        page = await notes_store.live_keys(db, below_version=new.version, limit=PAGE)
        if not page:
            break
        done = 0
        for key in page:
            if key.wrapped is None:
                continue
            replacement = rewrap(key.wrapped, keys.get(key.kek_version), new, key.session_id)
            if await notes_store.replace_wrapped_key(db, key.session_id, key.wrapped, replacement):
                done += 1
        rewrapped += done
        stalled = 0 if done else stalled + 1
        if stalled >= STALLED_PAGES:
            raise RotationStalled(
                "Data keys kept changing while they were re-wrapped; run the rotation again."
            )
    await audit.record(
        KEYS_ROTATED, actor=None, details={"kek_version": new.version, "rewrapped": rewrapped}
    )
    return RotationReport(new.version, rewrapped)


async def verify_keys(db: Database, keys: KeyStore) -> VerifyReport:
    """Unwrap every live data key with the version that wrapped it."""
    failures: list[tuple[str, str]] = []
    in_use: set[int] = set()
    checked, after = 0, ""
    while page := await notes_store.live_keys(db, after=after, limit=PAGE):
        for key in page:
            checked += 1
            in_use.add(key.kek_version)
            if key.wrapped is None:
                continue
            try:
                unwrap(key.wrapped, keys.get(key.kek_version), key.session_id)
            except KeyStoreError:
                failures.append((key.session_id, f"key version {key.kek_version} is missing"))
            except DecryptionFailed:
                failures.append((key.session_id, "does not unwrap (wrong key or altered)"))
        after = page[-1].session_id
    return VerifyReport(checked, tuple(failures), tuple(sorted(in_use)), keys.versions())
