"""The audit log on a real database: appends chain, pages filter, tampering is found."""

from __future__ import annotations

import asyncio
from contextlib import aclosing

import pytest
from sqlalchemy import text

from telecircle.domain.audit_chain import GENESIS_HASH, AuditEntry, ChainProblem, verify_chain
from telecircle.services.audit import AuditAction, AuditLog
from telecircle.storage import audit_store
from telecircle.storage.database import Database, open_database

KEY = b"a" * 32
T0 = 1_764_000_000.0


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.value = now

    def now(self) -> float:
        self.value += 1.0
        return self.value


async def append(db: Database, n: int, *, at: float | None = None, **fields: object) -> AuditEntry:
    values: dict[str, object] = {
        "actor": f"u_{n % 3}",
        "action": "login" if n % 2 else "admitted",
        "target": f"r_{n}",
        "address": "192.0.2.1",
        "details": {"n": n},
        **fields,
    }
    return await audit_store.append_entry(
        db,
        at=T0 + n if at is None else at,
        key=KEY,
        **values,  # type: ignore[arg-type]
    )


async def verify(db: Database, key: bytes = KEY) -> list[str]:
    entries: list[AuditEntry] = []
    head = await audit_store.scan_chain(db, entries.append, batch_size=3)
    return [p.problem for p in verify_chain(entries, head, key)]


async def tamper(db: Database, *statements: str) -> None:
    async with db.write() as conn:
        for statement in statements:
            await conn.execute(text(statement))


# ---------------------------------------------------------------------------- append


async def test_appends_chain_from_genesis_and_move_the_head(database: Database) -> None:
    assert await audit_store.read_head(database) is None
    first = await append(database, 1)
    second = await append(database, 2, target=None, address=None, details={})
    assert (first.seq, first.prev_hash) == (1, GENESIS_HASH)
    assert (second.seq, second.prev_hash) == (2, first.hash)
    head = await audit_store.read_head(database)
    assert head is not None
    assert (head.seq, head.hash) == (2, second.hash)
    assert await verify(database) == []
    stored = [e async for e in audit_store.all_entries(database)]
    assert stored == [first, second]


@pytest.mark.parametrize(
    "moment", [T0 + 0.1234565, T0 + 0.9999995, 0.000001, 1e-7, T0 + 1 / 3, 4_102_444_800.999999]
)
async def test_awkward_times_survive_the_round_trip_and_still_verify(
    database: Database, moment: float
) -> None:
    entry = await append(database, 1, at=moment)
    assert abs(entry.at - moment) <= 1e-6
    (stored,) = [e async for e in audit_store.all_entries(database)]
    assert stored == entry
    assert f"{stored.at:.6f}" == f"{entry.at:.6f}"
    assert await verify(database) == []


async def test_bad_details_store_nothing(database: Database) -> None:
    with pytest.raises(ValueError):
        await append(database, 1, details={"x": float("inf")})
    assert await audit_store.read_head(database) is None
    assert (await audit_store.list_entries(database, offset=0, limit=10)).total == 0


async def test_concurrent_appends_never_fork_the_chain(database: Database) -> None:
    entries = await asyncio.gather(*(append(database, n) for n in range(1, 51)))
    assert sorted(e.seq for e in entries) == list(range(1, 51))
    assert await verify(database) == []


async def test_appends_from_separate_engines_never_fork_the_chain(
    database: Database, db_url: str
) -> None:
    # Each engine has its own connections, as separate server processes would.
    others = [await open_database(db_url) for _ in range(3)]
    try:
        await asyncio.gather(
            *(append(db, n) for n in range(1, 31) for db in [others[n % 3]]),
            *(append(database, n) for n in range(31, 41)),
        )
    finally:
        for db in others:
            await db.close()
    head = await audit_store.read_head(database)
    assert head is not None and head.seq == 40
    assert await verify(database) == []


async def test_verifying_while_others_append_sees_a_consistent_chain(
    database: Database, db_url: str
) -> None:
    writer = await open_database(db_url)
    try:
        await append(writer, 1)

        async def keep_appending() -> None:
            for n in range(2, 41):
                await append(writer, n)

        async def keep_verifying() -> list[list[str]]:
            results = []
            for _ in range(15):
                results.append(await verify(database))
                await asyncio.sleep(0)
            return results

        _, results = await asyncio.gather(keep_appending(), keep_verifying())
    finally:
        await writer.close()
    assert all(found == [] for found in results)


# ---------------------------------------------------------------------------- paging


async def test_pages_filter_and_count(database: Database) -> None:
    for n in range(1, 11):
        await append(database, n)
    page = await audit_store.list_entries(database, offset=0, limit=3)
    assert [e.seq for e in page.entries] == [10, 9, 8]
    assert page.total == 10
    page = await audit_store.list_entries(database, offset=3, limit=3, newest_first=False)
    assert [e.seq for e in page.entries] == [4, 5, 6]
    logins = await audit_store.list_entries(database, offset=0, limit=100, action="login")
    assert [e.seq for e in logins.entries] == [9, 7, 5, 3, 1]
    assert logins.total == 5
    mine = await audit_store.list_entries(database, offset=1, limit=1, action="login", actor="u_1")
    assert [e.seq for e in mine.entries] == [1]  # u_1 logins: 7 and 1
    assert mine.total == 2
    window = await audit_store.list_entries(
        database, offset=0, limit=100, since=T0 + 3, until=T0 + 6, newest_first=False
    )
    assert [e.seq for e in window.entries] == [3, 4, 5]
    assert window.entries[0].details == {"n": 3}
    with pytest.raises(ValueError):
        await audit_store.list_entries(database, offset=-1, limit=10)
    with pytest.raises(ValueError):
        await audit_store.list_entries(database, offset=0, limit=0)


