"""The audit log's hash chain, and checking it.

Entry ``seq`` (1, 2, 3…) carries ``hash`` = SHA-256 over a canonical encoding of all its
fields, including ``prev_hash``: the hash of the entry before it (:data:`GENESIS_HASH`
for the first). Changing, removing, inserting or reordering entries therefore breaks
the chain. The *head* (seq and hash of the last entry) carries an HMAC-SHA256 under a key
kept outside the database, so cutting entries off the end, or rebuilding the whole chain,
shows as well.

What it cannot show: someone who can write to the database can delete every entry *and*
the head, and an empty log without a head looks like a new installation.

Pure: no I/O, no clock. Times are UNIX epoch seconds at microsecond precision (what the
database keeps); they enter the hash as text with six decimals.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import NamedTuple

GENESIS_HASH = "0" * 64
MAX_PROBLEMS = 100  # a checker lists at most this many problems, then says there are more

DetailValue = str | int | float | bool | None
Details = Mapping[str, DetailValue]

_HASH_FORMAT = "telecircle-audit/1"  # names the encoding, so it can change later
_MAC_FORMAT = "telecircle-audit-head/1"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One entry as stored. ``details`` is a read-only copy of what was given."""

    seq: int
    at: float
    actor: str | None
    action: str
    target: str | None
    address: str | None
    details: Details
    prev_hash: str
    hash: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "details", MappingProxyType(dict(self.details)))


class ChainHead(NamedTuple):
    """The head row: the last entry's seq and hash, and the HMAC over both."""

    seq: int
    hash: str
    mac: str


@dataclass(frozen=True, slots=True)
class ChainProblem:
    """One thing wrong with the chain, in plain words. ``seq`` is None for the head."""

    seq: int | None
    problem: str


def canonical_details(details: Details) -> str:
    """``details`` as compact JSON with sorted keys: how the entry stores them.

    Raises ValueError unless every key is a string and every value is a string, int,
    finite float, bool or None.
    """
    for key, value in details.items():
        if not isinstance(key, str):
            raise ValueError("audit detail keys must be strings")
        if value is not None and not isinstance(value, str | int | float):
            raise ValueError("audit detail values must be strings, numbers, booleans or null")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("audit detail numbers must be finite")
    return _json(dict(details))


def entry_hash(
    prev_hash: str,
    seq: int,
    at: float,
    actor: str | None,
    action: str,
    target: str | None,
    address: str | None,
    details: Details,
) -> str:
    """SHA-256 (hex) of the entry's canonical encoding, chained to ``prev_hash``."""
    fields = [_HASH_FORMAT, prev_hash, seq, f"{at:.6f}", actor, action, target, address]
    encoded = _json([*fields, dict(details)])
    return hashlib.sha256(encoded.encode("utf-8")).hexdigest()


def chain_entry(
    prev_hash: str,
    seq: int,
    at: float,
    actor: str | None,
    action: str,
    target: str | None,
    address: str | None,
    details: Details,
) -> AuditEntry:
    """The entry with these fields, its hash computed, chained to ``prev_hash``."""
    digest = entry_hash(prev_hash, seq, at, actor, action, target, address, details)
    return AuditEntry(seq, at, actor, action, target, address, details, prev_hash, digest)


def head_mac(key: bytes, seq: int, head_hash: str) -> str:
    """HMAC-SHA256 (hex) authenticating a head at ``seq`` with ``head_hash``."""
    message = f"{_MAC_FORMAT}:{seq}:{head_hash}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def head_is_authentic(key: bytes, head: tuple[int, str, str]) -> bool:
    """Whether the head's MAC is right for its seq and hash under ``key``."""
    seq, head_hash, mac = head
    expected = head_mac(key, seq, head_hash)
    return hmac.compare_digest(expected.encode(), mac.encode("utf-8", "replace"))


