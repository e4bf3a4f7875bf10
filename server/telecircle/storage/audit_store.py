"""The audit log store: appending to the hash chain, paging through it, reading it whole.

Appends are serialised by the database itself, so several tasks and several processes
can append at once without forking the chain: on SQLite every write transaction starts
with ``BEGIN IMMEDIATE``; on PostgreSQL an append locks the head row (``FOR UPDATE``).

An append never signs over a chain it has not checked: when the stored head does not
authenticate under the key or does not match the last entry (tampering, or a different
key), the new entry is still chained and stored, but the new head gets a MAC that cannot
verify, so ``telecircle audit verify`` keeps reporting the break instead of a later append
hiding it.

Times in and out are UNIX epoch seconds (microsecond precision). Records are frozen
dataclasses of plain values; no ORM object leaves this module.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from telecircle.domain.audit_chain import (
    GENESIS_HASH,
    AuditEntry,
    ChainHead,
    DetailValue,
    canonical_details,
    chain_entry,
    head_is_authentic,
    head_mac,
)
from telecircle.storage.codec import from_utc, to_utc
from telecircle.storage.database import Database
from telecircle.storage.tables import AuditEntryRow, AuditHeadRow

log = logging.getLogger(__name__)

HEAD_ID = 1
BATCH_SIZE = 1000
MAX_PAGE_SIZE = 1000
# Written as the head's MAC when the chain being extended did not check out. It is not
# hex, so it can never be a valid MAC.
BROKEN_MAC = "x" * 64
_UNREADABLE = {"unreadable": "the stored details are not a JSON object"}


@dataclass(frozen=True, slots=True)
class AuditPage:
    """One page of entries and how many entries match the filter in all."""

    entries: tuple[AuditEntry, ...]
    total: int


async def append_entry(
    db: Database,
    *,
    at: float,
    actor: str | None,
    action: str,
    target: str | None,
    address: str | None,
    details: Mapping[str, DetailValue],
    key: bytes,
) -> AuditEntry:
    """Append one entry at the end of the chain and move the head to it, atomically.

    ``at`` is kept to the microsecond (the entry returned carries the stored value).
    ``key`` is the audit-head HMAC key. Raises ValueError for details that are not
    JSON-safe scalars or a time that is not finite; nothing is stored then.
    """
    details_json = canonical_details(details)
    at = from_utc(to_utc(at))  # the hash must cover exactly what the database keeps
    async with db.write() as conn:
        head = await _lock_head(conn, db.dialect)
        last = (
            await conn.execute(
                select(AuditEntryRow.seq, AuditEntryRow.hash)
                .order_by(AuditEntryRow.seq.desc())
                .limit(1)
            )
        ).one_or_none()
        last_seq, prev_hash = (0, GENESIS_HASH) if last is None else (last.seq, last.hash)
        fresh = last is None and head.seq == 0 and head.hash == GENESIS_HASH
        sound = fresh or (
            head_is_authentic(key, head) and (head.seq, head.hash) == (last_seq, prev_hash)
        )
        # max(): after tampering the head may be ahead of the entries; never reuse a seq.
        seq = max(last_seq, head.seq) + 1
        entry = chain_entry(prev_hash, seq, at, actor, action, target, address, details)
        await conn.execute(
            insert(AuditEntryRow).values(
                seq=seq,
                at=to_utc(at),
                actor=actor,
                action=action,
                target=target,
                address=address,
                details=details_json,
                prev_hash=prev_hash,
                hash=entry.hash,
            )
        )
        mac = head_mac(key, seq, entry.hash) if sound else BROKEN_MAC
        await conn.execute(
            update(AuditHeadRow)
            .where(AuditHeadRow.id == HEAD_ID)
            .values(seq=seq, hash=entry.hash, mac=mac)
        )
    if not sound:
        log.warning("audit chain failed its check; head left unauthenticated", extra={"seq": seq})
    return entry


async def read_head(db: Database) -> ChainHead | None:
    """The stored head, or None when nothing was ever appended."""
    async with db.read() as conn:
        return await _head(conn)


async def list_entries(
    db: Database,
    *,
    offset: int,
    limit: int,
    action: str | None = None,
    actor: str | None = None,
    since: float | None = None,
    until: float | None = None,
    newest_first: bool = True,
) -> AuditPage:
    """Entries matching every given filter (``since <= at < until``), paged by seq.

    Raises ValueError for a negative ``offset`` or a ``limit`` outside 1 to 1000.
    """
    if offset < 0 or not 1 <= limit <= MAX_PAGE_SIZE:
        raise ValueError(f"offset must be >= 0 and limit between 1 and {MAX_PAGE_SIZE}")
    where: list[ColumnElement[bool]] = []
    if action is not None:
        where.append(AuditEntryRow.action == action)
    if actor is not None:
        where.append(AuditEntryRow.actor == actor)
    if since is not None:
        where.append(AuditEntryRow.at >= to_utc(since))
    if until is not None:
        where.append(AuditEntryRow.at < to_utc(until))
    order = AuditEntryRow.seq.desc() if newest_first else AuditEntryRow.seq.asc()
    async with db.read() as conn:
        total = (
            await conn.execute(select(func.count()).select_from(AuditEntryRow).where(*where))
        ).scalar_one()
        rows = await conn.execute(
            select(AuditEntryRow).where(*where).order_by(order).offset(offset).limit(limit)
        )
        entries = tuple(_entry(row) for row in rows)
    return AuditPage(entries, int(total))


async def all_entries(
    db: Database, *, batch_size: int = BATCH_SIZE
) -> AsyncGenerator[AuditEntry, None]:
    """Every entry in seq order, read in batches from one consistent snapshot.

    Holds a read transaction until exhausted or closed: a caller that may stop early
    should wrap it in :func:`contextlib.aclosing`.
    """
    async with _snapshot(db) as conn:
        async for entry in _stream(conn, batch_size):
            yield entry


async def scan_chain(
    db: Database, visit: Callable[[AuditEntry], None], *, batch_size: int = BATCH_SIZE
) -> ChainHead | None:
    """Call ``visit`` on every entry in seq order, then return the head: both from one
    consistent snapshot, so appends running meanwhile cannot look like tampering.

    Memory stays bounded by ``batch_size`` however long the log is.
    """
    async with _snapshot(db) as conn:
        head = await _head(conn)
        async for entry in _stream(conn, batch_size):
            visit(entry)
        return head


# -------------------------------------------------------------------------- helpers


async def _lock_head(conn: AsyncConnection, dialect: str) -> ChainHead:
    """The head row, created empty if missing, locked until the transaction ends."""
    empty = {"id": HEAD_ID, "seq": 0, "hash": GENESIS_HASH, "mac": BROKEN_MAC}
    upsert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    # Concurrent first appends on PostgreSQL: the losers' inserts wait for the winner's,
    # then do nothing, and all of them queue on the row lock below.
    await conn.execute(upsert(AuditHeadRow).values(**empty).on_conflict_do_nothing())
    row = (
        await conn.execute(
            select(AuditHeadRow.seq, AuditHeadRow.hash, AuditHeadRow.mac)
            .where(AuditHeadRow.id == HEAD_ID)
            .with_for_update()
        )
    ).one()
    return ChainHead(row.seq, row.hash, row.mac)


async def _head(conn: AsyncConnection) -> ChainHead | None:
    row = (
        await conn.execute(
            select(AuditHeadRow.seq, AuditHeadRow.hash, AuditHeadRow.mac).where(
                AuditHeadRow.id == HEAD_ID
            )
        )
    ).one_or_none()
    return None if row is None else ChainHead(row.seq, row.hash, row.mac)


@asynccontextmanager
async def _snapshot(db: Database) -> AsyncIterator[AsyncConnection]:
    """A read transaction in which every statement sees the same committed state."""
    if db.dialect != "postgresql":
        # A SQLite read transaction in WAL mode already reads one snapshot throughout.
        async with db.read() as conn:
            yield conn
        return
    async with db.engine.connect() as conn:
        await conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        await conn.begin()
        yield conn  # closing the connection rolls the transaction back


async def _stream(conn: AsyncConnection, batch_size: int) -> AsyncIterator[AuditEntry]:
    after = None
    while True:
        query = select(AuditEntryRow).order_by(AuditEntryRow.seq).limit(batch_size)
        if after is not None:
            query = query.where(AuditEntryRow.seq > after)
        rows = (await conn.execute(query)).all()
        for row in rows:
            yield _entry(row)
        if len(rows) < batch_size:
            return
        after = rows[-1].seq


def _entry(row: Any) -> AuditEntry:
    return AuditEntry(
        seq=row.seq,
        at=from_utc(row.at),
        actor=row.actor,
        action=row.action,
        target=row.target,
        address=row.address,
        details=_details(row.details),
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


def _details(text: str) -> Mapping[str, DetailValue]:
    # A verifier must report a damaged entry, not crash on it: unreadable details
    # become a placeholder, which then fails the entry's hash.
    try:
        value = json.loads(text)
    except ValueError:
        return _UNREADABLE
    return value if isinstance(value, dict) else _UNREADABLE
