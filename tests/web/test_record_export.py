"""Exports of a session record (JSON and HL7 FHIR R4B) from the real application, on the
sessions the record tests run (pairs, a segment, notes, a patient who lost her
connection, one turned away, one removed; and people who took several seats):
validated, complete, one Encounter per person, audited, and only for the room's
clinicians."""

from __future__ import annotations

import json
from datetime import datetime

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.encounter import Encounter

from telecircle.domain.notes import NoteBody
from telecircle.services.session_record import EARLIER_VERSIONS_SHOWN
from telecircle.web.keys import AUDIT, NOTES
from tests.conftest import RunningServer
from tests.web.site_client import SiteClient
from tests.web.test_session_record import (  # noqa: F401 (fixtures)
    PAIRS_SECRET,
    Group,
    Returns,
    brief_grace_server,
    clock,
    db_url,
    group,
    postgres_unreachable,
    returns,
    server,
)


async def download(site: RunningServer, cookie: str, path: str) -> tuple[int, str, bytes]:
    client = SiteClient(site.url, cookie)
    try:
        page = await client.get(path, follow=False)
    finally:
        await client.close()
    return page.status, page.headers.get("Content-Type", ""), page.text.encode("utf-8")


async def test_the_fhir_export_is_a_valid_bundle_of_encounters(
    server: RunningServer,  # noqa: F811 (a fixture)
    group: Group,  # noqa: F811
) -> None:
    status, content_type, body = await download(
        server, group.owner_cookie, f"/clinic/sessions/{group.session_id}/export.fhir"
    )
    assert status == 200 and content_type.startswith("application/fhir+json")
    bundle = Bundle.model_validate_json(body)
    assert bundle.type == "collection"
    encounters = [entry.resource for entry in bundle.entry or []]
    assert all(isinstance(e, Encounter) for e in encounters)
    group_entry, *patient_entries = bundle.entry or []
    session = group_entry.resource
    assert isinstance(session, Encounter)
    assert session.identifier[0].value == group.session_id  # type: ignore[index]
    assert session.status == "finished" and session.class_fhir.code == "VR"
    assert session.period is not None and session.period.end is not None
    clinicians = {p.individual.display for p in session.participant or []}  # type: ignore[union-attr]
    assert "Dr Test" in clinicians
    # One Encounter per patient who attended, part of the group's.
    by_id = {
        e.resource.identifier[0].value: e.resource  # type: ignore[union-attr,index]
        for e in patient_entries
    }
    for name in ("Ann", "Bo"):
        encounter = by_id[group.ids[name]]
        assert encounter.partOf.reference == group_entry.fullUrl  # type: ignore[union-attr]
        assert encounter.subject.display == name  # type: ignore[union-attr]
        assert encounter.period.start is not None  # type: ignore[union-attr]
    ann = by_id[group.ids["Ann"]]
    assert ann.length.value == 44  # type: ignore[union-attr] (49 in, 5 with connection lost)
    assert len(ann.statusHistory or []) >= 1
    for history in ann.statusHistory or []:
        start, end = history.period.start, history.period.end
        assert isinstance(start, datetime) and (end is None or end >= start)
    assert group.ids["Dr Test"] not in by_id  # clinicians are participants, not subjects
    assert b"Ann spoke about" not in body  # notes are not in the attendance export


async def test_the_json_export_has_the_whole_record(
    server: RunningServer,  # noqa: F811 (a fixture)
    group: Group,  # noqa: F811
) -> None:
    status, content_type, body = await download(
        server, group.owner_cookie, f"/clinic/sessions/{group.session_id}/export.json"
    )
    assert status == 200 and content_type.startswith("application/json")
    document = json.loads(body)
    assert document["format"] == "telecircle.session-record/1"
    record = document["record"]
    assert record["session_id"] == group.session_id
    names = {a["name"]: a for a in record["attendees"]}
    assert names["Ann"]["minutes"] == 44
    noted = [e["note"] for e in record["timeline"] if e["note"]]
    assert any("Ann spoke about <b>work</b>." in v["text"] for n in noted for v in n["versions"])
    assert record["billing_codes"] and record["consents"]
    assert document["feedback"]["session_id"] == group.session_id
    assert PAIRS_SECRET.encode() not in body


