"""One typed settings object, from ``TELECIRCLE_*`` environment variables and an optional file.

Precedence (highest first): explicit values (command-line options), environment
variables, the settings file named by ``TELECIRCLE_CONFIG_FILE`` (TOML), defaults.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
import zoneinfo
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict, SettingsError

from telecircle.deployment_config import HOSTNAME, DeploymentSettings, ports_needed
from telecircle.domain.feedback import FeedbackLimits
from telecircle.domain.model import TimerLimits
from telecircle.domain.notes import NoteLimits

SUPPORTED_DATABASE_SCHEMES = ("sqlite+aiosqlite://", "postgresql+asyncpg://")


class ConfigError(Exception):
    """The configuration is invalid; the message names the setting and how to fix it."""


class Settings(DeploymentSettings):
    model_config = SettingsConfigDict(env_prefix="TELECIRCLE_", extra="forbid", frozen=True)

    host: str = Field("127.0.0.1", description="Address the web server binds to.")
    port: int = Field(8080, ge=1, le=65535, description="Port the web server binds to.")
    public_url: str = Field(
        "", description="Base URL printed in join links; defaults to http://HOST:PORT."
    )
    data_dir: Path = Field(Path("data"), description="Folder for the database and keys.")
    database_url: str = Field(
        "", description="SQLAlchemy async URL; defaults to SQLite in DATA_DIR."
    )
    default_room_limit: int = Field(10, ge=2, description="Participant limit for new rooms.")
    room_limit_ceiling: int = Field(
        12, ge=2, le=16, description="The server's ceiling for any room's limit (at most 16)."
    )
    ice_host_addresses: Annotated[tuple[str, ...], NoDecode] = Field(
        ("127.0.0.1",),
        description="Local IP addresses the SFU gathers ICE host candidates on "
        "(comma-separated in the environment).",
    )
    max_message_bytes: int = Field(
        64 * 1024,
        ge=64 * 1024,
        description="Largest signalling message the application accepts (at least 64 KiB, "
        "so a session description of the largest room fits).",
    )
    messages_per_second: float = Field(
        20.0, gt=0, description="Sustained signalling messages per second per connection."
    )
    message_burst: int = Field(40, ge=1, description="Signalling burst allowance per connection.")
    malformed_message_limit: int = Field(
        5, ge=1, description="Malformed messages tolerated before a connection is closed."
    )
    reconnect_grace: float = Field(
        60.0,
        gt=0,
        le=3600,
        description="Seconds a seat is held (still counted against the room limit) after "
        "a connection drops without Leave; coming back within it returns to the same seat.",
    )
    rate_limit_strikes: int = Field(
        50,
        ge=1,
        description="Messages refused for rate, less one for each accepted, before a "
        "connection is closed: a sender at more than twice messages_per_second is closed, "
        "a burst now and then only throttled.",
    )
    socket_ping_interval: float = Field(4.0, gt=0, description="Engine.io ping interval (s).")
    socket_ping_timeout: float = Field(5.0, gt=0, description="Engine.io ping timeout (s).")
    abuse_cooldown: float = Field(
        30.0,
        ge=0,
        description="Seconds during which a person whose connection was closed for abuse "
        "(a flood, malformed messages) cannot connect again (0: at once).",
    )
    max_message_depth: int = Field(
        8,
        ge=4,
        le=64,
        description="Deepest nesting of arrays and objects a signalling message may have "
        "(the protocol's deepest is 4); deeper ones are refused before they are parsed.",
    )
    socket_frames_per_second: float = Field(
        100.0,
        gt=0,
        description="Websocket frames of any kind (events, acks, pongs, refused frames) "
        "per second per connection; beyond the burst the connection is closed at once. "
        "Well above messages_per_second, so a flood of events meets the application's "
        "throttle first.",
    )
    socket_frame_burst: int = Field(
        200,
        ge=1,
        description="Websocket frame burst allowance per connection (at least "
        "message_burst + rate_limit_strikes, so a flood of events is throttled and "
        "disconnected by the application first).",
    )
    socket_connect_timeout: float = Field(
        10.0,
        gt=0,
        description="Seconds a websocket may stay open without a socket.io connection "
        "(before it, after a refused one, after the server ended it); then it is closed.",
    )
    http_idle_timeout: float = Field(
        20.0,
        gt=0,
        description="Seconds a TCP connection may go without a complete HTTP request "
        "head (a new connection, or an idle kept-alive one): silent and slowly "
        "trickling clients are closed.",
    )
    http_body_timeout: float = Field(
        20.0,
        gt=0,
        description="Seconds a client has to send a request body (a form); a slower one "
        "is answered 408 and closed.",
    )
    ice_consent_interval: float = Field(
        2.0, gt=0, description="Seconds between ICE consent checks (dead path detection)."
    )
    ice_consent_timeout: float = Field(
        10.0,
        gt=0,
        description="Seconds without a successful consent check before a media path "
        "counts as dead.",
    )
    ice_connect_timeout: float = Field(
        30.0,
        ge=5,
        le=300,
        description="Seconds a new media connection has to connect before it is given up "
        "(the browser then makes a new one).",
    )
    subscriber_queue_packets: int = Field(
        512,
        ge=16,
        description="Outgoing packets (counted as 1,200 bytes each) a subscriber's socket "
        "may hold unsent before that subscriber's packets are dropped.",
    )
    keyframe_request_interval: float = Field(
        0.5, gt=0, description="Minimum seconds between keyframe requests to one publisher."
    )
    nack_retry_interval: float = Field(
        0.15,
        gt=0,
        le=5,
        description="How often (s) the SFU asks a publisher again for a lost video packet.",
    )
    nack_max_tries: int = Field(
        10, ge=1, le=100, description="NACKs for one lost packet before asking for a keyframe."
    )
    nack_max_missing: int = Field(
        256,
        ge=1,
        le=4096,
        description="Lost packets tracked per video stream (a longer gap asks for a keyframe).",
    )
    weak_video_loss: float = Field(
        0.2,
        gt=0,
        le=1,
        description="Share of packets a receiver reports lost (in one receiver report) at "
        "which one more video is paused for it (audio always continues).",
    )
    weak_video_hold: float = Field(
        2.0,
        gt=0,
        le=60,
        description="Seconds between two changes to the videos paused for one receiver "
        "(its bandwidth estimate settles in between).",
    )
    weak_video_probe_after: float = Field(
        8.0,
        gt=0,
        le=600,
        description="Seconds before a video paused for a weak connection is first tried "
        "again (doubled after each try that brought the congestion back).",
    )
    weak_video_probe_max: float = Field(
        64.0,
        gt=0,
        le=3600,
        description="Longest wait, in seconds, between two tries of a paused video.",
    )
    weak_video_pause_below: float = Field(
        0.7,
        gt=0,
        le=1,
        description="A receiver's falling bandwidth estimate pauses one more video once it "
        "is below what the receiver is sent, times this.",
    )
    weak_video_headroom: float = Field(
        1.2,
        ge=1,
        le=4,
        description="A paused video comes back once the receiver's bandwidth estimate "
        "covers what it is sent with that video, times this.",
    )
    webclient_dist: Path = Field(
        Path(__file__).resolve().parents[2] / "webclient" / "dist",
        description="Folder of the built webclient (served at /static/).",
    )
    tune_garbage_collector: bool = Field(
        True, description="Freeze start-up objects and make full GC pauses rarer."
    )
    shutdown_timeout: float = Field(10.0, gt=0, description="Seconds allowed for shutdown.")

    # ---- access: accounts, sign-in, links, invites -------------------------------------
    server_key_file: Path = Field(
        Path(""),
        description="File holding the server's secret key (created on first run, owner-only "
        "permissions; keep it out of database backups). Defaults to DATA_DIR/server.key.",
    )
    key_dir: Path = Field(
        Path(""),
        description="Folder of the key-encryption keys that protect notes (one owner-only "
        "file per version, created on first run; back it up apart from the database). "
        "Defaults to DATA_DIR/keys.",
    )
    login_idle_timeout: float = Field(
        1800.0, ge=60, description="Seconds of inactivity after which a clinician is signed out."
    )
    login_max_age: float = Field(
        43200.0, ge=300, description="Longest a sign-in lasts, active or not (seconds)."
    )
    login_attempts_per_window: int = Field(
        5, ge=1, description="Failed sign-ins allowed per address and per account per window."
    )
    login_window: float = Field(
        900.0, gt=0, description="Window (seconds) over which failed sign-ins are counted."
    )
    invite_redemptions_per_window: int = Field(
        20, ge=1, description="Invite link openings allowed per address per window."
    )
    invite_window: float = Field(
        600.0, gt=0, description="Window (seconds) over which invite openings are counted."
    )
    setup_link_ttl: float = Field(
        3600.0, gt=0, description="Seconds the first-run setup link stays valid."
    )
    account_link_ttl: float = Field(
        259200.0, gt=0, description="Seconds a set-password link for a clinician stays valid."
    )
    invite_grace: float = Field(
        3600.0,
        ge=0,
        description="Seconds an invite stays valid after its session's planned end.",
    )
    invite_default_ttl: float = Field(
        86400.0, gt=0, description="Lifetime of an invite made without a scheduled session."
    )
    group_invite_passes: int = Field(
        50, ge=1, le=1000, description="Most patients one group invite link can admit."
    )
    password_min_length: int = Field(12, ge=8, le=128, description="Shortest password allowed.")
    lobby_limit: int = Field(
        20, ge=1, le=100, description="Most people waiting in one room's lobby at once."
    )
    resume_after_restart: bool = Field(
        True,
        description="Keep open sessions across a server restart: seats are held for the "
        "reconnect window and pair work or segments resume with the time that was left.",
    )
    resume_window: float = Field(
        600.0,
        gt=0,
        description="Longest time (s) the server may be down and still resume its "
        "sessions; after longer, they are ended at start-up.",
    )
    resume_heartbeat: float = Field(
        5.0,
        gt=0,
        le=60,
        description="How often (s) live sessions' saved state is marked current: after a "
        "crash, at most this much of a running timer is given back twice.",
    )
    pairs_min_seconds: float = Field(60.0, gt=0, description="Shortest pair work (s).")
    pairs_max_seconds: float = Field(3600.0, gt=0, description="Longest pair work (s).")
    segment_min_seconds: float = Field(
        600.0, gt=0, description="Shortest individual segment (s): 10 minutes."
    )
    segment_max_seconds: float = Field(
        1200.0, gt=0, description="Longest individual segment (s): 20 minutes."
    )
    segment_default_seconds: float = Field(
        900.0, gt=0, description="An individual segment's length unless chosen (s)."
    )
    timer_warning_seconds: float = Field(
        60.0,
        ge=0,
        description="How long before the end of pair work or a segment "
        "everyone in it is warned (s).",
    )
    timer_extension_max_seconds: float = Field(
        1800.0, gt=0, description="Most time one 'extend' adds (s)."
    )
    pairs_message_max_chars: int = Field(
        280, ge=1, le=2000, description="Longest message a clinician can send to all pairs."
    )
    segment_queue_max: int = Field(
        20, ge=1, le=64, description="Most people waiting in the individual-segment queue."
    )
    # The signalling message schema bounds a note at 12,000 characters (4 UTF-8 bytes
    # each still fits the smallest allowed max_message_bytes).
    note_max_chars: int = Field(
        10_000, ge=100, le=12_000, description="Longest note (characters); split longer ones."
    )
    note_max_versions: int = Field(
        2_000,
        ge=10,
        le=100_000,
        description="Most saved versions of one note (autosave adds one per pause in typing).",
    )
    note_max_per_author: int = Field(
        200, ge=1, le=10_000, description="Most notes one clinician writes in one session."
    )
    # Bounded above by the signalling schema (messages.SaveNoteRequest).
    note_topic_max_chars: int = Field(200, ge=1, le=200, description="Longest note topic.")
    note_max_tags: int = Field(
        16, ge=0, le=16, description="Most participants one note may be tagged with."
    )
    notes_purge_interval: float = Field(
        86_400.0,
        ge=60,
        description="How often (s) the server destroys the notes of sessions past their "
        "retention (daily by default; also `telecircle notes purge`).",
    )
    feedback_window: float = Field(
        7 * 86_400.0,
        gt=0,
        le=90 * 86_400.0,
        description="How long (s) after a session ends its patients may send their "
        "feedback on it (a week by default; their invite must still be valid, too).",
    )
    feedback_comment_max_chars: int = Field(
        2_000, ge=100, le=10_000, description="Longest comment on the patients' feedback form."
    )
    feedback_max_questions: int = Field(
        12, ge=1, le=40, description="Most questions on the patients' feedback form."
    )
    feedback_trend_sessions: int = Field(
        20,
        ge=2,
        le=200,
        description="How many of a group's latest sessions its feedback trend shows.",
    )
    time_zone: str = Field(
        "UTC",
        description="IANA time zone (e.g. Europe/Berlin) in which clinicians enter and "
        "read session times.",
    )
    secure_cookies: bool = Field(
        False,
        description="Mark cookies Secure. Set it when clients reach the server over HTTPS "
        "(also when TLS ends at a reverse proxy).",
    )

    @field_validator("host")
    @classmethod
    def _check_host(cls, value: str) -> str:
        try:
            ipaddress.ip_address(value)
        except ValueError:
            if not HOSTNAME.fullmatch(value):
                raise ValueError(f"{value!r} is neither an IP address nor a host name") from None
        return value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        if value and not value.startswith(SUPPORTED_DATABASE_SCHEMES):
            schemes = " or ".join(f"{s}..." for s in SUPPORTED_DATABASE_SCHEMES)
            raise ValueError(f"use {schemes} (or leave empty for SQLite in the data folder)")
        return value

    @field_validator("ice_host_addresses", mode="before")
    @classmethod
    def _split_addresses(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("ice_host_addresses")
    @classmethod
    def _check_addresses(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("at least one address is required")
        for address in value:
            try:
                ipaddress.ip_address(address)
            except ValueError:
                raise ValueError(f"{address!r} is not an IP address") from None
        return value

    @field_validator("time_zone")
    @classmethod
    def _check_time_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not a known IANA time zone") from None
        return value

    @model_validator(mode="after")
    def _check_limits(self) -> Settings:
        if self.default_room_limit > self.room_limit_ceiling:
            raise ValueError(
                f"default_room_limit ({self.default_room_limit}) is above "
                f"room_limit_ceiling ({self.room_limit_ceiling})"
            )
        if self.socket_frame_burst < self.message_burst + self.rate_limit_strikes:
            raise ValueError(
                "socket_frame_burst must be at least message_burst + rate_limit_strikes "
                f"({self.message_burst + self.rate_limit_strikes})"
            )
        if self.socket_frames_per_second < 2 * self.messages_per_second:
            raise ValueError("socket_frames_per_second must be at least 2 x messages_per_second")
        if self.ice_port_min:
            needed = ports_needed(
                self.max_live_sessions, self.room_limit_ceiling, len(self.ice_host_addresses)
            )
            available = self.ice_port_max - self.ice_port_min + 1
            if available < needed:
                raise ValueError(
                    f"the UDP port range TELECIRCLE_ICE_PORT_MIN..MAX ({self.ice_port_min}.."
                    f"{self.ice_port_max}) holds "
                    f"{available} ports; {self.max_live_sessions} full sessions "
                    f"(TELECIRCLE_MAX_LIVE_SESSIONS) of {self.room_limit_ceiling} need {needed}: "
                    "widen TELECIRCLE_ICE_PORT_MIN..MAX or lower TELECIRCLE_MAX_LIVE_SESSIONS"
                )
        if self.weak_video_probe_max < self.weak_video_probe_after:
            raise ValueError("weak_video_probe_max must be at least weak_video_probe_after")
        if self.pairs_min_seconds > self.pairs_max_seconds:
            raise ValueError("pairs_min_seconds is above pairs_max_seconds")
        if not (
            self.segment_min_seconds <= self.segment_default_seconds <= self.segment_max_seconds
        ):
            raise ValueError(
                "segment_default_seconds must lie between segment_min_seconds and "
                "segment_max_seconds"
            )
        return self

    def note_limits(self) -> NoteLimits:
        """The limits on notes, as the domain rules take them."""
        return NoteLimits(
            max_chars=self.note_max_chars,
            max_versions=self.note_max_versions,
            max_notes_per_author=self.note_max_per_author,
            max_topic_chars=self.note_topic_max_chars,
            max_tags=self.note_max_tags,
        )

    def feedback_limits(self) -> FeedbackLimits:
        """The limits on patients' feedback, as the domain rules take them."""
        return FeedbackLimits(
            comment_max_chars=self.feedback_comment_max_chars,
            max_questions=self.feedback_max_questions,
        )

    def timer_limits(self) -> TimerLimits:
        """The bounds of pair work and segments, as the domain rules take them."""
        return TimerLimits(
            breakout_min=self.pairs_min_seconds,
            breakout_max=self.pairs_max_seconds,
            segment_min=self.segment_min_seconds,
            segment_max=self.segment_max_seconds,
            segment_default=self.segment_default_seconds,
            warning_before=self.timer_warning_seconds,
            extension_max=self.timer_extension_max_seconds,
            message_max_chars=self.pairs_message_max_chars,
            queue_max=self.segment_queue_max,
        )

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'telecircle.db').resolve()}"

    @property
    def cookies_secure(self) -> bool:
        """Cookies are Secure when configured so, or when the public URL is HTTPS."""
        return self.secure_cookies or self.effective_public_url.startswith("https://")

    @property
    def effective_server_key_file(self) -> Path:
        if str(self.server_key_file) not in ("", "."):
            return self.server_key_file
        return self.data_dir / "server.key"

    @property
    def effective_key_dir(self) -> Path:
        if str(self.key_dir) not in ("", "."):
            return self.key_dir
        return self.data_dir / "keys"

    @property
    def effective_public_url(self) -> str:
        scheme = "https" if self.serves_https else "http"
        return (self.public_url or f"{scheme}://{self.host}:{self.port}").rstrip("/")


