"""The recording clock and the take: count-in, bars, rhythm assist, trimming, odd input."""

from __future__ import annotations

from typing import Any, cast

import pytest

from deepkeys.device.appliance.take import RawNote, Take, TakeRecorder
from deepkeys.device.encoding import Melody, Note
from deepkeys.device.events import NoteOff, NoteOn

# 100 BPM: a beat is 0.6 s, a 16th step 0.15 s, a bar 2.4 s.
BEAT, STEP, BAR = 0.6, 0.15, 2.4


def rec_100(start: float = 0.0, **kw: Any) -> TakeRecorder:
    return TakeRecorder(tempo_bpm=100, start_t=start, **kw)


def at(step: float, rec: TakeRecorder) -> float:
    """The time of (fractional) grid step ``step`` of the recorded bars."""
    return rec.record_t + step * STEP


def play(
    rec: TakeRecorder, pitch: int, on_step: float, off_step: float, velocity: int = 80
) -> None:
    rec.note_on(pitch, velocity, at(on_step, rec))
    rec.note_off(pitch, at(off_step, rec))


# --------------------------------------------------------------------------- the clock
def test_no_count_in_records_at_once():
    rec = rec_100(start=3.0, count_in_bars=0)
    assert rec.record_t == 3.0
    assert rec.phase(3.0) == "recording"


def test_recording_starts_after_the_count_in_and_ends_after_max_bars():
    rec = rec_100(start=10.0)
    assert rec.record_t == pytest.approx(12.4)
    assert rec.end_t == pytest.approx(12.4 + 8 * BAR)
    assert rec.phase(12.39) == "count_in"
    assert rec.phase(12.4) == "recording"
    assert rec.phase(rec.end_t - 0.001) == "recording"
    assert rec.phase(rec.end_t) == "full"


@pytest.mark.parametrize(
    "t, bar",
    [
        (0.0, -1),
        (2.39, -1),
        (2.4, 0),
        (4.79, 0),
        (4.8, 1),
        (2.4 + 7 * BAR + 0.1, 7),
        (2.4 + 8 * BAR, 8),
    ],
)
def test_bar_at(t, bar):
    assert rec_100().bar_at(t) == bar


def test_bad_arguments():
    for kw in ({"tempo_bpm": 0}, {"count_in_bars": -1}, {"max_bars": 0}):
        args: dict[str, Any] = {"tempo_bpm": 100, "start_t": 0.0} | kw
        with pytest.raises(ValueError):
            TakeRecorder(**args)


# --------------------------------------------------------------------------- rhythm assist
@pytest.mark.parametrize(
    "played_on, played_off, start, end",
    [
        (0.0, 2.0, 0, 2),  # on the grid
        (0.3, 1.8, 0, 2),  # a little late, a little early: snap back
        (3.6, 6.4, 4, 6),  # early onset, late release
        (4.49, 4.51, 4, 5),  # a grace note: at least one step
        (4.5, 5.2, 5, 6),  # exactly half way: the later step; then at least one step
        (-0.4, 1.0, 0, 1),  # up to half a step early in the count-in still counts as step 0
    ],
)
def test_onsets_and_ends_snap_to_the_nearest_16th(played_on, played_off, start, end):
    rec = rec_100()
    play(rec, 60, played_on, played_off)
    take = rec.stop(at(16, rec))
    assert take is not None
    assert take.notes == [Note(60, start, end, 80)]


def test_late_and_early_notes_of_a_phrase():
    rec = rec_100()
    # C D E F on the beats, each played up to 40 ms off (a 16th is 150 ms).
    for pitch, beat, drift in [(60, 0, +0.03), (62, 1, -0.04), (64, 2, +0.04), (65, 3, -0.02)]:
        on = rec.record_t + beat * BEAT + drift
        rec.note_on(pitch, 90, on)
        rec.note_off(pitch, on + 0.5)  # released a bit before the next beat
    take = rec.stop(rec.record_t + BAR)
    assert take is not None
    assert [(n.pitch, n.start, n.end) for n in take.notes] == [
        (60, 0, 4),
        (62, 4, 7),
        (64, 8, 12),
        (65, 12, 15),
    ]
    assert take.n_steps == 16


