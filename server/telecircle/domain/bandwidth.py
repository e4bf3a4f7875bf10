"""Which videos a receiver on a weak connection stops getting, and when it tries again.

A receiver on a poor connection (a phone on a weak signal) cannot take every video of
the group. Its browser says so in two ways: the share of packets it lost (RTCP receiver
reports) and the bandwidth it estimates it can receive (REMB). A browser's estimate
trails what it is sent (it grows a few per cent a second, up to 1.5 times what arrives)
and drops at once when it sees queues building; so congestion is too much loss over
the receiver's streams, or an estimate that fell and is well below what is sent, either
lasting a hold. Then the least important video is paused for that receiver only; audio
always continues. When the estimate has room for the most important paused video it
comes back (with a keyframe); since an estimate cannot grow past 1.5 times what
arrives, a paused video is also tried again after a while (a probe), and a probe that
brings congestion back waits twice as long before the next one.

Pure rules: times are seconds from any monotonic clock, rates are bits per second.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from telecircle.domain.ids import ParticipantId


@dataclass(frozen=True, slots=True)
class BandwidthPolicy:
    """The thresholds; every one is a setting of the server (see config.py)."""

    # A paused video comes back when the estimate covers what is sent with it times this.
    headroom: float = 1.2
    # An estimate this much below the previous one is a fall (the browser saw queues).
    fall: float = 0.95
    # A fall counts as congestion once the estimate is below what is sent times this: a
    # browser's estimator also falls (to about 0.85 of what arrives) on a jittery link
    # that carries everything, and a bottleneck takes it far lower.
    pause_below: float = 0.7
    # A receiver report with at least this fraction lost counts as congestion (random
    # loss on a link, which pausing video does not cure, stays below it: NACKs repair it).
    loss_limit: float = 0.2
    # Seconds between two changes for one receiver: the estimate settles in between.
    hold: float = 2.0
    # Seconds before a paused video is first tried again; doubled after each probe that
    # brought congestion back, up to ``probe_max``.
    probe_after: float = 8.0
    probe_max: float = 64.0

    def __post_init__(self) -> None:
        if self.headroom < 1.0:
            raise ValueError("headroom must be at least 1")
        if not 0.0 < self.fall < 1.0:
            raise ValueError("fall must be in (0, 1)")
        if not 0.0 < self.pause_below <= 1.0:
            raise ValueError("pause_below must be in (0, 1]")
        if not 0.0 < self.loss_limit <= 1.0:
            raise ValueError("loss_limit must be in (0, 1]")
        if self.hold <= 0 or self.probe_after <= 0 or self.probe_max < self.probe_after:
            raise ValueError("hold and probe times must be positive, probe_max >= probe_after")


DEFAULT_BANDWIDTH_POLICY = BandwidthPolicy()


# Seconds a figure counts once no newer one came for the same streams (a paused
# stream's receiver has nothing to report on, and goes quiet).
REPORT_LIFETIME = 5.0


@dataclass(frozen=True, slots=True)
class Video:
    """One video sent (or paused) to the receiver, and its current rate."""

    publisher: ParticipantId
    bits_per_second: float


@dataclass(frozen=True, slots=True)
class Report:
    """What the receiver said, and what it is sent.

    ``videos`` lists every video meant for the receiver, most important first (the
    person speaking most recently first); ``audio_bps`` is the audio sent to it.
    ``estimate_bps`` is None when this report carries no estimate (a receiver report),
    ``loss`` is None when it carries no loss figure (a REMB). A browser sends one
    estimate (and one receiver report) for all the streams it receives, some receivers
    (aiortc's) one per stream: ``streams`` names the streams a figure covers. The
    receiver's estimate is the sum of the latest estimate of each set of streams, its
    loss the mean of the latest loss of each, over those heard from in the last
    ``REPORT_LIFETIME`` seconds (one stream's report, a few packets, says little)."""

    now: float
    videos: Sequence[Video]
    audio_bps: float = 0.0
    estimate_bps: float | None = None
    loss: float | None = None
    streams: tuple[int, ...] = ()


class VideoBudget:
    """The paused videos of one receiver. Feed it every report; it says what changed."""

    def __init__(self, policy: BandwidthPolicy) -> None:
        self._policy = policy
        self._paused: list[ParticipantId] = []
        self._estimates: dict[tuple[int, ...], tuple[float, float]] = {}
        self._losses: dict[tuple[int, ...], tuple[float, float]] = {}
        self._fell_at = float("-inf")
        self._congested_since: float | None = None
        # Why the last change was made, and the figures it was made on (for the log):
        # "loss", "estimate" (pauses), "room", "probe" (resumes).
        self.last_change = ""
        self.last_figures: tuple[float | None, float | None, float] = (None, None, 0.0)
        self._last_change = float("-inf")
        self._probe_wait = policy.probe_after
        self._probe_at = float("inf")
        self._probing_since: float | None = None

    @property
    def paused(self) -> frozenset[ParticipantId]:
        return frozenset(self._paused)

    def update(self, report: Report) -> bool:
        """Apply one report; True if the set of paused videos changed."""
        policy = self._policy
        fell = False
        now = report.now
        # Figures not renewed for a while are gone first: an estimate from before a pause
        # is no base for a fall.
        for figures in (self._estimates, self._losses):
            for streams, (_, at) in list(figures.items()):
                if now - at > REPORT_LIFETIME:
                    del figures[streams]
        if report.estimate_bps is not None:
            # A fall is the same streams' estimate dropping, never a set going quiet.
            previous = self._estimates.get(report.streams)
            fell = previous is not None and report.estimate_bps < previous[0] * policy.fall
            self._estimates[report.streams] = (report.estimate_bps, now)
        if report.loss is not None:
            self._losses[report.streams] = (report.loss, now)
        estimate = sum(bps for bps, _ in self._estimates.values()) if self._estimates else None
        losses = [lost for lost, _ in self._losses.values()]
        wanted = [v.publisher for v in report.videos]
        before = list(self._paused)
        # Videos no longer meant for this receiver are no longer paused for it.
        self._paused = [p for p in self._paused if p in wanted]
        rates = {v.publisher: v.bits_per_second for v in report.videos}
        active = [p for p in wanted if p not in self._paused]
        # Estimates cover the streams that carry abs-send-time: the videos, not audio.
        video_sending = sum(rates[p] for p in active)
        sending = video_sending + report.audio_bps
        mean_loss = sum(losses) / len(losses) if losses else None
        self.last_figures = (mean_loss, estimate, sending)
        if fell:
            self._fell_at = now
        lossy = mean_loss is not None and mean_loss >= policy.loss_limit
        # Below what is sent after a fall (an estimate that merely trails is not).
        overused = (
            estimate is not None
            and estimate < video_sending * policy.pause_below
            and now - self._fell_at <= REPORT_LIFETIME
        )
        if lossy or overused:
            if self._congested_since is None:
                self._congested_since = now
        else:
            self._congested_since = None
        # Congestion counts once it has lasted a hold: one report says little.
        congested = self._congested_since is not None and now - self._congested_since >= policy.hold
        self._end_probe_if_survived(now)
        if now - self._last_change >= policy.hold:
            if congested and active:
                self.last_change = "loss" if lossy else "estimate"
                self._pause(active[-1], now)
            elif self._congested_since is None and self._paused:
                ahead = min(self._paused, key=wanted.index)
                fits = estimate is not None and (
                    estimate >= (video_sending + rates[ahead]) * policy.headroom
                )
                if fits or now >= self._probe_at:
                    self.last_change = "room" if fits else "probe"
                    self._resume(ahead, now, probe=not fits)
        return self._paused != before

    def _pause(self, publisher: ParticipantId, now: float) -> None:
        policy = self._policy
        if self._probing_since is not None:
            # The probe brought the congestion back: wait longer before the next one.
            self._probe_wait = min(self._probe_wait * 2, policy.probe_max)
            self._probing_since = None
        self._paused.append(publisher)
        self._last_change = now
        self._probe_at = now + self._probe_wait

    def _resume(self, publisher: ParticipantId, now: float, *, probe: bool) -> None:
        self._paused.remove(publisher)
        self._last_change = now
        self._probing_since = now if probe else None
        if not probe:
            self._probe_wait = self._policy.probe_after
        self._probe_at = now + self._probe_wait if self._paused else float("inf")

    def _end_probe_if_survived(self, now: float) -> None:
        # A probe's congestion shows within a hold and must last one: three holds.
        if self._probing_since is not None and now - self._probing_since >= 3 * self._policy.hold:
            self._probing_since = None
            self._probe_wait = self._policy.probe_after


class RateMeter:
    """The rate of one stream over the last complete window of ``window`` seconds.

    Cheap enough for every packet: one comparison and one addition per :meth:`add`."""

    __slots__ = ("_current", "_previous", "_start", "_window")

    def __init__(self, window: float = 1.0) -> None:
        if window <= 0:
            raise ValueError("window must be positive")
        self._window = window
        self._start = 0.0
        self._current = 0
        self._previous = 0

    def add(self, size: int, now: float) -> None:
        """Count a packet of ``size`` bytes seen at ``now``."""
        if now - self._start >= self._window:
            self._roll(now)
        self._current += size

    def bits_per_second(self, now: float) -> float:
        if now - self._start >= self._window:
            self._roll(now)
        return self._previous * 8 / self._window

    def _roll(self, now: float) -> None:
        windows = int((now - self._start) // self._window)
        self._previous = self._current if windows == 1 else 0
        self._current = 0
        self._start += windows * self._window
