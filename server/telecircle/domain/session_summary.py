"""What a session record sums up (pure): time attended, and billing code suggestions.

Times are UNIX epoch seconds. Nothing here decides a claim: the codes are suggestions
the clinician confirms against the payer's rules (see :func:`billing_suggestion`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from telecircle.domain.commands import LeaveReason
from telecircle.domain.events import (
    Event,
    MediaForced,
    MomentChanged,
    MovedToLobby,
    PairsEnded,
    PairsMessaged,
    PairsStarted,
    PairVisited,
    ParticipantAdmitted,
    ParticipantAway,
    ParticipantBack,
    ParticipantDenied,
    ParticipantJoined,
    ParticipantKnocked,
    ParticipantLeft,
    ParticipantRemoved,
    ScreenShared,
    SegmentEnded,
    SegmentQueued,
    SegmentStarted,
    SessionEnded,
    SessionLocked,
    TimerExtended,
    TimerWarned,
)
from telecircle.domain.ids import ParticipantId
from telecircle.domain.model import OthersDuringSegment

# CPT's time rule: a timed service counts once more than half of its time has passed,
# so the shortest psychotherapy time (30 minutes, CPT 90832) needs at least 16 minutes.
# Payers commonly hold group psychotherapy (90853, which names no time) to the same
# floor; less than this is flagged for the clinician to check, never dropped.
MIN_BILLABLE_MINUTES = 16

GROUP_PSYCHOTHERAPY = "90853"  # CPT: group psychotherapy (other than of a multiple-family group)
TELEHEALTH_MODIFIER = "95"  # synchronous telemedicine service rendered via real-time audio/video
TELEHEALTH_ELSEWHERE = "02"  # place of service: telehealth provided other than in patient's home
TELEHEALTH_AT_HOME = "10"  # place of service: telehealth provided in patient's home


@dataclass(frozen=True, slots=True)
class Interval:
    """From ``start`` to ``end``; an open interval (``end`` None) lasts until "now"."""

    start: float
    end: float | None = None

    def closed_at(self, now: float) -> tuple[float, float]:
        end = now if self.end is None else self.end
        return self.start, max(self.start, end)


def merged(intervals: Iterable[Interval], now: float) -> list[tuple[float, float]]:
    """The intervals closed at ``now``, sorted, overlapping ones merged, empty ones dropped."""
    spans = sorted(interval.closed_at(now) for interval in intervals)
    out: list[tuple[float, float]] = []
    for start, end in spans:
        if end <= start:
            continue
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def covered_seconds(intervals: Iterable[Interval], now: float) -> float:
    """Seconds covered by at least one interval (overlaps counted once)."""
    return sum(end - start for start, end in merged(intervals, now))


def attended_seconds(present: Sequence[Interval], away: Sequence[Interval], now: float) -> float:
    """Seconds present minus the time away (a dropped connection while the seat was
    held) that falls inside the presence; open intervals run to ``now``."""
    spans = merged(present, now)
    lost = 0.0
    for away_start, away_end in merged(away, now):
        for start, end in spans:
            lost += max(0.0, min(end, away_end) - max(start, away_start))
    return max(0.0, sum(end - start for start, end in spans) - lost)


def whole_seconds(seconds: float) -> int:
    """Whole seconds, rounded down, after rounding to the millisecond: times come back
    from the database at microsecond precision, so a stored 600 s can read 599.9999995."""
    return max(0, math.floor(round(seconds, 3)))


def whole_minutes(seconds: float) -> int:
    """Whole minutes, rounded down: a minute counts once it has fully passed."""
    return whole_seconds(seconds) // 60


def elapsed_label(seconds: float) -> str:
    """Time since the session started: ``mm:ss`` under an hour, else ``h:mm:ss``
    (before the start counts as 00:00)."""
    total = whole_seconds(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes:02d}:{secs:02d}"


def duration_label(seconds: float) -> str:
    """A length in words: ``40 s``, ``45 min``, ``1 h 30 min`` (whole units, rounded down)."""
    if seconds < 60:
        return f"{whole_seconds(seconds)} s"
    minutes = whole_minutes(seconds)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{minutes} min"


@dataclass(frozen=True, slots=True)
class BillingCode:
    """One suggested code: its system (``CPT``, ``POS``, ``modifier``), value, meaning."""

    system: str
    code: str
    meaning: str


@dataclass(frozen=True, slots=True)
class BillingSuggestion:
    """What a patient's attendance suggests: minutes, codes, and whether it looks short."""

    minutes: int
    codes: tuple[BillingCode, ...]
    too_short: bool