def load_settings(**overrides: Any) -> Settings:
    """Build settings from overrides, the environment and the optional TOML file.

    Raises :class:`ConfigError` with a readable message naming each bad setting.
    """
    file_values: dict[str, Any] = {}
    config_file = os.environ.get("TELECIRCLE_CONFIG_FILE")
    if config_file:
        path = Path(config_file)
        try:
            file_values = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(
                f"TELECIRCLE_CONFIG_FILE: cannot read {path}: {exc.strerror}"
            ) from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"TELECIRCLE_CONFIG_FILE: {path} is not valid TOML: {exc}") from exc
    env_names = {
        name for name in Settings.model_fields if f"TELECIRCLE_{name.upper()}" in os.environ
    }
    # Environment beats file: drop file values that the environment sets.
    merged = {k: v for k, v in file_values.items() if k not in env_names}
    merged.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings(**merged)
    except SettingsError as exc:
        raise ConfigError(f"Invalid configuration: {exc}") from None
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = ".".join(str(part) for part in error["loc"]) or "settings"
            env = f"TELECIRCLE_{name.upper()}" if name in Settings.model_fields else name
            problems.append(f"{env}: {error['msg'].removeprefix('Value error, ')}")
        raise ConfigError("Invalid configuration:\n  " + "\n  ".join(problems)) from None


def unknown_environment_settings() -> list[str]:
    """``TELECIRCLE_*`` variables that name no setting (usually a typo), sorted."""
    known = {f"TELECIRCLE_{name.upper()}" for name in Settings.model_fields}
    known.add("TELECIRCLE_CONFIG_FILE")
    return sorted(
        name
        for name in os.environ
        if name.startswith("TELECIRCLE_")
        and name not in known
        and not name.startswith("TELECIRCLE_TEST_")
    )
