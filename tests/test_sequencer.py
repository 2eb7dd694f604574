"""Loop playback in samples: positions, loops, tempo changes, switching, swing, clicks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from deepkeys.device.adapters.synth import (
    ALL_NOTES_OFF,
    CLICK_CHANNEL,
    CONTROL,
    LIVE_CHANNEL,
    NOTE_OFF,
    NOTE_ON,
    PROGRAM,
)
from deepkeys.device.appliance.sequencer import CLICK_ACCENT, CLICK_BEAT, Pattern, Sequencer
from deepkeys.device.encoding import Composition, Note, Track
from deepkeys.device.errors import UserError
from deepkeys.device.soundfont import default_soundfont

RATE = 48000
BEAT = 24000  # samples per beat at 120 bpm
STEP = BEAT // 4


def comp(
    notes: list[Note],
    n_steps: int = 16,
    swing: float = 0.5,
    channel: int = 1,
    drums: list[Note] | None = None,
) -> Composition:
    tracks = [Track("bass", 33, notes, channel=channel)]
    if drums is not None:
        tracks.append(Track("drums", 0, drums, is_drum=True))
    return Composition(tracks, n_steps, 120.0, swing)


def collect(
    seq: Sequencer,
    frames: int,
    block: int = 128,
    start: int = 0,
) -> list[tuple[int, int, int, int, int]]:
    """Every event in ``frames`` samples, as (absolute sample, status, ch, d1, d2)."""
    out = []
    for s in range(start, start + frames, block):
        out += [(s + off, st, ch, d1, d2) for off, st, ch, d1, d2 in seq.events_for_block(s, block)]
    return out


def notes_on(events: list[tuple[int, int, int, int, int]]) -> list[tuple[int, int]]:
    return [(s, d1) for s, st, ch, d1, d2 in events if st == NOTE_ON and ch != CLICK_CHANNEL]


def test_events_land_at_their_samples_at_a_known_tempo() -> None:
    seq = Sequencer(RATE, 120.0)
    seq.play(comp([Note(40, 0, 2), Note(43, 4, 5), Note(45, 9, 16)]))
    events = collect(seq, 2 * BEAT * 4)  # two loops of one bar
    bar = 4 * BEAT
    assert events[0] == (0, PROGRAM, 1, 33, 0)
    assert notes_on(events) == [
        (0, 40),
        (4 * STEP, 43),
        (9 * STEP, 45),
        (bar, 40),
        (bar + 4 * STEP, 43),
        (bar + 9 * STEP, 45),
    ]
    offs = [(s, d1) for s, st, ch, d1, d2 in events if st == NOTE_OFF]
    assert offs[:3] == [(2 * STEP, 40), (5 * STEP, 43), (bar, 45)]
    # At the loop point the last note ends before the first one starts again.
    at_bar = [(st, d1) for s, st, ch, d1, d2 in events if s == bar]
    assert at_bar.index((NOTE_OFF, 45)) < at_bar.index((NOTE_ON, 40))

    seq = Sequencer(RATE, 100.0)  # 28,800 samples a beat
    seq.play(comp([Note(40, 1, 2), Note(43, 6, 7)]))
    assert notes_on(collect(seq, 4 * 28800)) == [(7200, 40), (6 * 7200, 43)]


def test_block_size_does_not_change_the_timing() -> None:
    piece = comp(
        [Note(40 + i, 3 * i, 3 * i + 2) for i in range(5)],
        n_steps=16,
        drums=[Note(36, 0, 1), Note(38, 8, 9)],
    )
    results = []
    for block in (64, 128, 100, 4096):
        seq = Sequencer(RATE, 97.0)
        seq.play(piece)
        n = 3 * 4 * 29690
        results.append([e for e in collect(seq, n + block, block=block) if e[0] < n])
    assert results[0] == results[1] == results[2] == results[3]
    assert len(notes_on(results[0])) >= 3 * 7


def test_tempo_change_mid_loop_keeps_the_position() -> None:
    seq = Sequencer(RATE, 120.0)
    seq.play(comp([Note(40, 0, 1), Note(43, 8, 9)]))  # the second note on beat 2
    first = collect(seq, 36096)  # blocks up to beat 1.504
    assert seq.beats == pytest.approx(35968 / BEAT)
    seq.set_tempo(60.0)  # a beat now takes 48,000 samples
    rest = collect(seq, 200000, start=36096)
    assert seq.tempo == 60.0
    assert notes_on(first) == [(0, 40)]
    # The new tempo starts where the old one left off: no jump, no restart.
    at_change = 36096 / BEAT
    assert notes_on(rest)[0] == (36096 + round((2 - at_change) * 48000), 43)
    # The loop end (beat 4) also moves with the new tempo.
    assert notes_on(rest)[1] == (36096 + round((4 - at_change) * 48000), 40)


def test_queue_switches_exactly_at_the_loop_boundary() -> None:
    loops: list[tuple[int, int]] = []
    seq = Sequencer(RATE, 120.0, on_loop=lambda n, s: loops.append((n, s)))
    seq.play(comp([Note(40, 0, 16)]))  # one bar, held to the end
    before = collect(seq, 30000 // 128 * 128)
    seq.queue(comp([Note(50, 0, 4), Note(52, 4, 8)], channel=2))
    after = collect(seq, 3 * 96000, start=30000 // 128 * 128)
    assert notes_on(before) == [(0, 40)]
    assert notes_on(after)[:2] == [(96000, 50), (96000 + 4 * STEP, 52)]
    assert all(d1 != 40 for s, d1 in notes_on(after))  # the old loop never starts again
    assert (96000, NOTE_OFF, 1, 40, 0) in after  # and its held note ends right there
    assert loops[:3] == [(0, 0), (1, 96000), (2, 192000)]
    assert seq.loops >= 2


def test_stop_releases_every_note_and_goes_quiet() -> None:
    seq = Sequencer(RATE, 120.0)
    seq.play(comp([Note(40, 0, 16)], drums=[Note(36, 0, 1)]))
    collect(seq, 10240)
    seq.stop()
    events = seq.events_for_block(10240, 128)
    released = {ch for off, st, ch, d1, d2 in events if st == CONTROL and d1 == ALL_NOTES_OFF}
    assert released == {1, 9, CLICK_CHANNEL}
    assert collect(seq, 200000, start=10368) == []
    assert seq.state == "stopped" and seq.position() == (0, 0)


def test_stop_silences_the_synth(tmp_path: Path) -> None:
    pytest.importorskip("fluidsynth")
    from deepkeys.device.adapters.synth import Synth

    try:
        synth = Synth(default_soundfont(), reverb=False)
    except UserError:
        pytest.skip("no General MIDI SoundFont installed")
    seq = Sequencer(RATE, 120.0)
    piece = comp([Note(60, 0, 64), Note(64, 0, 64)], n_steps=64)
    piece.tracks[0].program = 19  # organ: it would hold for the four bars
    seq.play(piece)

    def run(seconds: float, start: int) -> np.ndarray:
        blocks = []
        for s in range(start, start + int(seconds * RATE), 128):
            blocks.append(synth.render(128, seq.events_for_block(s, 128)).astype(float))
        return np.concatenate(blocks)

    playing = run(0.5, 0)
    level = np.sqrt(np.mean(playing[-4800:] ** 2))
    assert level > 100
    seq.stop()
    after = run(0.6, 24064)
    assert np.sqrt(np.mean(after[-4800:] ** 2)) < 0.01 * level
    synth.close()


def test_swing_moves_the_off_beats() -> None:
    notes = [Note(40 + s, s, s + 1) for s in range(8)]
    straight, swung = Sequencer(RATE, 120.0), Sequencer(RATE, 120.0)
    straight.play(comp(notes, swing=0.5))
    swung.play(comp(notes, swing=2 / 3))
    flat = [s for s, _ in notes_on(collect(straight, 48000))]
    swing = [s for s, _ in notes_on(collect(swung, 48000))]
    assert flat == [i * STEP for i in range(8)]
    # The 8th-note off-beat moves from half to two thirds of the beat; beats stay.
    assert swing == [0, 8000, 16000, 20000, 24000, 32000, 40000, 44000]
    assert swing[::4] == flat[::4]


def test_count_in_clicks_then_starts_the_composition() -> None:
    loops: list[tuple[int, int]] = []
    seq = Sequencer(RATE, 120.0, on_loop=lambda n, s: loops.append((n, s)))
    seq.count_in(bars=1, then=comp([Note(40, 0, 4)]))
    first = collect(seq, 128)
    assert seq.state == "count_in" and seq.position() == (-1, 0)
    events = first + collect(seq, 2 * 96000, start=128)
    clicks = [(s, d1, d2) for s, st, ch, d1, d2 in events if ch == CLICK_CHANNEL and st == NOTE_ON]
    accent, beat = CLICK_ACCENT, CLICK_BEAT
    assert clicks == [(0, *accent), (BEAT, *beat), (2 * BEAT, *beat), (3 * BEAT, *beat)]
    assert notes_on(events)[0] == (96000, 40)
    assert loops[0] == (0, 96000)
    assert seq.state == "playing"


def test_count_in_without_a_composition_runs_on_for_recording() -> None:
    seq = Sequencer(RATE, 120.0)
    seq.metronome = True
    seq.count_in(bars=2)
    events = collect(seq, 12 * BEAT)
    clicks = [s for s, st, ch, d1, d2 in events if ch == CLICK_CHANNEL and st == NOTE_ON]
    assert clicks == [i * BEAT for i in range(12)]  # 8 count-in beats, then the metronome
    accents = [s for s, st, ch, d1, d2 in events if ch == CLICK_CHANNEL and d1 == CLICK_ACCENT[0]]
    assert accents == [0, 4 * BEAT, 8 * BEAT]
    now = 8 * BEAT + 4 * BEAT + 5 * STEP  # bar 0 began after the count-in
    collect(seq, now - 12 * BEAT + 128, start=12 * BEAT)  # the last block starts at `now`
    assert seq.position() == (1, 5)


def test_metronome_clicks_on_each_beat_while_looping() -> None:
    seq = Sequencer(RATE, 120.0)
    seq.metronome = True
    seq.play(comp([Note(40, 2, 3)], n_steps=32))
    events = collect(seq, 2 * 96000)
    clicks = [(s, d1) for s, st, ch, d1, d2 in events if ch == CLICK_CHANNEL]
    assert [s for s, _ in clicks] == [i * BEAT for i in range(8)]
    assert [d1 for s, d1 in clicks if s % 96000 == 0] == [CLICK_ACCENT[0]] * 2
    # Merged into the block's events in sample order.
    samples = [s for s, *_ in events]
    assert samples == sorted(samples)


def test_position_follows_the_grid_with_swing() -> None:
    seq = Sequencer(RATE, 120.0)
    seq.play(comp([Note(40, 0, 1)], n_steps=32, swing=2 / 3))
    collect(seq, 96000 + 16000 + 128)  # the last block starts at bar 1's swung step 2
    assert seq.position() == (1, 2)


def test_channels_avoid_the_keys_and_the_click() -> None:
    piece = Composition(
        [
            Track("melody", 0, [Note(72, 0, 4)], channel=LIVE_CHANNEL),
            Track("bass", 33, [Note(36, 0, 4)], channel=1),
            Track("click?", 0, [Note(60, 0, 4)], channel=CLICK_CHANNEL),
            Track("drums", 0, [Note(36, 0, 1)], is_drum=True),
        ],
        16,
        120.0,
    )
    pattern = Pattern.from_composition(piece)
    assert LIVE_CHANNEL not in pattern.channels and CLICK_CHANNEL not in pattern.channels
    assert 1 in pattern.channels and 9 in pattern.channels
    assert len(pattern.channels) == 4


def test_notes_past_the_loop_end_are_cut_there() -> None:
    pattern = Pattern.from_composition(comp([Note(40, 12, 40)]))
    assert pattern.length == 4.0
    assert [(b, st) for b, st, *_ in pattern.events if st != PROGRAM] == [
        (3.0, NOTE_ON),
        (4.0, NOTE_OFF),
    ]


def test_an_empty_composition_cannot_loop() -> None:
    with pytest.raises(ValueError):
        Pattern.from_composition(comp([], n_steps=0))
