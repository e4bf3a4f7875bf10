"""The audit hash chain: an intact chain verifies; every kind of tampering is found."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from telecircle.domain.audit_chain import (
    GENESIS_HASH,
    AuditEntry,
    ChainChecker,
    ChainHead,
    ChainProblem,
    canonical_details,
    chain_entry,
    entry_hash,
    head_mac,
    verify_chain,
)

KEY = b"k" * 32
T0 = 1_764_000_000.0


def build_chain(count: int, start: float = T0) -> list[AuditEntry]:
    entries: list[AuditEntry] = []
    previous = GENESIS_HASH
    for seq in range(1, count + 1):
        entry = chain_entry(
            previous,
            seq,
            start + seq * 1.25,
            f"u_{seq % 3}",
            "login" if seq % 2 else "admitted",
            None if seq % 4 else f"r_{seq}",
            "192.0.2.7",
            {"n": seq, "ok": seq % 2 == 0, "code": "c"},
        )
        entries.append(entry)
        previous = entry.hash
    return entries


def head_of(entries: list[AuditEntry], key: bytes = KEY) -> ChainHead:
    last = entries[-1]
    return ChainHead(last.seq, last.hash, head_mac(key, last.seq, last.hash))


def problems(entries: list[AuditEntry], head: ChainHead | None) -> list[str]:
    return [p.problem for p in verify_chain(entries, head, KEY)]


def test_an_intact_chain_and_an_empty_log_verify() -> None:
    entries = build_chain(10)
    assert verify_chain(entries, head_of(entries), KEY) == []
    assert verify_chain([], None, KEY) == []


def test_hash_covers_every_field_and_time_to_the_microsecond() -> None:
    base: dict[str, Any] = {
        "prev_hash": GENESIS_HASH,
        "seq": 1,
        "at": T0 + 0.000001,
        "actor": "u_1",
        "action": "login",
        "target": None,
        "address": None,
        "details": {"a": 1},
    }
    digest = entry_hash(**base)
    assert len(digest) == 64
    changes = {
        "prev_hash": "1" * 64,
        "seq": 2,
        "at": T0 + 0.000002,
        "actor": None,
        "action": "logout",
        "target": "",
        "address": "",
        "details": {"a": True},
    }
    for name, value in changes.items():
        assert entry_hash(**{**base, name: value}) != digest, name
    # The same microsecond, however the float came about, is the same hash.
    assert entry_hash(**{**base, "at": T0 + 0.0000010000001}) == digest


def test_a_changed_entry_is_named() -> None:
    entries = build_chain(8)
    head = head_of(entries)
    entries[4] = dataclasses.replace(entries[4], details={"n": 999, "ok": True, "code": "c"})
    assert problems(entries, head) == ["entry 5 was changed"]


def test_a_removed_middle_entry_is_named() -> None:
    entries = build_chain(8)
    head = head_of(entries)
    del entries[4]
    assert problems(entries, head) == ["entry 5 is missing"]
    del entries[0:2]
    assert problems(entries, head)[0] == "entries 1 to 2 are missing"


def test_swapped_entries_are_out_of_order() -> None:
    entries = build_chain(8)
    head = head_of(entries)
    # As if someone exchanged the seq values of rows 3 and 6 in the database.
    third, sixth = entries[2], entries[5]
    entries[2] = dataclasses.replace(sixth, seq=3)
    entries[5] = dataclasses.replace(third, seq=6)
    assert [p.seq for p in verify_chain(entries, head, KEY)] == [3, 6]
    assert problems(entries, head)[0].startswith("entries out of order at 3")
    # And as a list handed over in the wrong order.
    entries = build_chain(8)
    entries[3], entries[4] = entries[4], entries[3]
    assert "entries out of order at 4" in problems(entries, head)


def test_an_entry_rewritten_with_a_fresh_hash_breaks_the_next_link() -> None:
    entries = build_chain(6)
    head = head_of(entries)
    old = entries[2]
    entries[2] = chain_entry(old.prev_hash, 3, old.at, "u_x", old.action, None, None, {})
    found = problems(entries, head)
    assert found == [
        "the chain breaks between entries 3 and 4 (an entry was changed, "
        "or entries were removed or inserted)"
    ]


def test_a_removed_tail_shows_at_the_head() -> None:
    entries = build_chain(8)
    head = head_of(entries)
    assert problems(entries[:6], head) == [
        "the head does not match the last entry (entries were removed from the end)"
    ]


def test_a_forged_head_is_found() -> None:
    entries = build_chain(8)
    forged = head_of(entries[:6], key=b"wrong key")
    found = problems(entries[:6], forged)
    assert found == [
        "the head's authentication code is wrong (the head was forged or the key is different)"
    ]
    # A verifier with a different key sees the same.
    assert verify_chain(entries, head_of(entries), b"other" * 8) != []


def test_an_empty_log_with_a_head_and_entries_without_one() -> None:
    entries = build_chain(3)
    assert problems([], head_of(entries)) == ["the log is empty but the head says it has 3 entries"]
    assert problems(entries, None) == ["the head is missing but the log has 3 entries"]


def test_entries_beyond_the_head_are_not_covered() -> None:
    entries = build_chain(5)
    assert problems(entries, head_of(entries[:4])) == [
        "entries after 4 are not covered by the head (they were added without the key)"
    ]


def test_a_replaced_last_entry_with_a_valid_hash_shows_at_the_head() -> None:
    entries = build_chain(4)
    head = head_of(entries)
    last = entries[-1]
    entries[-1] = chain_entry(last.prev_hash, 4, last.at, None, "logout", None, None, {})
    assert problems(entries, head) == [
        "the head does not match the last entry (the last entry was replaced)"
    ]


def test_problem_list_is_capped() -> None:
    entries = [dataclasses.replace(e, actor="x") for e in build_chain(20)]
    checker = ChainChecker(KEY, max_problems=5)
    for entry in entries:
        checker.add(entry)
    found = checker.finish(head_of(entries))
    assert len(found) == 6
    assert found[-1] == ChainProblem(None, "more problems after the first 5")


def test_details_must_be_json_scalars() -> None:
    assert canonical_details({"b": 1, "a": "é"}) == '{"a":"é","b":1}'
    for bad in ({"a": [1]}, {"a": float("nan")}, {1: "x"}, {"a": {"b": 1}}):
        with pytest.raises(ValueError):
            canonical_details(bad)  # type: ignore[arg-type]


def test_entries_are_read_only() -> None:
    details = {"n": 1}
    entry = chain_entry(GENESIS_HASH, 1, T0, None, "login", None, None, details)
    details["n"] = 2
    assert entry.details == {"n": 1}
    with pytest.raises(TypeError):
        entry.details["n"] = 3  # type: ignore[index]


# ----------------------------------------------------------------- property: tampering

FIELD_CHANGES = st.sampled_from(
    ["seq", "at", "actor", "action", "target", "address", "details", "prev_hash", "hash"]
)


def changed(entry: AuditEntry, name: str, draw: Any) -> AuditEntry:
    value: Any
    if name == "seq":
        value = entry.seq + draw(st.integers(1, 5)) * draw(st.sampled_from([-1, 1]))
    elif name == "at":
        value = entry.at + draw(st.integers(1, 10**6)) / 1e6 * draw(st.sampled_from([-1, 1]))
    elif name in ("prev_hash", "hash"):
        value = draw(st.binary(min_size=32, max_size=32)).hex()
    elif name == "details":
        value = draw(st.dictionaries(st.text(max_size=3), st.integers() | st.none(), max_size=3))
    else:
        value = draw(st.none() | st.text(max_size=8))
    if value == getattr(entry, name) and type(value) is type(getattr(entry, name)):
        value = None if getattr(entry, name) is not None else "changed"
    return dataclasses.replace(entry, **{name: value})


@given(st.integers(1, 12), st.data())
def test_any_single_change_removal_or_swap_is_detected(count: int, data: st.DataObject) -> None:
    entries = build_chain(count, start=data.draw(st.integers(0, 2 * 10**9)) + 0.5)
    head = head_of(entries)
    assert verify_chain(entries, head, KEY) == []
    kinds = ["change", "remove"] + (["swap"] if count > 1 else [])
    kind = data.draw(st.sampled_from(kinds))
    tampered = list(entries)
    if kind == "change":
        index = data.draw(st.integers(0, count - 1))
        tampered[index] = changed(entries[index], data.draw(FIELD_CHANGES), data.draw)
    elif kind == "remove":
        del tampered[data.draw(st.integers(0, count - 1))]
    else:
        i, j = data.draw(st.lists(st.integers(0, count - 1), min_size=2, max_size=2, unique=True))
        if data.draw(st.booleans()):  # rows exchange their seq values
            tampered[i] = dataclasses.replace(entries[j], seq=entries[i].seq)
            tampered[j] = dataclasses.replace(entries[i], seq=entries[j].seq)
        else:  # the list itself is out of order
            tampered[i], tampered[j] = entries[j], entries[i]
    assert verify_chain(tampered, head, KEY) != []
