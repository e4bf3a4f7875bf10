"""Typed application keys: every dependency hangs off the aiohttp Application."""

from __future__ import annotations

import jinja2
from aiohttp import web

from telecircle.config import Settings
from telecircle.media.sfu import Sfu
from telecircle.services.clock import Clock
from telecircle.services.rooms import RoomService
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