def verify_chain(
    entries: Iterable[AuditEntry], head: tuple[int, str, str] | None, key: bytes
) -> list[ChainProblem]:
    """Every problem with ``entries`` (in seq order) and ``head``; empty if intact."""
    checker = ChainChecker(key)
    for entry in entries:
        checker.add(entry)
    return checker.finish(head)


class ChainChecker:
    """Checks a chain one entry at a time, so a long log never has to be in memory.

    Feed the entries in seq order with :meth:`add`, then call :meth:`finish` once with
    the head. A link that breaks right after a reported problem is taken to follow from
    it and is not reported again. At most :data:`MAX_PROBLEMS` problems are listed.
    """

    def __init__(self, key: bytes, *, max_problems: int = MAX_PROBLEMS) -> None:
        self._key = key
        self._max_problems = max_problems
        self._problems: list[ChainProblem] = []
        self._truncated = False
        self._expected_seq = 1
        self._prev_hash = GENESIS_HASH
        self._prev_reported = False
        self._last: tuple[int, str] | None = None
        self.count = 0

    def add(self, entry: AuditEntry) -> None:
        seq = entry.seq
        self.count += 1
        self._last = (seq, entry.hash)
        reported = self._check(entry)
        self._prev_hash = entry.hash
        self._prev_reported = reported
        self._expected_seq = max(self._expected_seq, seq + 1)

    def finish(self, head: tuple[int, str, str] | None) -> list[ChainProblem]:
        """The problems found, including the head's; empty if the chain is intact."""
        if head is None:
            if self._last is not None:
                self._report(None, f"the head is missing but the log has {self.count} entries")
            return self._result()
        head_seq, head_hash, _ = head
        if not head_is_authentic(self._key, head):
            self._report(
                None,
                "the head's authentication code is wrong "
                "(the head was forged or the key is different)",
            )
        if self._last is None:
            if head_seq != 0:
                self._report(None, f"the log is empty but the head says it has {head_seq} entries")
        elif self._last[0] < head_seq:
            self._report(
                None,
                "the head does not match the last entry (entries were removed from the end)",
            )
        elif self._last[0] > head_seq:
            self._report(
                head_seq + 1,
                f"entries after {head_seq} are not covered by the head "
                "(they were added without the key)",
            )
        elif self._last[1] != head_hash:
            self._report(
                head_seq,
                "the head does not match the last entry (the last entry was replaced)",
            )
        return self._result()

    def _check(self, entry: AuditEntry) -> bool:
        """Report what is wrong with ``entry`` where it stands; whether anything was."""
        seq = entry.seq
        if seq < self._expected_seq:
            return self._report(seq, f"entries out of order at {seq}")
        gap = seq > self._expected_seq
        if gap:
            first, last = self._expected_seq, seq - 1
            missing = f"entry {first} is" if first == last else f"entries {first} to {last} are"
            self._report(first, f"{missing} missing")
        recomputed = entry_hash(
            entry.prev_hash,
            seq,
            entry.at,
            entry.actor,
            entry.action,
            entry.target,
            entry.address,
            entry.details,
        )
        intact = hmac.compare_digest(recomputed.encode(), entry.hash.encode("utf-8", "replace"))
        linked = entry.prev_hash == self._prev_hash
        explained = gap or self._prev_reported
        if not intact and not linked and not explained:
            return self._report(
                seq, f"entries out of order at {seq} (entry {seq} was moved or changed)"
            )
        if not intact:
            return self._report(seq, f"entry {seq} was changed")
        if not linked and not explained:
            return self._report(
                seq,
                f"the chain breaks between entries {seq - 1} and {seq} (an entry was changed, "
                "or entries were removed or inserted)",
            )
        return gap

    def _report(self, seq: int | None, problem: str) -> bool:
        if len(self._problems) < self._max_problems:
            self._problems.append(ChainProblem(seq, problem))
        else:
            self._truncated = True
        return True

    def _result(self) -> list[ChainProblem]:
        if self._truncated:
            shown = len(self._problems)
            return [*self._problems, ChainProblem(None, f"more problems after the first {shown}")]
        return list(self._problems)


def _json(value: object) -> str:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
