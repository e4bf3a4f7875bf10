"""Who may do what: roles, actions and the one permission table.

Every HTTP endpoint and every signalling event names the :class:`Action` it performs;
the adapters ask :func:`allowed` before doing anything, and a table-driven test walks
every endpoint and event with every role. Room-scoped actions need one more check,
made by the services: the clinician is assigned to that room (its owner or one of its
co-facilitators), or the patient's pass is for that room.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType


class Role(enum.StrEnum):
    """Who someone is. Clinicians and administrators have accounts; patients hold a
    redeemed invite (a pass). ``ANONYMOUS`` is anyone else."""

    ADMINISTRATOR = "administrator"
    THERAPIST = "therapist"
    CO_FACILITATOR = "co_facilitator"
    PATIENT = "patient"
    ANONYMOUS = "anonymous"


ACCOUNT_ROLES = (Role.ADMINISTRATOR, Role.THERAPIST, Role.CO_FACILITATOR)
CLINICIAN_ROLES = frozenset({Role.THERAPIST, Role.CO_FACILITATOR})


class Action(enum.StrEnum):
    # -- anyone
    VIEW_PUBLIC_PAGE = "view_public_page"
    SIGN_IN = "sign_in"
    USE_ACCOUNT_LINK = "use_account_link"  # first-run setup, set or reset a password
    OPEN_INVITE = "open_invite"
    # -- any signed-in account
    VIEW_OWN_ACCOUNT = "view_own_account"
    SIGN_OUT = "sign_out"
    MANAGE_OWN_SECOND_FACTOR = "manage_own_second_factor"
    # -- administrators
    MANAGE_ACCOUNTS = "manage_accounts"
    MANAGE_SETTINGS = "manage_settings"
    VIEW_AUDIT_LOG = "view_audit_log"
    # -- clinicians
    VIEW_SCHEDULE = "view_schedule"
    MANAGE_ROOMS = "manage_rooms"  # therapists: create and edit rooms, schedule sessions
    MANAGE_INVITES = "manage_invites"  # therapists: make and revoke invite links
    ENTER_AS_CLINICIAN = "enter_as_clinician"  # straight into the session, no lobby
    RUN_LOBBY = "run_lobby"  # see who waits, admit, deny
    FACILITATE = "facilitate"  # mute, camera off, remove, lock, end the session
    TAKE_NOTES = "take_notes"  # write and read back one's own notes during the session
    VIEW_SESSION_RECORD = "view_session_record"  # a room's sessions and their records
    # -- patients
    PREPARE_TO_JOIN = "prepare_to_join"  # the pre-join page and its consent form
    ENTER_AS_PATIENT = "enter_as_patient"  # into the lobby
    GIVE_FEEDBACK = "give_feedback"  # the session-rating form after a session attended
    # -- anyone seated in a session
    USE_OWN_MEDIA = "use_own_media"


_EVERYONE = frozenset(
    {Action.VIEW_PUBLIC_PAGE, Action.SIGN_IN, Action.USE_ACCOUNT_LINK, Action.OPEN_INVITE}
)
_ACCOUNT = _EVERYONE | {Action.VIEW_OWN_ACCOUNT, Action.SIGN_OUT, Action.MANAGE_OWN_SECOND_FACTOR}
_IN_SESSION = frozenset({Action.USE_OWN_MEDIA})
_FACILITATOR = (
    _ACCOUNT
    | _IN_SESSION
    | {
        Action.VIEW_SCHEDULE,
        Action.ENTER_AS_CLINICIAN,
        Action.RUN_LOBBY,
        Action.FACILITATE,
        Action.TAKE_NOTES,
        Action.VIEW_SESSION_RECORD,
    }
)

PERMISSIONS: Mapping[Role, frozenset[Action]] = MappingProxyType(
    {
        Role.ANONYMOUS: _EVERYONE,
        Role.PATIENT: _EVERYONE
        | _IN_SESSION
        | {Action.PREPARE_TO_JOIN, Action.ENTER_AS_PATIENT, Action.GIVE_FEEDBACK},
        Role.CO_FACILITATOR: _FACILITATOR,
        Role.THERAPIST: _FACILITATOR | {Action.MANAGE_ROOMS, Action.MANAGE_INVITES},
        Role.ADMINISTRATOR: _ACCOUNT
        | {Action.MANAGE_ACCOUNTS, Action.MANAGE_SETTINGS, Action.VIEW_AUDIT_LOG},
    }
)


def allowed(role: Role, action: Action) -> bool:
    """Whether ``role`` may perform ``action`` at all (room scope is checked apart)."""
    return action in PERMISSIONS[role]