def test_velocities_are_kept():
    rec = rec_100()
    play(rec, 60, 0, 2, velocity=33)
    play(rec, 62, 4, 6, velocity=120)
    take = rec.stop(at(16, rec))
    assert take is not None
    assert [n.velocity for n in take.notes] == [33, 120]


def test_chords_become_the_top_line():
    rec = rec_100()
    play(rec, 60, 0, 8)
    play(rec, 67, 0, 4)
    take = rec.stop(at(16, rec))
    assert take is not None
    assert [(n.pitch, n.start, n.end) for n in take.notes] == [(67, 0, 4), (60, 4, 8)]


def test_a_key_struck_again_while_down_ends_the_first_note():
    rec = rec_100()
    rec.note_on(60, 80, at(0, rec))
    rec.note_on(60, 80, at(4, rec))  # no note-off in between
    rec.note_off(60, at(6, rec))
    take = rec.stop(at(16, rec))
    assert take is not None
    assert [(n.start, n.end) for n in take.notes] == [(0, 4), (4, 6)]
    assert take.orphan_offs == 0


def test_note_on_with_velocity_zero_is_a_note_off():
    rec = rec_100()
    rec.note_on(60, 80, at(0, rec))
    rec.note_on(60, 0, at(3, rec))
    take = rec.stop(at(16, rec))
    assert take is not None
    assert take.notes == [Note(60, 0, 3, 80)]


def test_feed_takes_events():
    rec = rec_100()
    rec.feed(NoteOn(64, 70, at(2, rec)))
    rec.feed(NoteOff(64, at(5, rec)))
    take = rec.stop(at(16, rec))
    assert take is not None
    assert take.notes == [Note(64, 2, 5, 70)]


# --------------------------------------------------------------------------- odd input
def test_orphan_note_offs_are_ignored_and_counted():
    rec = rec_100()
    rec.note_off(61, at(1, rec))  # never struck
    play(rec, 60, 0, 2)
    rec.note_off(60, at(3, rec))  # a second off for the same note
    take = rec.stop(at(16, rec))
    assert take is not None
    assert take.notes == [Note(60, 0, 2, 80)]
    assert take.orphan_offs == 2
    assert rec.orphan_offs == 2


def test_held_notes_end_at_stop():
    rec = rec_100()
    rec.note_on(60, 80, at(0, rec))
    rec.note_on(64, 80, at(8, rec))
    take = rec.stop(at(14, rec))
    assert take is not None
    assert take.notes == [Note(60, 0, 8, 80), Note(64, 8, 14, 80)]
    assert take.orphan_offs == 0


def test_a_note_begun_in_the_count_in_is_dropped_and_counted():
    rec = rec_100()
    rec.note_on(55, 80, rec.record_t - BEAT)  # a beat early
    rec.note_off(55, at(2, rec))
    play(rec, 60, 4, 6)
    take = rec.stop(at(16, rec))
    assert take is not None
    assert take.notes == [Note(60, 4, 6, 80)]
    assert take.dropped == 1


def test_notes_before_the_count_in_or_after_the_end_are_not_seen():
    rec = rec_100(start=10.0, max_bars=1)
    rec.note_on(50, 80, 9.0)  # before RECORD
    rec.note_off(50, 10.5)  # so its off is an orphan
    rec.note_on(52, 80, rec.end_t + 0.1)  # after max_bars
    play(rec, 60, 0, 4)
    take = rec.stop(rec.end_t + 1.0)
    assert take is not None
    assert take.notes == [Note(60, 0, 4, 80)]
    assert take.orphan_offs == 1


def test_events_after_stop_are_ignored():
    rec = rec_100()
    play(rec, 60, 0, 2)
    take = rec.stop(at(16, rec))
    assert take is not None
    rec.note_on(62, 80, at(17, rec))
    rec.note_off(99, at(18, rec))
    assert rec.stopped and rec.orphan_offs == 0
    assert take.notes == [Note(60, 0, 2, 80)]


