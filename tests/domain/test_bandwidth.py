"""A weak receiver's video budget: what is paused for it, when it comes back."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from telecircle.domain.bandwidth import BandwidthPolicy, RateMeter, Report, Video, VideoBudget
from telecircle.domain.ids import ParticipantId

POLICY = BandwidthPolicy(headroom=1.2, loss_limit=0.1, hold=2.0, probe_after=8.0, probe_max=32.0)
A, B, C = ParticipantId("a"), ParticipantId("b"), ParticipantId("c")
# Most important first: A spoke last.
VIDEOS = [Video(A, 500_000), Video(B, 500_000), Video(C, 500_000)]
AUDIO = 100_000


def report(
    now: float,
    *,
    estimate: float | None = None,
    loss: float | None = None,
    videos: list[Video] = VIDEOS,
) -> Report:
    return Report(now, videos, AUDIO, estimate, loss)


def test_loss_that_lasts_pauses_the_least_important_video_one_at_a_time() -> None:
    budget = VideoBudget(POLICY)
    # One report says little: the loss must last a hold.
    assert not budget.update(report(0, loss=0.2))
    assert not budget.update(report(1, loss=0.3))
    assert budget.update(report(2, loss=0.2))
    assert budget.paused == {C}
    # Within the hold the estimate settles: nothing more changes.
    assert not budget.update(report(3, loss=0.3))
    assert budget.update(report(4, loss=0.2))
    assert budget.paused == {B, C}
    assert budget.update(report(6, loss=0.2))
    assert budget.paused == {A, B, C}
    # Nothing left to pause: audio is never what gives.
    assert not budget.update(report(9, loss=0.9))


def test_loss_in_one_report_only_changes_nothing() -> None:
    budget = VideoBudget(POLICY)
    assert not budget.update(report(0, loss=0.5))
    assert not budget.update(report(1, loss=0.0))
    assert not budget.update(report(3, loss=0.5))
    assert not budget.update(report(4, loss=0.05))
    assert budget.paused == frozenset()


def test_an_estimate_that_trails_what_is_sent_is_not_congestion() -> None:
    """After a join the browser's estimate grows slowly towards what it receives."""
    budget = VideoBudget(POLICY)
    for second, estimate in enumerate([300_000, 330_000, 360_000, 390_000]):
        assert not budget.update(report(second * 3, estimate=estimate))
    assert budget.paused == frozenset()


def test_an_estimate_that_falls_well_below_what_is_sent_pauses() -> None:
    budget = VideoBudget(POLICY)
    budget.update(report(0, estimate=2_000_000))
    # Fell, but still above the video sent (1.5 Mbit/s; estimates do not cover audio).
    assert not budget.update(report(3, estimate=1_700_000))
    # Fell to 0.85 of what is sent, as a jittery link that carries everything makes a
    # browser's estimator do: not congestion.
    assert not budget.update(report(6, estimate=1_275_000))
    assert not budget.update(report(8, estimate=1_275_000))
    # Fell well below what is sent (under 0.7 of it), and stays there: one video paused.
    assert not budget.update(report(9, estimate=1_000_000))
    assert budget.update(report(11, estimate=1_000_000))
    assert budget.paused == {C}


def pause_two(budget: VideoBudget) -> float:
    """Loss until B and C are paused; returns the time of the second pause."""
    for now in (0, 2, 4):
        budget.update(report(now, loss=0.5))
    assert budget.paused == {B, C}
    return 4.0


def test_room_in_the_estimate_brings_the_most_important_back_first() -> None:
    budget = VideoBudget(POLICY)
    paused_at = pause_two(budget)
    # Sending A's video: 0.5 Mbit/s; B fits at (0.5 + 0.5) * 1.2 = 1.2 Mbit/s (audio is
    # not in the estimate).
    assert not budget.update(report(paused_at + 2, estimate=1_190_000, loss=0.0))
    assert budget.update(report(paused_at + 3, estimate=1_200_000))
    assert budget.paused == {C}


def test_a_paused_video_is_probed_and_a_failed_probe_waits_twice_as_long() -> None:
    budget = VideoBudget(POLICY)
    budget.update(report(0, loss=0.5))
    assert budget.update(report(2, loss=0.5))
    assert budget.paused == {C}
    # The estimate trails what arrives: it never shows room, so a probe comes.
    assert not budget.update(report(9.9, estimate=700_000, loss=0.0))
    assert budget.update(report(10, estimate=700_000, loss=0.0))
    assert budget.paused == frozenset()
    # The probe brought loss back: paused again, next probe after 16 s.
    assert not budget.update(report(11, loss=0.3))
    assert budget.update(report(13, loss=0.3))
    assert not budget.update(report(28.9, loss=0.0))
    assert budget.update(report(29, loss=0.0))
    # This probe holds (no congestion for three holds): the wait is back to 8 s.
    assert not budget.update(report(35.5, loss=0.0))
    assert not budget.update(report(36, loss=0.3))
    assert budget.update(report(38, loss=0.3))
    assert not budget.update(report(45.9, loss=0.0))
    assert budget.update(report(46, loss=0.0))


def test_probes_wait_at_most_probe_max() -> None:
    budget = VideoBudget(POLICY)
    now = 0.0
    budget.update(report(now, loss=0.5))
    now = 2.0
    assert budget.update(report(now, loss=0.5))
    waits = []
    paused_at = now
    for _ in range(5):
        while not budget.update(report(now, loss=0.0)):
            now += 0.5
            assert now < 1000, "no probe came"
        waits.append(now - paused_at)
        budget.update(report(now + 1, loss=0.5))
        now += 3.0
        assert budget.update(report(now, loss=0.5))
        paused_at = now
    assert waits == [8.0, 16.0, 32.0, 32.0, 32.0]