async def test_all_entries_streams_in_batches_and_can_stop_early(database: Database) -> None:
    for n in range(1, 8):
        await append(database, n)
    seen = [e.seq async for e in audit_store.all_entries(database, batch_size=2)]
    assert seen == list(range(1, 8))
    async with aclosing(audit_store.all_entries(database, batch_size=2)) as stream:
        async for entry in stream:
            assert entry.seq == 1
            break


# -------------------------------------------------------------------------- tampering


async def test_changed_details_are_found(database: Database) -> None:
    for n in range(1, 8):
        await append(database, n)
    await tamper(database, """UPDATE audit_log SET details = '{"n": 99}' WHERE seq = 4""")
    assert await verify(database) == ["entry 4 was changed"]


async def test_unreadable_details_are_reported_not_fatal(database: Database) -> None:
    for n in range(1, 4):
        await append(database, n)
    await tamper(database, "UPDATE audit_log SET details = 'garbage' WHERE seq = 2")
    assert await verify(database) == ["entry 2 was changed"]


async def test_a_deleted_middle_entry_is_found(database: Database) -> None:
    for n in range(1, 8):
        await append(database, n)
    await tamper(database, "DELETE FROM audit_log WHERE seq = 5")
    assert await verify(database) == ["entry 5 is missing"]


async def test_a_deleted_last_entry_is_found(database: Database) -> None:
    for n in range(1, 8):
        await append(database, n)
    await tamper(database, "DELETE FROM audit_log WHERE seq = 7")
    assert await verify(database) == [
        "the head does not match the last entry (entries were removed from the end)"
    ]


async def test_swapped_entries_are_found(database: Database) -> None:
    for n in range(1, 8):
        await append(database, n)
    await tamper(
        database,
        "UPDATE audit_log SET seq = -1 WHERE seq = 2",
        "UPDATE audit_log SET seq = 2 WHERE seq = 5",
        "UPDATE audit_log SET seq = 5 WHERE seq = -1",
    )
    found = await verify(database)
    assert [p.split(" (")[0] for p in found] == [
        "entries out of order at 2",
        "entries out of order at 5",
    ]


async def test_a_forged_head_or_another_key_is_found(database: Database) -> None:
    for n in range(1, 4):
        await append(database, n)
    assert await verify(database, key=b"b" * 32) == [
        "the head's authentication code is wrong (the head was forged or the key is different)"
    ]
    await tamper(database, "DELETE FROM audit_log WHERE seq = 3", "UPDATE audit_head SET seq = 2")
    assert "the head's authentication code is wrong" in (await verify(database))[0]


async def test_appending_never_hides_earlier_tampering(database: Database) -> None:
    for n in range(1, 6):
        await append(database, n)
    await tamper(database, "DELETE FROM audit_log WHERE seq = 5")
    await append(database, 6)  # must not sign over the truncated chain
    head = await audit_store.read_head(database)
    assert head is not None and (head.seq, head.mac) == (6, audit_store.BROKEN_MAC)
    found = await verify(database)
    assert "entry 5 is missing" in found
    assert any("authentication code is wrong" in problem for problem in found)


async def test_a_deleted_head_is_found_and_not_recreated_as_valid(database: Database) -> None:
    for n in range(1, 4):
        await append(database, n)
    await tamper(database, "DELETE FROM audit_head")
    assert await verify(database) == ["the head is missing but the log has 3 entries"]
    await append(database, 4)
    assert any("authentication code is wrong" in problem for problem in await verify(database))


# ---------------------------------------------------------------------------- service


async def test_audit_log_records_with_the_clock_and_verifies(database: Database) -> None:
    audit = AuditLog(database, KEY, FakeClock())
    entries = await asyncio.gather(
        *(
            audit.record(AuditAction.LOGIN_FAILED, actor=None, address="198.51.100.9" * 10)
            for _ in range(20)
        )
    )
    assert sorted(e.seq for e in entries) == list(range(1, 21))
    first = entries[0]
    assert first.action == "login_failed"
    assert first.address is not None and len(first.address) == 64
    admitted = await audit.record(
        "admitted", actor="u_1", target="p_1", details={"room": "r_1", "waited_s": 12.5}
    )
    assert admitted.at == T0 + 21
    page = await audit.page(limit=5, action=AuditAction.ADMITTED)
    assert (page.total, page.entries) == (1, (admitted,))
    assert await audit.verify() == []
    await tamper(database, "UPDATE audit_log SET actor = 'u_2' WHERE seq = 21")
    assert await audit.verify() == [ChainProblem(21, "entry 21 was changed")]


@pytest.mark.parametrize(
    ("action", "fields"),
    [
        ("not_an_action", {}),
        ("login", {"actor": "u" * 129}),
        ("login", {"target": "t" * 129}),
        ("login", {"details": {"blob": "x" * 4100}}),
        ("login", {"details": {"nested": [1, 2]}}),
    ],
)
async def test_audit_log_refuses_bad_records(
    database: Database, action: str, fields: dict[str, object]
) -> None:
    audit = AuditLog(database, KEY, FakeClock())
    with pytest.raises(ValueError):
        await audit.record(action, **{"actor": "u_1", **fields})  # type: ignore[arg-type]
    assert (await audit.page()).total == 0