SUGGESTED_CODES = (
    BillingCode("CPT", GROUP_PSYCHOTHERAPY, "Group psychotherapy (not multiple-family)"),
    BillingCode("modifier", TELEHEALTH_MODIFIER, "Synchronous telehealth (audio and video)"),
    BillingCode("POS", TELEHEALTH_AT_HOME, "Telehealth in the patient's home"),
    BillingCode("POS", TELEHEALTH_ELSEWHERE, "Telehealth, patient not at home"),
)


def billing_suggestion(seconds_attended: float) -> BillingSuggestion:
    """The usual codes for group psychotherapy by telehealth, for a patient who attended
    ``seconds_attended``. Both places of service are offered: which applies depends on
    where the patient was, which the clinician confirms. ``too_short`` flags attendance
    under :data:`MIN_BILLABLE_MINUTES`."""
    minutes = whole_minutes(seconds_attended)
    return BillingSuggestion(minutes, SUGGESTED_CODES, minutes < MIN_BILLABLE_MINUTES)


# ------------------------------------------------------------------ seats, from events


@dataclass(frozen=True, slots=True)
class TurnedAway:
    """A denial at the lobby or a removal from the session: whom, by whom, when."""

    participant_id: ParticipantId
    by: ParticipantId
    at: float


@dataclass(frozen=True, slots=True)
class SeatHistory:
    """What the timeline says about the seats: who came through the lobby (patients),
    who was admitted, denied or removed, when lobby-only seats ended, and each seat's
    time away (a dropped connection while the seat was held)."""

    knocked: frozenset[ParticipantId]
    joined: frozenset[ParticipantId]
    admitted: frozenset[ParticipantId]
    denied: tuple[TurnedAway, ...]
    removed: tuple[TurnedAway, ...]
    lobby_left_at: Mapping[ParticipantId, float]
    away: Mapping[ParticipantId, tuple[Interval, ...]]


def seat_history(events: Sequence[Event]) -> SeatHistory:
    """Read the seats' story from the timeline (events in recording order)."""
    knocked: set[ParticipantId] = set()
    joined: set[ParticipantId] = set()
    admitted: set[ParticipantId] = set()
    present: set[ParticipantId] = set()
    denied: list[TurnedAway] = []
    removed: list[TurnedAway] = []
    lobby_left_at: dict[ParticipantId, float] = {}
    away_since: dict[ParticipantId, float] = {}
    away: dict[ParticipantId, list[Interval]] = {}

    def back(pid: ParticipantId, at: float) -> None:
        start = away_since.pop(pid, None)
        if start is not None:
            away.setdefault(pid, []).append(Interval(start, at))

    for event in events:
        if isinstance(event, ParticipantKnocked):
            knocked.add(event.participant_id)
        elif isinstance(event, ParticipantJoined):
            joined.add(event.participant_id)
            present.add(event.participant_id)
        elif isinstance(event, ParticipantAdmitted):
            admitted.add(event.participant_id)
            present.add(event.participant_id)
        elif isinstance(event, MovedToLobby):
            present.discard(event.participant_id)
        elif isinstance(event, ParticipantDenied):
            denied.append(TurnedAway(event.participant_id, event.by, event.at))
        elif isinstance(event, ParticipantRemoved):
            removed.append(TurnedAway(event.participant_id, event.by, event.at))
        elif isinstance(event, ParticipantAway):
            away_since.setdefault(event.participant_id, event.at)
        elif isinstance(event, ParticipantBack):
            back(event.participant_id, event.at)
        elif isinstance(event, ParticipantLeft):
            back(event.participant_id, event.at)
            if event.participant_id not in present:
                lobby_left_at[event.participant_id] = event.at
            present.discard(event.participant_id)
    for pid, start in away_since.items():
        away.setdefault(pid, []).append(Interval(start))
    return SeatHistory(
        knocked=frozenset(knocked),
        joined=frozenset(joined),
        admitted=frozenset(admitted),
        denied=tuple(denied),
        removed=tuple(removed),
        lobby_left_at=lobby_left_at,
        away={pid: tuple(spans) for pid, spans in away.items()},
    )


# ----------------------------------------------------------------- the timeline, told


@dataclass(frozen=True, slots=True)
class Happening:
    """One line of the timeline as a therapist reads it afterwards. ``minor`` lines
    (connections dropping, timer warnings) may be shown smaller."""

    at: float
    kind: str
    text: str
    minor: bool = False


