"""Typed application keys: every dependency hangs off the aiohttp Application."""

from __future__ import annotations

import jinja2
from aiohttp import web

from telecircle.config import Settings
from telecircle.crypto.passwords import PasswordHasher
from telecircle.media.sfu import Sfu
from telecircle.services.accounts import AccountService
from telecircle.services.audit import AuditLog
from telecircle.services.checkins import CheckIns
from telecircle.services.clock import Clock
from telecircle.services.feedback import FeedbackService
from telecircle.services.invites import InviteService
from telecircle.services.notes import NotesService
from telecircle.services.organisation import Organisation
from telecircle.services.ratelimit import AttemptLimiter
from telecircle.services.retention import NotesRetention
from telecircle.services.rooms import RoomService
from telecircle.services.session_record import NoteReader, SessionRecords
from telecircle.services.watchdog import LoopWatchdog
from telecircle.signalling.server import SignallingServer
from telecircle.storage.database import Database

SETTINGS = web.AppKey("settings", Settings)
CLOCK = web.AppKey("clock", Clock)
TEMPLATES = web.AppKey("templates", jinja2.Environment)
DATABASE = web.AppKey("database", Database)
SFU = web.AppKey("sfu", Sfu)
SIGNALLING = web.AppKey("signalling", SignallingServer)
ROOMS = web.AppKey("rooms", RoomService)
WATCHDOG = web.AppKey("watchdog", LoopWatchdog)
AUDIT = web.AppKey("audit", AuditLog)
ACCOUNTS = web.AppKey("accounts", AccountService)
INVITES = web.AppKey("invites", InviteService)
ORGANISATION = web.AppKey("organisation", Organisation)
CHECKINS = web.AppKey("checkins", CheckIns)
NOTES = web.AppKey("notes", NotesService)
FEEDBACK = web.AppKey("feedback", FeedbackService)
RETENTION = web.AppKey("retention", NotesRetention)
HASHER = web.AppKey("hasher", PasswordHasher)
SESSION_RECORDS = web.AppKey("session_records", SessionRecords)
# Where session records read notes from (the notes service); records show no notes
# while it is absent.
NOTE_READER: web.AppKey[NoteReader] = web.AppKey("note_reader")
# Invite openings counted per client address (the invite service counts nothing).
INVITE_LIMITER = web.AppKey("invite_limiter", AttemptLimiter)
# Key for the CSRF tokens of patients and anonymous forms (derived from the server key).
CSRF_KEY = web.AppKey("csrf_key", bytes)
