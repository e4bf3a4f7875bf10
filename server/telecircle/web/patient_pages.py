"""The patient's way in: the invite link, the pre-join page with its consent form, and
the session page.

The invite token appears in one request only: ``GET /i/{token}`` swaps it for the
HttpOnly pass cookie and redirects, so the token does not stay in the address bar or
the history (and ``Referrer-Policy: no-referrer`` keeps it out of other sites' logs).

After a session, these are the pages a patient comes back to (through their invite
link): while a session-rating form waits for them (web/feedback_pages.py), each points
to it, so that someone who left early or dropped out finds it too.
"""

from __future__ import annotations

from aiohttp import web

from telecircle.domain.access import Action
from telecircle.domain.commands import LeaveReason
from telecircle.domain.ids import RoomId
from telecircle.domain.rules import normalise_display_name
from telecircle.errors import TelecircleError
from telecircle.services.checkins import CONTACT_MAX, LOCATION_MAX
from telecircle.services.entry import patient_key
from telecircle.services.organisation import InvalidInput, clean_name
from telecircle.storage import stores
from telecircle.storage.invites_store import PassRecord
from telecircle.web.identity import PASS_COOKIE, client_address, identity_of, requires, set_cookie
from telecircle.web.keys import (
    CHECKINS,
    DATABASE,
    FEEDBACK,
    INVITE_LIMITER,
    INVITES,
    ORGANISATION,
    ROOMS,
)
from telecircle.web.pages import session_page as call_page
from telecircle.web.render import form_fields, message, render, see_other

TOKEN_MAX = 256
FEEDBACK_PATH = "/feedback"
FEEDBACK_LINK_TEXT = "Tell your therapists how the last session went"


def current_pass(request: web.Request) -> PassRecord:
    patient_pass = identity_of(request).patient_pass
    if patient_pass is None:  # the guard admits only patients here
        raise web.HTTPForbidden(text="Open your invite link first.")
    return patient_pass


async def feedback_waiting(request: web.Request, patient_pass: PassRecord | None) -> bool:
    """Whether the pass's holder has a session-rating form to answer: a session they
    were in has ended, its window is open, and they have not answered it."""
    if patient_pass is None:
        return False
    form = await request.app[FEEDBACK].form_for(patient_pass)
    return form is not None and not form.already_sent