# Why a seat ended, as said on the timeline; None: said by another line already (the
# denial, the removal, the end of the session).
LEAVE_WORDS: Mapping[LeaveReason, str | None] = MappingProxyType(
    {
        LeaveReason.LEFT: " left",
        LeaveReason.CONNECTION_LOST: " left (connection lost)",
        LeaveReason.SERVER_SHUTDOWN: " left (server shut down)",
        LeaveReason.REVOKED: " left (invite withdrawn or account disabled)",
        LeaveReason.SEAT_MOVED: " left (their link was opened on another device)",
        LeaveReason.MOVED_TO_LOBBY: " was moved to the lobby",
        LeaveReason.REMOVED: None,
        LeaveReason.DENIED: None,
        LeaveReason.SESSION_ENDED: None,
    }
)
ACTIVITY_WORDS: Mapping[str, str] = MappingProxyType(
    {"pairs": "pair work", "segment": "individual work"}
)


@dataclass(frozen=True, slots=True)
class _Line:
    """``prefix + names + suffix``; consecutive lines differing only in their names
    (an admit-all, a mute-all: one command, one moment) are told as one."""

    at: float
    kind: str
    prefix: str
    names: tuple[str, ...] = ()
    suffix: str = ""
    minor: bool = False


def joined_names(names: Sequence[str]) -> str:
    """``Ann``, ``Ann and Bo``, ``Ann, Bo and Cy``."""
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def narrate(events: Sequence[Event], name_of: Callable[[ParticipantId], str]) -> list[Happening]:
    """The timeline in words, in recording order. Leaves out what a therapist does not
    read back: a participant's own microphone and camera switches and raised hands.
    Never tells a pairs message's text (it is not stored; only that one was sent)."""
    teller = _Teller(name_of)
    lines = [line for event in events for line in teller.tell(event)]
    merged_lines: list[_Line] = []
    for line in lines:
        last = merged_lines[-1] if merged_lines else None
        if (
            last is not None
            and line.names
            and last.names
            and (last.at, last.kind, last.prefix, last.suffix)
            == (line.at, line.kind, line.prefix, line.suffix)
        ):
            merged_lines[-1] = _Line(
                last.at, last.kind, last.prefix, last.names + line.names, last.suffix, last.minor
            )
        else:
            merged_lines.append(line)
    return [
        Happening(
            line.at, line.kind, line.prefix + joined_names(line.names) + line.suffix, line.minor
        )
        for line in merged_lines
    ]


