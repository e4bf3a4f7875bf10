"""PasswordHasher (real argon2id on its thread pool) and the password policy."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import argon2
import pytest

from telecircle.crypto.passwords import (
    MAX_PASSWORD_LENGTH,
    Busy,
    PasswordHasher,
    WeakPassword,
    check_password,
)

# Cheap parameters: the behaviour under test does not depend on the cost.
CHEAP = {"time_cost": 1, "memory_cost": 8, "parallelism": 1}


@pytest.fixture
def hasher() -> Iterator[PasswordHasher]:
    hasher = PasswordHasher(**CHEAP)
    yield hasher
    hasher.close()


async def test_hash_then_verify(hasher: PasswordHasher) -> None:
    stored = await hasher.hash("correct horse battery")
    assert stored.startswith("$argon2id$")
    assert "correct horse battery" not in stored
    assert await hasher.verify(stored, "correct horse battery") is True
    assert await hasher.verify(stored, "wrong horse battery") is False


async def test_same_password_gets_a_fresh_salt(hasher: PasswordHasher) -> None:
    assert await hasher.hash("same password!") != await hasher.hash("same password!")


async def test_malformed_stored_hash_is_a_mismatch_not_an_error(hasher: PasswordHasher) -> None:
    assert await hasher.verify("not a hash", "anything") is False
    assert await hasher.verify("$argon2id$v=19$m=8,t=1,p=1$broken", "anything") is False


async def test_verify_dummy_costs_a_verification_and_matches_nothing(
    hasher: PasswordHasher,
) -> None:
    await hasher.verify_dummy("whatever")
    await hasher.verify_dummy("")
    # The dummy hash carries this hasher's own parameters, so it costs the same.
    dummy = hasher._dummy_hash
    parameters = argon2.extract_parameters(dummy)
    assert (parameters.time_cost, parameters.memory_cost, parameters.parallelism) == (1, 8, 1)
    assert parameters.type is argon2.Type.ID


async def test_needs_rehash_when_parameters_change(hasher: PasswordHasher) -> None:
    stored = await hasher.hash("a password here")
    assert not hasher.needs_rehash(stored)
    stronger = PasswordHasher(time_cost=2, memory_cost=16, parallelism=1)
    try:
        assert stronger.needs_rehash(stored)
        assert await stronger.verify(stored, "a password here")
    finally:
        stronger.close()
    assert hasher.needs_rehash("garbage")


async def test_too_many_pending_raises_busy() -> None:
    # One worker doing real-cost hashes: the extra calls are refused at once, before
    # the first hash (tens of milliseconds) can finish.
    hasher = PasswordHasher(workers=1, max_pending=2)
    try:
        results = await asyncio.gather(
            *(hasher.hash(f"password {i}") for i in range(5)), return_exceptions=True
        )
        busy = [r for r in results if isinstance(r, Busy)]
        hashes = [r for r in results if isinstance(r, str)]
        assert len(hashes) == 2
        assert len(busy) == 3
        assert busy[0].code == "busy"
        assert busy[0].http_status == 503
        assert busy[0].message == "The server is busy; please try again in a moment."
        assert hasher.pending == 0
        # The backlog drained: new work is accepted again.
        assert await hasher.verify(hashes[0], "password 0")
    finally:
        hasher.close()


async def test_cancelled_caller_keeps_its_slot_until_the_thread_finishes() -> None:
    hasher = PasswordHasher(workers=1, max_pending=1)
    try:
        task = asyncio.create_task(hasher.hash("slow one here"))
        await asyncio.sleep(0)
        assert hasher.pending == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The argon2 call cannot be interrupted; until it ends the pool stays full.
        assert hasher.pending == 1
        with pytest.raises(Busy):
            await hasher.hash("another one")
        await asyncio.wait_for(_drained(hasher), timeout=30)
        assert await hasher.hash("accepted again")
    finally:
        hasher.close()


async def _drained(hasher: PasswordHasher) -> None:
    while hasher.pending:
        await asyncio.sleep(0.01)


async def test_close_is_idempotent_and_refuses_later_work() -> None:
    hasher = PasswordHasher(**CHEAP)
    hasher.close()
    hasher.close()
    with pytest.raises(RuntimeError):
        await hasher.hash("too late now")


def test_constructor_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        PasswordHasher(workers=0)
    with pytest.raises(ValueError):
        PasswordHasher(max_pending=0)


# ---- policy -------------------------------------------------------------------------


def test_policy_accepts_a_good_password() -> None:
    check_password("a long enough passphrase", min_length=12, username="alice")


@pytest.mark.parametrize(
    ("password", "fragment"),
    [
        ("short", "at least 12 characters"),
        ("x" * (MAX_PASSWORD_LENGTH + 1), f"at most {MAX_PASSWORD_LENGTH} characters"),
        ("AliceTherapist", "must not be your username"),
        (" alicetherapist ", "must not be your username"),
    ],
)
def test_policy_refusals_say_why_without_echoing(password: str, fragment: str) -> None:
    with pytest.raises(WeakPassword) as caught:
        check_password(password, min_length=12, username="alicetherapist")
    assert caught.value.code == "weak_password"
    assert caught.value.http_status == 422
    assert fragment in caught.value.message
    assert password.strip() not in caught.value.message


def test_policy_boundaries() -> None:
    check_password("x" * 12, min_length=12, username="alice")
    check_password("x" * MAX_PASSWORD_LENGTH, min_length=12, username="alice")
    with pytest.raises(WeakPassword):
        check_password("x" * 11, min_length=12, username="alice")
