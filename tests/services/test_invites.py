"""InviteService against real SQLite: links, redemption, passes, revocation, consent."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import insert, update

from telecircle.config import Settings
from telecircle.crypto.tokens import sign_token
from telecircle.domain.ids import new_room_code
from telecircle.services.invites import (
    MAX_GROUP_PASSES,
    InvalidName,
    InviteExhausted,
    InviteExpired,
    InviteInvalid,
    InviteNotFound,
    InviteRevoked,
    InviteRoomNotFound,
    InviteService,
    PassInvalid,
    ScheduledSessionClosed,
    ScheduledSessionNotFound,
    UnknownAgreement,
)
from telecircle.storage import invites_store, stores
from telecircle.storage.codec import to_utc
from telecircle.storage.database import Database, open_database
from telecircle.storage.tables import AgreementVersionRow, ScheduledSessionRow, UserRow
from tests import database_template

pytestmark = pytest.mark.timeout(120)

T0 = 1_800_000_000.0
KEY = b"s" * 32
GRACE = 1800.0
TTL = 7200.0
PATIENT = "Philippa Quarrington"
ADDRESS = "192.0.2.7"
INVALID_MESSAGE = (
    "This link is not valid. Please check you copied the whole link, "
    "or ask your therapist for a new one."
)


@dataclass
class FakeClock:
    at: float = T0

    def now(self) -> float:
        return self.at


@dataclass
class RecordingAudit:
    entries: list[dict[str, object]] = field(default_factory=list)

    async def record(
        self,
        action: str,
        *,
        actor: str | None,
        target: str | None = None,
        address: str | None = None,
        details: Mapping[str, str | int | float | bool | None] | None = None,
    ) -> None:
        self.entries.append(
            {
                "action": action,
                "actor": actor,
                "target": target,
                "address": address,
                "details": dict(details or {}),
            }
        )

    def actions(self, action: str) -> list[dict[str, object]]:
        return [e for e in self.entries if e["action"] == action]


@dataclass
class Harness:
    db: Database
    clock: FakeClock
    audit: RecordingAudit
    invites: InviteService
    room_id: str
    other_room_id: str
    therapist_id: str


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}"
    await database_template.upgrade(url)
    db = await open_database(url)
    room = await stores.create_room(db, "G", 8, new_room_code(), now=T0)
    other = await stores.create_room(db, "H", 8, new_room_code(), now=T0)
    async with db.write() as conn:
        await conn.execute(
            insert(UserRow).values(
                id="u_ther",
                username="ther",
                display_name="Dr T",
                role="therapist",
                created_at=to_utc(T0),
            )
        )
        for version in (1, 2):
            await conn.execute(
                insert(AgreementVersionRow).values(version=version, text="…", created_at=to_utc(T0))
            )
    clock, audit = FakeClock(), RecordingAudit()
    settings = Settings(data_dir=tmp_path, invite_grace=GRACE, invite_default_ttl=TTL)
    service = InviteService(db, clock, audit, KEY, settings)
    yield Harness(db, clock, audit, service, room.id, other.id, "u_ther")
    await db.close()


async def _scheduled(h: Harness, starts_at: float, minutes: int = 90) -> str:
    session_id = "ss_" + secrets.token_hex(6)
    async with h.db.write() as conn:
        await conn.execute(
            insert(ScheduledSessionRow).values(
                id=session_id,
                room_id=h.room_id,
                starts_at=to_utc(starts_at),
                planned_minutes=minutes,
                created_by=h.therapist_id,
                created_at=to_utc(T0),
            )
        )
    return session_id


async def _personal(h: Harness, scheduled: str | None = None) -> tuple[str, str]:
    invite, token = await h.invites.create_personal(
        h.therapist_id, h.room_id, PATIENT, scheduled, ADDRESS
    )
    return invite.id, token


def _flip(text: str, index: int) -> str:
    return text[:index] + ("A" if text[index] != "A" else "B") + text[index + 1 :]


# ------------------------------------------------------------------------- creating


async def test_a_personal_link_names_its_patient_and_is_audited_without_the_name(
    h: Harness,
) -> None:
    invite, token = await h.invites.create_personal(
        h.therapist_id, h.room_id, f"  {PATIENT}\n ", None, ADDRESS
    )
    assert invite.kind == "personal" and invite.patient_name == PATIENT
    assert invite.expires_at == pytest.approx(T0 + TTL)
    assert token.startswith(invite.id + ".")
    assert h.invites.token_for(invite.id) == token
    assert await h.invites.get_invite(invite.id) == invite
    [entry] = h.audit.actions("invite_created")
    assert entry["actor"] == h.therapist_id and entry["target"] == invite.id
    assert entry["address"] == ADDRESS
    assert "Philippa" not in repr(h.audit.entries)


@pytest.mark.parametrize("name", ["", "   ", "x" * 201, "bell\x07", "tab\x00name"])
async def test_bad_patient_names_are_refused(h: Harness, name: str) -> None:
    with pytest.raises(InvalidName) as refused:
        await h.invites.create_personal(h.therapist_id, h.room_id, name, None, ADDRESS)
    assert refused.value.http_status == 422
    assert await h.invites.list_invites(h.room_id) == []


async def test_a_group_link_for_an_unknown_room_is_refused(h: Harness) -> None:
    with pytest.raises(InviteRoomNotFound):
        await h.invites.create_group(h.therapist_id, "r_nowhere", None, ADDRESS)


async def test_expiry_follows_the_scheduled_session(h: Harness) -> None:
    starts = T0 + 3 * 86_400
    scheduled = await _scheduled(h, starts, minutes=120)
    invite, token = await h.invites.create_group(h.therapist_id, h.room_id, scheduled, ADDRESS)
    end = starts + 120 * 60 + GRACE
    assert invite.expires_at == pytest.approx(end)
    assert invite.scheduled_session_id == scheduled
    h.clock.at = end - 1
    redemption = await h.invites.redeem(token, ADDRESS)
    assert redemption.pass_record.expires_at == pytest.approx(end)
    assert await h.invites.authenticate_pass(redemption.secret) is not None
    h.clock.at = end
    assert await h.invites.authenticate_pass(redemption.secret) is None
    with pytest.raises(InviteExpired):
        await h.invites.redeem(token, ADDRESS)


async def test_a_cancelled_over_or_foreign_session_takes_no_link(h: Harness) -> None:
    cancelled = await _scheduled(h, T0 + 3600)
    async with h.db.write() as conn:
        await conn.execute(
            update(ScheduledSessionRow)
            .where(ScheduledSessionRow.id == cancelled)
            .values(cancelled_at=to_utc(T0))
        )
    with pytest.raises(ScheduledSessionClosed):
        await h.invites.create_personal(h.therapist_id, h.room_id, PATIENT, cancelled, ADDRESS)
    over = await _scheduled(h, T0 - 60 * 60 - GRACE, minutes=60)  # 60 minutes + grace ended at T0
    with pytest.raises(ScheduledSessionClosed):
        await h.invites.create_group(h.therapist_id, h.room_id, over, ADDRESS)
    upcoming = await _scheduled(h, T0 + 3600)
    with pytest.raises(ScheduledSessionNotFound):
        await h.invites.create_group(h.therapist_id, h.other_room_id, upcoming, ADDRESS)
    with pytest.raises(ScheduledSessionNotFound):
        await h.invites.create_group(h.therapist_id, h.room_id, "ss_missing", ADDRESS)
    assert h.audit.actions("invite_created") == []


# ------------------------------------------------------------------------ redeeming


async def test_tampered_and_garbage_tokens_are_invalid(h: Harness) -> None:
    invite_id, token = await _personal(h)
    mac_at = token.index(".") + 1
    bad = [
        _flip(token, mac_at),  # a character of the MAC
        _flip(token, len(token) - 1),
        _flip(token, 3),  # a character of the id
        token[:-1],  # truncated
        token[: mac_at - 1],  # the id alone
        "",
        "x" * 10_240,  # 10 KB of garbage
        "\u2603" * 100,
        sign_token(b"another key", "invite", invite_id),
        sign_token(KEY, "setup", invite_id),  # signed, but for another purpose
    ]
    for candidate in bad:
        with pytest.raises(InviteInvalid) as refused:
            await h.invites.redeem(candidate, ADDRESS)
        assert refused.value.message == INVALID_MESSAGE
        assert refused.value.code == "invite_invalid" and refused.value.http_status == 404
    refusals = h.audit.actions("invite_refused")
    assert len(refusals) == len(bad)
    assert all(e["details"] == {"reason": "invite_invalid"} for e in refusals)
    assert all(e["target"] is None for e in refusals)
    # None of it used the link up.
    stored = await h.invites.get_invite(invite_id)
    assert stored is not None and stored.generation == 0


async def test_a_well_signed_unknown_invite_gets_the_same_answer(h: Harness) -> None:
    with pytest.raises(InviteInvalid) as refused:
        await h.invites.redeem(sign_token(KEY, "invite", "i_missing"), ADDRESS)
    assert refused.value.message == INVALID_MESSAGE
    [entry] = h.audit.actions("invite_refused")
    assert entry["target"] == "i_missing"


async def test_an_expired_link_is_refused(h: Harness) -> None:
    invite_id, token = await _personal(h)
    h.clock.at = T0 + TTL
    with pytest.raises(InviteExpired) as refused:
        await h.invites.redeem(token, ADDRESS)
    assert refused.value.http_status == 410
    assert (
        refused.value.message == "This link has expired. Please ask your therapist for a new one."
    )
    [entry] = h.audit.actions("invite_refused")
    assert entry["target"] == invite_id
    assert entry["details"] == {"reason": "invite_expired"}


async def test_redeeming_gives_a_pass_whose_secret_authenticates(h: Harness) -> None:
    invite_id, token = await _personal(h)
    redemption = await h.invites.redeem(token, ADDRESS)
    record = redemption.pass_record
    assert record.invite_id == invite_id and record.room_id == h.room_id
    assert record.patient_name == PATIENT and record.generation == 1
    assert redemption.superseded_pass_ids == ()
    assert redemption.secret not in repr(redemption)
    assert await h.invites.authenticate_pass(redemption.secret) == record
    [entry] = h.audit.actions("invite_redeemed")
    assert entry["target"] == invite_id and entry["actor"] is None
    assert redemption.secret not in repr(h.audit.entries)
    assert PATIENT not in repr(h.audit.entries)


@pytest.mark.parametrize("secret", ["", "nope", "x" * 10_240])
async def test_unknown_secrets_do_not_authenticate(h: Harness, secret: str) -> None:
    assert await h.invites.authenticate_pass(secret) is None


async def test_opening_a_personal_link_again_moves_the_seat(h: Harness) -> None:
    _, token = await _personal(h)
    first = await h.invites.redeem(token, ADDRESS)
    second = await h.invites.redeem(token, "198.51.100.1")
    assert second.superseded_pass_ids == (first.pass_record.id,)
    assert await h.invites.authenticate_pass(first.secret) is None
    current = await h.invites.authenticate_pass(second.secret)
    assert current is not None and current.generation == 2


async def test_fifty_concurrent_redemptions_of_a_personal_link_leave_one_seat(
    h: Harness,
) -> None:
    invite_id, token = await _personal(h)
    redemptions = await asyncio.gather(*(h.invites.redeem(token, ADDRESS) for _ in range(50)))
    generations = sorted(r.pass_record.generation for r in redemptions)
    assert generations == list(range(1, 51))
    valid = [r for r in redemptions if await h.invites.authenticate_pass(r.secret) is not None]
    assert len(valid) == 1
    assert valid[0].pass_record.generation == 50
    [listing] = await h.invites.list_invites(h.room_id)
    assert listing.invite.id == invite_id and listing.live_passes == 1
    assert len(h.audit.actions("invite_redeemed")) == 50


async def test_a_group_link_gives_independent_passes_up_to_the_cap(h: Harness) -> None:
    invite, token = await h.invites.create_group(h.therapist_id, h.room_id, None, ADDRESS)
    assert invite.patient_name is None
    redemptions = [await h.invites.redeem(token, ADDRESS) for _ in range(MAX_GROUP_PASSES)]
    assert len({r.pass_record.id for r in redemptions}) == MAX_GROUP_PASSES
    assert all(r.superseded_pass_ids == () for r in redemptions)
    for r in redemptions:
        assert await h.invites.authenticate_pass(r.secret) is not None
    with pytest.raises(InviteExhausted) as refused:
        await h.invites.redeem(token, ADDRESS)
    assert refused.value.http_status == 409 and refused.value.code == "invite_exhausted"
    assert h.audit.actions("invite_refused")[-1]["details"] == {"reason": "invite_exhausted"}


# ------------------------------------------------------------------------- revoking


async def test_revoking_refuses_the_link_and_ends_its_passes(h: Harness) -> None:
    heard: list[Sequence[str]] = []

    async def failing(pass_ids: Sequence[str]) -> None:
        raise RuntimeError("live-room layer is down")

    async def listener(pass_ids: Sequence[str]) -> None:
        heard.append(pass_ids)

    h.invites.add_revocation_listener(failing)
    h.invites.add_revocation_listener(listener)
    invite, token = await h.invites.create_group(h.therapist_id, h.room_id, None, ADDRESS)
    passes = [await h.invites.redeem(token, ADDRESS) for _ in range(2)]

    revoked = await h.invites.revoke(h.therapist_id, invite.id, ADDRESS)
    assert sorted(revoked) == sorted(p.pass_record.id for p in passes)
    assert [sorted(ids) for ids in heard] == [sorted(revoked)]
    for p in passes:
        assert await h.invites.authenticate_pass(p.secret) is None
    with pytest.raises(InviteRevoked) as refused:
        await h.invites.redeem(token, ADDRESS)
    assert refused.value.http_status == 410
    assert refused.value.message == "This link has been withdrawn. Please contact your therapist."
    assert h.audit.actions("invite_refused")[-1]["details"] == {"reason": "invite_revoked"}
    [entry] = h.audit.actions("invite_revoked")
    assert entry["actor"] == h.therapist_id and entry["target"] == invite.id

    # Again: nothing more to revoke, so the listeners hear nothing.
    assert await h.invites.revoke(h.therapist_id, invite.id, ADDRESS) == []
    assert len(heard) == 1
    with pytest.raises(InviteNotFound):
        await h.invites.revoke(h.therapist_id, "i_missing", ADDRESS)


async def test_a_removed_listener_is_not_called(h: Harness) -> None:
    heard: list[Sequence[str]] = []

    async def listener(pass_ids: Sequence[str]) -> None:
        heard.append(pass_ids)

    h.invites.add_revocation_listener(listener)
    h.invites.remove_revocation_listener(listener)
    h.invites.remove_revocation_listener(listener)
    invite_id, token = await _personal(h)
    await h.invites.redeem(token, ADDRESS)
    assert len(await h.invites.revoke(h.therapist_id, invite_id, ADDRESS)) == 1
    assert heard == []


async def test_a_step_before_the_listeners_finds_the_link_already_withdrawn(h: Harness) -> None:
    """A removal announced between the withdrawal and its listeners (the facilitator's
    "remove and withdraw the link"): a reload there is already refused, and the
    listeners (which end seats as "link withdrawn") come after the removal."""
    order: list[str] = []

    async def listener(pass_ids: Sequence[str]) -> None:
        order.append("listeners")

    h.invites.add_revocation_listener(listener)
    invite, token = await h.invites.create_group(h.therapist_id, h.room_id, None, ADDRESS)
    group_pass = await h.invites.redeem(token, ADDRESS)
    invite_id, personal_token = await _personal(h)
    personal = await h.invites.redeem(personal_token, ADDRESS)

    def removal(secret: str) -> Callable[[], Awaitable[None]]:
        async def remove() -> None:
            assert await h.invites.authenticate_pass(secret) is None
            order.append("removed")

        return remove

    await h.invites.revoke_pass(
        h.therapist_id, group_pass.pass_record.id, before_listeners=removal(group_pass.secret)
    )
    assert order == ["removed", "listeners"]
    await h.invites.revoke(
        h.therapist_id, invite_id, ADDRESS, before_listeners=removal(personal.secret)
    )
    assert order == ["removed", "listeners"] * 2
    # Already withdrawn: the step still runs; the listeners hear nothing new.
    await h.invites.revoke_pass(
        h.therapist_id, group_pass.pass_record.id, before_listeners=removal(group_pass.secret)
    )
    assert order == ["removed", "listeners"] * 2 + ["removed"]
    assert invite.id != invite_id


# -------------------------------------------------------------------------- consent


async def test_the_consent_ledger_keeps_each_patients_agreement_version(h: Harness) -> None:
    _, ana_token = await _personal(h)
    _, ben_token = await _personal(h)
    ana = await h.invites.redeem(ana_token, ADDRESS)
    ben = await h.invites.redeem(ben_token, ADDRESS)
    ana_id, ben_id = ana.pass_record.id, ben.pass_record.id

    h.clock.at = T0 + 10
    await h.invites.record_consent(ana_id, "  Ana  ", 1, None, ADDRESS)
    h.clock.at = T0 + 20
    await h.invites.record_consent(ben_id, "Ben", 2, True, ADDRESS)

    ledger = await invites_store.list_consents(h.db, h.room_id)
    assert [
        (c.pass_id, c.display_name, c.agreement_version, c.recording_consent, c.accepted_at)
        for c in ledger
    ] == [(ana_id, "Ana", 1, None, T0 + 10), (ben_id, "Ben", 2, True, T0 + 20)]
    seen = await h.invites.authenticate_pass(ana.secret)
    assert seen is not None and seen.display_name == "Ana"
    entries = h.audit.actions("consent_recorded")
    assert [e["details"] for e in entries] == [
        {"agreement_version": 1, "recording_consent": None},
        {"agreement_version": 2, "recording_consent": True},
    ]
    assert entries[0]["actor"] == ana_id and entries[0]["target"] == h.room_id
    assert "Ana" not in repr(h.audit.entries) and "Ben" not in repr(h.audit.entries)


async def test_consent_is_refused_for_a_dead_pass_an_unknown_version_or_a_bad_name(
    h: Harness,
) -> None:
    invite_id, token = await _personal(h)
    redemption = await h.invites.redeem(token, ADDRESS)
    pass_id = redemption.pass_record.id
    with pytest.raises(UnknownAgreement):
        await h.invites.record_consent(pass_id, "Ana", 7, None, ADDRESS)
    with pytest.raises(InvalidName):
        await h.invites.record_consent(pass_id, " \t ", 1, None, ADDRESS)
    await h.invites.revoke(h.therapist_id, invite_id, ADDRESS)
    with pytest.raises(PassInvalid) as refused:
        await h.invites.record_consent(pass_id, "Ana", 1, True, ADDRESS)
    assert refused.value.http_status == 403
    assert await invites_store.consents_of_pass(h.db, pass_id) == []
    assert h.audit.actions("consent_recorded") == []
