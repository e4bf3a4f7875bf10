"""Exports of a session record (JSON and HL7 FHIR R4B) from the real application, on the
session the record tests run (pairs, a segment, notes, a patient who lost her
connection, one turned away, one removed): validated, complete, audited, and only for
the room's clinicians."""

from __future__ import annotations

import json
from datetime import datetime

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.encounter import Encounter

from telecircle.web.keys import AUDIT
from tests.conftest import RunningServer
from tests.web.site_client import SiteClient
from tests.web.test_session_record import (  # noqa: F401 (fixtures)
    PAIRS_SECRET,
    Group,
    clock,
    db_url,
    group,
    postgres_unreachable,
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