def test_an_empty_take_is_none():
    assert rec_100().stop(10.0) is None
    rec = rec_100()
    rec.note_off(60, at(1, rec))  # only an orphan
    assert rec.stop(at(16, rec)) is None
    rec = rec_100()
    rec.note_on(60, 80, 0.5)  # only a count-in note
    rec.note_off(60, 1.0)
    assert rec.stop(at(16, rec)) is None


def test_stopping_in_the_count_in_gives_nothing():
    rec = rec_100()
    rec.note_on(60, 80, 1.0)
    assert rec.stop(1.5) is None


# --------------------------------------------------------------------------- bars
@pytest.mark.parametrize(
    "stop_bars, last_on_step, bars",
    [
        (4.0, 50, 4),  # stopped on the bar line
        (4.3, 50, 4),  # a late press does not add an empty bar
        (4.6, 50, 5),  # past half a bar: that bar was recorded
        (3.7, 50, 4),  # a little early
        (2.2, 50, 4),  # stopped early, but the last note is in bar 4
        (0.2, 3, 1),  # at least one bar
        (20.0, 3, 8),  # at most max_bars (stop is clamped to the end)
    ],
)
def test_the_take_lasts_whole_bars(stop_bars, last_on_step, bars):
    rec = rec_100()
    play(rec, 60, 0, 1)
    play(rec, 62, last_on_step, last_on_step + 1)
    take = rec.stop(rec.record_t + stop_bars * BAR)
    assert take is not None
    assert take.n_steps == bars * 16
    assert max(n.end for n in take.notes) <= take.n_steps


def test_auto_stop_after_8_bars():
    rec = rec_100(start=0.0)
    assert rec.end_t == pytest.approx(2.4 + 8 * 2.4)
    rec.note_on(60, 80, at(0, rec))
    rec.note_on(72, 80, at(8 * 16 - 2, rec))  # still held when the bars are full
    assert rec.phase(rec.end_t) == "full"
    take = rec.stop(rec.end_t)
    assert take is not None
    assert take.n_steps == 8 * 16
    assert take.notes == [Note(60, 0, 126, 80), Note(72, 126, 128, 80)]


def test_a_note_that_snaps_past_the_last_bar_is_dropped():
    rec = rec_100(max_bars=1)
    play(rec, 60, 0, 4)
    rec.note_on(62, 80, at(15.7, rec))  # rounds to step 16: outside 1 bar
    take = rec.stop(rec.end_t)
    assert take is not None
    assert take.notes == [Note(60, 0, 4, 80)]
    assert take.dropped == 1


# --------------------------------------------------------------------------- the take
def test_the_take_is_a_melody_with_its_raw_times():
    rec = rec_100(start=1.0, rhythm_assist=False)
    rec.note_on(60, 80, at(0.3, rec))
    rec.note_off(60, at(1.8, rec))
    take = rec.stop(at(16, rec))
    assert isinstance(take, Take) and isinstance(take, Melody)
    assert (take.tempo_bpm, take.source, take.rhythm_assist) == (100.0, "take", False)
    # The grid the model needs, whatever the setting...
    assert take.notes == [Note(60, 0, 2, 80)]
    # ...and the performance as played, in seconds from bar 0, for saving.
    # pytest.approx stands in for RawNote's float fields: it equals them within tolerance.
    on, off = cast(float, pytest.approx(0.045)), cast(float, pytest.approx(0.27))
    assert take.raw == [RawNote(60, on, off, 80)]


def test_without_rhythm_assist_the_take_keeps_its_own_timing():
    rec = rec_100(rhythm_assist=False)
    play(rec, 60, 0.3, 1.8, velocity=70)  # late and short of the grid
    take = rec.stop(at(16, rec))
    assert take is not None
    ons = [
        (beat, note, velocity)
        for beat, status, _, note, velocity in take.performance_events()
        if status == 0x90
    ]
    assert ons == [(pytest.approx(0.3 / 4), 60, 70)]  # a 16th is a quarter of a beat
    assert take.notes == [Note(60, 0, 2, 70)]  # the model still reads the grid


def test_rhythm_assist_is_on_by_default():
    rec = rec_100()
    play(rec, 60, 0, 1)
    take = rec.stop(at(16, rec))
    assert take is not None
    assert take.rhythm_assist is True