def _limited(request: web.Request) -> web.Response | None:
    """Counts this opening against the address's allowance; a page when it is used up.
    (Links are signed, so guessing one is hopeless; counting per address stops a
    flood. Not per link: a group link is opened by everyone in the group.)"""
    limiter = request.app[INVITE_LIMITER]
    keys = ("invite-addr:" + client_address(request),)
    waits = [w for w in (limiter.retry_after(key) for key in keys) if w is not None]
    if waits:
        wait = max(waits)
        minutes = max(1, int(wait // 60) + 1)
        return message(
            request,
            "Please wait a moment",
            f"This link was opened too many times from your network. "
            f"Please try again in {minutes} minute{'s' if minutes > 1 else ''}.",
            status=429,
        )
    for key in keys:
        limiter.record_failure(key)  # every opening counts, good or bad
    return None


@requires(Action.OPEN_INVITE)
async def open_invite(request: web.Request) -> web.Response:
    """``GET /i/{token}``: says what the link is for and asks to continue. Nothing is
    redeemed on a GET, so a mail scanner or a chat preview that fetches the link does
    not use it up (or move a personal link's seat)."""
    refused = _limited(request)
    if refused is not None:
        return refused
    try:
        invite = await request.app[INVITES].check(request.match_info["token"][:TOKEN_MAX])
    except TelecircleError as exc:
        return message(request, "This link cannot be used", exc.message, status=exc.http_status)
    holder = identity_of(request).patient_pass
    if holder is not None and holder.invite_id == invite.id:
        return see_other("/join")  # this browser already holds this invite's pass
    room = await stores.get_room(request.app[DATABASE], RoomId(invite.room_id))
    return render(
        request,
        "invite.html",
        title="Your invitation",
        room_name="your group" if room is None else room.name,
        personal=invite.kind == "personal",
        feedback_waiting=await feedback_waiting(request, holder),
        feedback_path=FEEDBACK_PATH,
        feedback_link_text=FEEDBACK_LINK_TEXT,
    )


@requires(Action.OPEN_INVITE)
async def redeem_invite(request: web.Request) -> web.Response:
    """``POST /i/{token}``: swaps the link for the pass cookie and moves on to the
    pre-join page. A personal link redeemed here takes its seat from any other device."""
    refused = _limited(request)
    if refused is not None:
        return refused
    address = client_address(request)
    holder = identity_of(request).patient_pass
    if holder is not None:
        token = request.match_info["token"][:TOKEN_MAX]
        try:
            invite = await request.app[INVITES].check(token)
        except TelecircleError:
            invite = None
        if invite is not None and invite.id == holder.invite_id:
            # Sent twice (a double click, Back and again): this browser holds it already.
            return see_other("/join")
    try:
        redemption = await request.app[INVITES].redeem(
            request.match_info["token"][:TOKEN_MAX], address
        )
    except TelecircleError as exc:
        return message(request, "This link cannot be used", exc.message, status=exc.http_status)
    if redemption.superseded_pass_ids:
        # The device that held this personal link's seat is told at once, and leaves.
        await request.app[ROOMS].remove_person(
            patient_key(redemption.pass_record), LeaveReason.SEAT_MOVED
        )
    response = see_other("/join")
    set_cookie(request, response, PASS_COOKIE, redemption.secret)
    return response


async def _prejoin_page(request: web.Request, status: int = 200, **extra: object) -> web.Response:
    patient_pass = current_pass(request)
    room = await stores.get_room(request.app[DATABASE], RoomId(patient_pass.room_id))
    if room is None:
        return message(request, "This group no longer exists", "Please contact your therapist.")
    consent = await request.app[ORGANISATION].room_consent(room)
    values: dict[str, object] = {
        "display_name": patient_pass.display_name or patient_pass.patient_name or "",
        "location": "",
        "emergency_contact": "",
    }
    values.update(extra)
    return render(
        request,
        "prejoin.html",
        status=status,
        title=f"Join {room.name}",
        room=room,
        consent=consent,
        location_max=LOCATION_MAX,
        contact_max=CONTACT_MAX,
        feedback_waiting=await feedback_waiting(request, patient_pass),
        feedback_path=FEEDBACK_PATH,
        feedback_link_text=FEEDBACK_LINK_TEXT,
        **values,
    )


@requires(Action.PREPARE_TO_JOIN)
async def prejoin(request: web.Request) -> web.Response:
    return await _prejoin_page(request)


@requires(Action.PREPARE_TO_JOIN)
async def prejoin_submit(request: web.Request) -> web.Response:
    patient_pass = current_pass(request)
    fields = await form_fields(
        request,
        "display_name",
        "agreement_version",
        "accept_agreement",
        "recording_consent",
        "location",
        "emergency_contact",
    )
    room = await stores.get_room(request.app[DATABASE], RoomId(patient_pass.room_id))
    if room is None:
        return message(request, "This group no longer exists", "Please contact your therapist.")
    consent = await request.app[ORGANISATION].room_consent(room)
    keep = {k: fields[k][:200] for k in ("display_name", "location", "emergency_contact")}
    try:
        name = normalise_display_name(fields["display_name"])
        if fields["agreement_version"] != str(consent.agreement.version):
            raise InvalidInput("The agreement has just changed. Please read it again.")
        if fields["accept_agreement"] != "on":
            raise InvalidInput("Please accept the confidentiality agreement to join.")
        recording: bool | None = None
        if consent.recording_consent_required:
            if fields["recording_consent"] not in ("yes", "no"):
                raise InvalidInput("Please answer the question about recording.")
            recording = fields["recording_consent"] == "yes"
        location = clean_name(fields["location"], "place where you are", LOCATION_MAX)
        contact = clean_name(fields["emergency_contact"], "emergency contact", CONTACT_MAX)
    except TelecircleError as exc:
        return await _prejoin_page(request, exc.http_status, error=exc.message, **keep)
    await request.app[INVITES].record_consent(
        patient_pass.id, name, consent.agreement.version, recording, client_address(request)
    )
    if recording is False:
        return message(
            request,
            "Recording consent needed",
            "This group asks everyone to agree to recording. Your answer is noted; "
            "please talk to your therapist about how to take part.",
        )
    request.app[CHECKINS].record(patient_key(patient_pass), location, contact)
    return see_other("/session")


@requires(Action.ENTER_AS_PATIENT)
async def session_page(request: web.Request) -> web.Response:
    patient_pass = current_pass(request)
    if patient_pass.display_name is None:
        return see_other("/join")  # the pre-join page comes first
    if request.app[CHECKINS].get(patient_key(patient_pass)) is None:
        return see_other("/join")  # asked at every session
    room = await stores.get_room(request.app[DATABASE], RoomId(patient_pass.room_id))
    if room is None:
        return message(request, "This group no longer exists", "Please contact your therapist.")
    limit = await request.app[ORGANISATION].effective_limit(room)
    return call_page(request, room, limit, "patient")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/i/{token}", open_invite)
    app.router.add_post("/i/{token}", redeem_invite)
    app.router.add_get("/join", prejoin)
    app.router.add_post("/join", prejoin_submit)
    app.router.add_get("/session", session_page)