async def test_exports_are_audited_and_only_for_the_rooms_clinicians(
    server: RunningServer,  # noqa: F811 (a fixture)
    group: Group,  # noqa: F811
) -> None:
    for fmt in ("json", "fhir"):
        status, _, _ = await download(
            server, group.co_cookie, f"/clinic/sessions/{group.session_id}/export.{fmt}"
        )
        assert status == 200
    exported = await server.app[AUDIT].page(action="session_record_exported", newest_first=False)
    assert [(e.actor, e.target, e.details["format"]) for e in exported.entries] == [
        (group.co_id, group.session_id, "json"),
        (group.co_id, group.session_id, "fhir"),
    ]
    assert all("Ann" not in json.dumps(dict(e.details)) for e in exported.entries)
    status, _, _ = await download(
        server, group.owner_cookie, f"/clinic/sessions/{group.session_id}/export.pdf"
    )
    assert status == 404
    status, _, _ = await download(
        server, group.patient_cookie, f"/clinic/sessions/{group.session_id}/export.json"
    )
    assert status in (401, 403)


async def test_each_person_is_one_encounter_however_many_seats(
    brief_grace_server: RunningServer,  # noqa: F811 (a fixture)
    returns: Returns,  # noqa: F811
) -> None:
    """Ann left and came back, Bo and Cy opened their links on a second device, Dr Co's
    connection stayed lost past the reconnect window: one Encounter (or participant)
    each, with the minutes of all their seats and every seat id as an identifier."""
    site, seats = brief_grace_server, returns.seats
    _, _, body = await download(
        site, returns.owner_cookie, f"/clinic/sessions/{returns.session_id}/export.fhir"
    )
    group_entry, *patient_entries = Bundle.model_validate_json(body).entry or []
    session = group_entry.resource
    assert isinstance(session, Encounter)
    clinicians = [p.individual.display for p in session.participant or []]  # type: ignore[union-attr]
    assert sorted(clinicians) == ["Dr Co", "Dr Test"]
    encounters = [entry.resource for entry in patient_entries]
    assert all(isinstance(e, Encounter) for e in encounters)
    by_first_seat = {e.identifier[0].value: e for e in encounters}  # type: ignore[union-attr,index]
    assert sorted(by_first_seat) == sorted(seats[name][0] for name in ("Ann", "Bo", "Cy"))
    for name, minutes, shown_as in (("Ann", 24, "Ann"), ("Bo", 30, "Bo B"), ("Cy", 30, "Cy")):
        encounter = by_first_seat[seats[name][0]]
        assert [i.value for i in encounter.identifier] == seats[name]  # type: ignore[union-attr]
        assert encounter.subject.display == shown_as  # type: ignore[union-attr]
        assert encounter.subject.identifier.value == seats[name][0]  # type: ignore[union-attr]
        assert encounter.length.value == minutes, name  # type: ignore[union-attr]
    ann = by_first_seat[seats["Ann"][0]]
    assert len(ann.statusHistory or []) == 2  # type: ignore[union-attr]
    assert len({entry.fullUrl for entry in patient_entries}) == 3

    _, _, body = await download(
        site, returns.owner_cookie, f"/clinic/sessions/{returns.session_id}/export.json"
    )
    record = json.loads(body)["record"]
    attendees = {a["name"]: a for a in record["attendees"]}
    assert sorted(attendees) == ["Ann", "Bo B", "Cy", "Dr Co", "Dr Test"]
    assert attendees["Ann"]["participant_ids"] == seats["Ann"]
    assert attendees["Ann"]["minutes"] == 24 and attendees["Dr Co"]["minutes"] == 27
    assert sorted((b["name"], b["minutes"]) for b in record["billing"]) == [
        ("Ann", 24),
        ("Bo B", 30),
        ("Cy", 30),
    ]
    assert sorted((c["name"], c["agreement_version"]) for c in record["consents"]) == [
        ("Ann", 1),
        ("Bo B", 2),
        ("Cy", 1),
    ]


async def test_the_json_export_keeps_every_note_version(
    server: RunningServer,  # noqa: F811 (a fixture)
    group: Group,  # noqa: F811
) -> None:
    """The page shows a bounded number of earlier versions; the export has them all."""
    versions = EARLIER_VERSIONS_SHOWN + 3
    for n in range(3, versions + 1):
        await server.app[NOTES].save(
            author_id=group.owner_id,
            room_id=group.room_id,
            session_id=group.session_id,
            note_id="note-ann-1",
            save_id=f"save-{n:04d}",
            body=NoteBody(f"Autosaved draft {n}."),
        )
    _, _, body = await download(
        server, group.owner_cookie, f"/clinic/sessions/{group.session_id}/export.json"
    )
    [note] = [e["note"] for e in json.loads(body)["record"]["timeline"] if e["note"]]
    assert [v["version"] for v in note["versions"]] == list(range(versions, 0, -1))
    assert note["older_not_shown"] == 0
    assert note["versions"][-1]["text"] == "Ann spoke about <b>work</b>.\nSecond line & more."