class _Teller:
    """Tells one event at a time, remembering what the words need: what each person had
    forced off, who is in the session (a leave from the lobby reads differently) and
    the running pairs (a visit names the pair)."""

    def __init__(self, name_of: Callable[[ParticipantId], str]) -> None:
        self._name = name_of
        self._forced: dict[ParticipantId, tuple[bool, bool]] = {}
        self._present: set[ParticipantId] = set()
        self._groups: tuple[tuple[ParticipantId, ...], ...] = ()

    def _names(self, ids: Iterable[ParticipantId]) -> str:
        return joined_names([self._name(pid) for pid in ids])

    def tell(self, event: Event) -> list[_Line]:
        at, kind = event.at, event.kind
        if isinstance(event, ParticipantKnocked):
            return [
                _Line(at, kind, "", (self._name(event.participant_id),), " arrived in the lobby")
            ]
        if isinstance(event, ParticipantJoined):
            self._present.add(event.participant_id)
            return [_Line(at, kind, "", (self._name(event.participant_id),), " joined")]
        if isinstance(event, ParticipantAdmitted):
            self._present.add(event.participant_id)
            return [
                _Line(
                    at,
                    kind,
                    f"{self._name(event.by)} admitted ",
                    (self._name(event.participant_id),),
                )
            ]
        if isinstance(event, ParticipantDenied):
            return [
                _Line(
                    at,
                    kind,
                    f"{self._name(event.by)} turned away ",
                    (self._name(event.participant_id),),
                    " from the lobby",
                )
            ]
        if isinstance(event, ParticipantLeft):
            return self._left(event)
        if isinstance(event, MediaForced):
            return self._forced_media(event)
        if isinstance(event, ParticipantAway):
            return [
                _Line(
                    at, kind, "", (self._name(event.participant_id),), "'s connection dropped", True
                )
            ]
        if isinstance(event, ParticipantBack):
            return [_Line(at, kind, "", (self._name(event.participant_id),), " reconnected", True)]
        if isinstance(event, MomentChanged) and event.needed:
            return [
                _Line(
                    at, kind, "", (self._name(event.participant_id),), " asked for a moment", True
                )
            ]
        if isinstance(event, MovedToLobby):
            self._present.discard(event.participant_id)
            return [
                _Line(
                    at,
                    kind,
                    f"{self._name(event.by)} moved ",
                    (self._name(event.participant_id),),
                    " to the lobby",
                )
            ]
        if isinstance(event, ParticipantRemoved):
            return [
                _Line(
                    at,
                    kind,
                    f"{self._name(event.by)} removed ",
                    (self._name(event.participant_id),),
                    " from the session",
                )
            ]
        if isinstance(event, SessionLocked):
            verb = "locked" if event.locked else "unlocked"
            return [_Line(at, kind, f"{self._name(event.by)} {verb} the session")]
        if isinstance(event, SessionEnded):
            return [_Line(at, kind, f"{self._name(event.by)} ended the session")]
        if isinstance(event, ScreenShared):
            verb = "started" if event.on else "stopped"
            return [
                _Line(
                    at,
                    kind,
                    "",
                    (self._name(event.participant_id),),
                    f" {verb} sharing their screen",
                )
            ]
        return self._activity(event)

    def _left(self, event: ParticipantLeft) -> list[_Line]:
        pid = event.participant_id
        in_session = pid in self._present
        self._present.discard(pid)
        self._forced.pop(pid, None)
        words = LEAVE_WORDS.get(event.reason)
        if words is None:
            return []
        if not in_session and event.reason is LeaveReason.LEFT:
            words = " left the lobby"
        return [_Line(event.at, event.kind, "", (self._name(pid),), words)]

    def _forced_media(self, event: MediaForced) -> list[_Line]:
        pid = event.participant_id
        audio_before, video_before = self._forced.get(pid, (False, False))
        self._forced[pid] = (event.audio_off, event.video_off)
        if event.by == pid:
            return []  # released by their own switch: the patient's own doing
        by, who = self._name(event.by), (self._name(pid),)
        lines = []
        if event.audio_off != audio_before:
            verb = "muted " if event.audio_off else "unmuted "
            lines.append(_Line(event.at, event.kind, f"{by} {verb}", who))
        if event.video_off != video_before:
            if event.video_off:
                lines.append(
                    _Line(event.at, "camera_forced", f"{by} turned off the camera of ", who)
                )
            else:
                lines.append(
                    _Line(event.at, "camera_forced", f"{by} allowed the camera of ", who, " again")
                )
        return lines

    def _activity(self, event: Event) -> list[_Line]:
        at, kind = event.at, event.kind
        if isinstance(event, PairsStarted):
            self._groups = event.groups
            pairs = "; ".join(
                f"pair {n}: {self._names(group)}" for n, group in enumerate(event.groups, start=1)
            )
            length = duration_label(event.ends_at - event.at)
            return [
                _Line(at, kind, f"{self._name(event.by)} started pair work ({length}) — {pairs}")
            ]
        if isinstance(event, PairVisited):
            by = self._name(event.by)
            if event.group is None:
                return [_Line(at, kind, f"{by} returned to the group")]
            group = self._groups[event.group] if 0 <= event.group < len(self._groups) else ()
            return [_Line(at, kind, f"{by} joined pair {event.group + 1} ({self._names(group)})")]
        if isinstance(event, PairsMessaged):
            return [_Line(at, kind, f"{self._name(event.by)} sent a message to all pairs")]
        if isinstance(event, PairsEnded):
            self._groups = ()
            if event.by is None:
                return [_Line(at, kind, "Pair work ended (time ran out)")]
            return [_Line(at, kind, f"{self._name(event.by)} ended pair work")]
        if isinstance(event, SegmentStarted):
            others = (
                "the others on hold"
                if event.others is OthersDuringSegment.HOLD
                else "the others together in the group"
            )
            length = duration_label(event.ends_at - event.at)
            return [
                _Line(
                    at,
                    kind,
                    f"{self._name(event.by)} started individual work with ",
                    (self._name(event.participant_id),),
                    f" ({length}; {others})",
                )
            ]
        if isinstance(event, SegmentQueued):
            return [
                _Line(
                    at,
                    kind,
                    f"{self._name(event.by)} queued ",
                    (self._name(event.participant_id),),
                    " for individual work",
                )
            ]
        if isinstance(event, SegmentEnded):
            who = (self._name(event.participant_id),)
            if event.by is None:
                return [_Line(at, kind, "Individual work with ", who, " ended (time ran out)")]
            return [_Line(at, kind, f"{self._name(event.by)} ended individual work with ", who)]
        if isinstance(event, TimerExtended):
            activity = ACTIVITY_WORDS.get(event.activity, event.activity)
            return [
                _Line(
                    at,
                    kind,
                    f"{self._name(event.by)} extended {activity}: it now ends in "
                    f"{duration_label(event.ends_at - event.at)}",
                )
            ]
        if isinstance(event, TimerWarned):
            activity = ACTIVITY_WORDS.get(event.activity, event.activity)
            left = duration_label(event.ends_at - event.at)
            return [_Line(at, kind, f"{activity.capitalize()} ends in {left}", minor=True)]
        return []  # a participant's own switches and hands: not read back
