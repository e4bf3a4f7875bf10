"""Password hashing (argon2id) off the event loop, and the password policy.

argon2 is deliberately slow (tens to hundreds of milliseconds, 64 MiB by default): run on
the event loop it would freeze every room's media for that long. :class:`PasswordHasher`
runs it on a small thread pool instead (argon2-cffi releases the GIL while it works) and
bounds the backlog, so a burst of sign-ins is refused with :class:`Busy` rather than
queued without end.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from telecircle.errors import TelecircleError

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_PASSWORD_LENGTH = 256
DEFAULT_WORKERS = 2
DEFAULT_MAX_PENDING = 16


class Busy(TelecircleError):
    """Too many password hashes are already waiting: the caller should retry shortly."""

    code = "busy"
    http_status = 503

    def __init__(self) -> None:
        super().__init__("The server is busy; please try again in a moment.")


class WeakPassword(TelecircleError):
    """A new password breaks the policy. The message says which rule, never the password."""

    code = "weak_password"
    http_status = 422


def check_password(password: str, *, min_length: int, username: str) -> None:
    """Accept ``password`` as a new password or raise :class:`WeakPassword`.

    Rules: at least ``min_length`` characters, at most 256, and not the username
    (compared case-insensitively, ignoring surrounding spaces).
    """
    if len(password) < min_length:
        raise WeakPassword(f"Choose a password of at least {min_length} characters.")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise WeakPassword(f"Choose a password of at most {MAX_PASSWORD_LENGTH} characters.")
    if password.strip().casefold() == username.strip().casefold():
        raise WeakPassword("Your password must not be your username.")


class PasswordHasher:
    """argon2id hashing and verification on a bounded thread pool.

    The parameters default to argon2-cffi's (RFC 9106 low-memory profile: t=3, 64 MiB,
    p=4); tests pass cheaper ones. At most ``max_pending`` operations may be queued or
    running at once; one more raises :class:`Busy` immediately. ``close()`` is
    idempotent; after it every operation raises RuntimeError.
    """

    def __init__(
        self,
        *,
        time_cost: int = argon2.DEFAULT_TIME_COST,
        memory_cost: int = argon2.DEFAULT_MEMORY_COST,
        parallelism: int = argon2.DEFAULT_PARALLELISM,
        workers: int = DEFAULT_WORKERS,
        max_pending: int = DEFAULT_MAX_PENDING,
    ) -> None:
        if workers < 1 or max_pending < 1:
            raise ValueError("workers and max_pending must be at least 1")
        self._argon2 = argon2.PasswordHasher(
            time_cost=time_cost,
            memory_cost=memory_cost,
            parallelism=parallelism,
            type=argon2.Type.ID,
        )
        self._dummy_hash = _unmatchable_hash(self._argon2)
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="argon2")
        self._max_pending = max_pending
        # Counted from the event loop (submit) and from worker threads (done callbacks).
        self._lock = threading.Lock()
        self._pending = 0
        self._closed = False

    @property
    def pending(self) -> int:
        """Operations queued or running right now."""
        with self._lock:
            return self._pending

    async def hash(self, password: str) -> str:
        """The argon2id hash of ``password`` (PHC string format, random salt)."""
        return await self._run(self._argon2.hash, password)

    async def verify(self, stored_hash: str, password: str) -> bool:
        """True if ``password`` matches ``stored_hash``; False otherwise.

        Never raises for a wrong password. A malformed stored hash also gives False
        (and a warning in the log), so it can never let anyone in.
        """
        return await self._run(self._check, stored_hash, password)

    async def verify_dummy(self, password: str) -> None:
        """Spend what verifying a real hash costs, and learn nothing.

        For sign-ins with an unknown username (or an account without a password), so
        the response time does not reveal which usernames exist.
        """
        await self._run(self._check, self._dummy_hash, password)

    def needs_rehash(self, stored_hash: str) -> bool:
        """True if ``stored_hash`` was made with other parameters than this hasher's.

        Cheap (parses the hash only); call it after a successful :meth:`verify`.
        """
        try:
            return self._argon2.check_needs_rehash(stored_hash)
        except InvalidHashError:
            return True

    def close(self) -> None:
        """Stop the worker threads; queued operations are cancelled. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _check(self, stored_hash: str, password: str) -> bool:
        try:
            return self._argon2.verify(stored_hash, password)
        except VerifyMismatchError:
            return False
        except (InvalidHashError, VerificationError):
            log.warning("password hash could not be checked", extra={"event": "bad_hash"})
            return False

    async def _run(self, work: Callable[..., T], *args: str) -> T:
        with self._lock:
            if self._closed:
                raise RuntimeError("password hasher is closed")
            if self._pending >= self._max_pending:
                raise Busy()
            self._pending += 1
        try:
            future: Future[T] = self._executor.submit(work, *args)
        except BaseException:
            self._release(None)
            raise
        # Released when the thread finishes, not when the awaiting task is cancelled:
        # a cancelled caller does not stop argon2, so its work still counts.
        future.add_done_callback(self._release)
        return await asyncio.wrap_future(future)

    def _release(self, _future: Future[T] | None) -> None:
        with self._lock:
            self._pending -= 1


def _unmatchable_hash(hasher: argon2.PasswordHasher) -> str:
    """A well-formed hash with ``hasher``'s parameters that no password matches.

    Verifying against it costs exactly what a real verification costs (argon2 computes
    the hash from the parameters in the string) without computing anything now.
    """

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode("ascii").rstrip("=")

    salt = b64(secrets.token_bytes(hasher.salt_len))
    digest = b64(secrets.token_bytes(hasher.hash_len))
    return (
        f"$argon2id$v=19$m={hasher.memory_cost},t={hasher.time_cost},"
        f"p={hasher.parallelism}${salt}${digest}"
    )