def test_a_video_no_longer_sent_is_no_longer_paused() -> None:
    budget = VideoBudget(POLICY)
    budget.update(report(0, loss=0.5))
    budget.update(report(2, loss=0.5))
    assert budget.paused == {C}
    assert budget.update(report(3, videos=VIDEOS[:2]))
    assert budget.paused == frozenset()


@pytest.mark.parametrize(
    "bad",
    [
        {"headroom": 0.9},
        {"fall": 1.0},
        {"pause_below": 0.0},
        {"loss_limit": 0.0},
        {"hold": 0.0},
        {"probe_after": 10.0, "probe_max": 5.0},
    ],
)
def test_policies_that_cannot_work_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        BandwidthPolicy(**bad)


reports = st.lists(
    st.tuples(
        st.floats(0.0, 3.0),
        st.none() | st.floats(0.0, 5_000_000.0),
        st.none() | st.floats(0.0, 1.0),
        st.integers(0, 3),
    ),
    max_size=60,
)


@given(reports)
def test_paused_videos_are_always_sent_ones_and_change_once_per_hold(
    steps: list[tuple[float, float | None, float | None, int]],
) -> None:
    budget = VideoBudget(POLICY)
    now = 0.0
    changes: list[float] = []
    for gap, estimate, loss, count in steps:
        now += gap
        videos = VIDEOS[:count]
        before = budget.paused
        changed = budget.update(report(now, estimate=estimate, loss=loss, videos=videos))
        assert budget.paused <= {v.publisher for v in videos}
        assert changed == (budget.paused != before)
        if len(budget.paused ^ before & {v.publisher for v in videos}) > 0:
            changes.append(now)
    assert all(b - a >= POLICY.hold for a, b in itertools.pairwise(changes))


def test_a_rate_meter_gives_the_last_complete_window() -> None:
    meter = RateMeter(window=1.0)
    for tick in range(50):
        meter.add(1000, 10.0 + tick * 0.02)
    assert meter.bits_per_second(10.99) == 0.0  # the first window is not complete yet
    assert meter.bits_per_second(11.5) == 400_000.0
    meter.add(500, 11.6)
    assert meter.bits_per_second(12.2) == 4_000.0
    # Silence: a window with nothing in it, then nothing at all.
    assert meter.bits_per_second(13.1) == 0.0
    assert meter.bits_per_second(20.0) == 0.0
    with pytest.raises(ValueError):
        RateMeter(window=0)


def test_estimates_per_stream_add_up_and_one_going_quiet_is_not_a_fall() -> None:
    """aiortc's receivers estimate one stream each; a paused stream's receiver goes
    quiet, which must not read as the connection's estimate falling."""
    budget = VideoBudget(POLICY)
    for stream in (1, 2, 3):
        budget.update(Report(0.0, VIDEOS, AUDIO, 700_000, None, (stream,)))
    # 2.1 Mbit/s in all; stream 1's estimate drops 10 % and the total is still above the
    # video sent (1.5 Mbit/s): a fall, but no overuse.
    assert not budget.update(Report(3.0, VIDEOS, AUDIO, 630_000, None, (1,)))
    # Streams 2 and 3 go quiet (no estimate for 5 s): the total drops, not a fall.
    assert not budget.update(Report(8.5, VIDEOS, AUDIO, 630_000, None, (1,)))
    assert not budget.update(Report(10.5, VIDEOS, AUDIO, 630_000, None, (1,)))
    assert budget.paused == frozenset()
    # Stream 1 falls again, and 0.5 Mbit/s is well below what is sent: once it has
    # lasted a hold, one video is paused.
    assert not budget.update(Report(11.0, VIDEOS, AUDIO, 500_000, None, (1,)))
    assert budget.update(Report(13.0, VIDEOS, AUDIO, 500_000, None, (1,)))
    assert budget.paused == {C}


def test_losses_per_stream_are_averaged_over_the_streams() -> None:
    """One stream's report covers a few packets: 4 of 17 audio packets lost is 24 %, on
    a link that loses 5 % of everything."""
    budget = VideoBudget(POLICY)
    for stream in (1, 2, 3):
        assert not budget.update(Report(0.0, VIDEOS, AUDIO, None, 0.0, (stream,)))
    assert not budget.update(Report(0.5, VIDEOS, AUDIO, None, 0.24, (1,)))
    assert not budget.update(Report(1.0, VIDEOS, AUDIO, None, 0.05, (2,)))
    assert not budget.update(Report(3.0, VIDEOS, AUDIO, None, 0.0, (3,)))
    assert budget.paused == frozenset()
    # The mean over the streams reaches the test policy's limit (0.1), and stays there.
    assert not budget.update(Report(3.5, VIDEOS, AUDIO, None, 0.3, (3,)))
    assert budget.update(Report(5.5, VIDEOS, AUDIO, None, 0.3, (3,)))
    assert budget.paused == {C}


def test_an_estimate_from_before_a_pause_is_no_base_for_a_fall() -> None:
    """A paused stream's receiver goes quiet; when the video comes back its first
    estimate starts low again, which is not a fall from the estimate of long ago."""
    budget = VideoBudget(POLICY)
    assert not budget.update(Report(0.0, VIDEOS, AUDIO, 2_000_000, None, (1,)))
    # Ten seconds later, far below the old figure and below what is sent: no fall.
    for now in (10.0, 11.0, 12.0, 13.0):
        assert not budget.update(Report(now, VIDEOS, AUDIO, 300_000, None, (1,)))
    assert budget.paused == frozenset()
