"""MIDI files in and out: melodies read from any file, compositions written back.

This file also holds the bundled melodies' scores. To (re)write them:

    .venv/bin/python tests/test_midifile.py --write-melodies
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import mido
import pytest

from deepkeys.device.chords import Chord
from deepkeys.device.encoding import Composition, Melody, Note, Track
from deepkeys.device.errors import UserError
from deepkeys.device.generation.midifile import (
    read_melody,
    write_composition,
)
from deepkeys.device.gm import DRUM_CHANNEL

MELODY_DIR = Path(__file__).resolve().parent.parent / "device" / "melodies"

# --------------------------------------------------------------------------- bundled melodies
# Scores as (MIDI pitch, length in 16ths); public domain tunes, plus one of our own.
# Pitches: C4=60 D4=62 E4=64 F4=65 F#4=66 G4=67 A4=69 B4=71 C5=72 D5=74.
Q, DQ, E8, H = 4, 6, 2, 8  # quarter, dotted quarter, eighth, half

# Beethoven, Symphony No. 9, "Ode to Joy" (1824), in D major as in the symphony.
ODE_TO_JOY = [
    (66, Q),
    (66, Q),
    (67, Q),
    (69, Q),
    (69, Q),
    (67, Q),
    (66, Q),
    (64, Q),
    (62, Q),
    (62, Q),
    (64, Q),
    (66, Q),
    (66, DQ),
    (64, E8),
    (64, H),
    (66, Q),
    (66, Q),
    (67, Q),
    (69, Q),
    (69, Q),
    (67, Q),
    (66, Q),
    (64, Q),
    (62, Q),
    (62, Q),
    (64, Q),
    (66, Q),
    (64, DQ),
    (62, E8),
    (62, H),
]
# "Twinkle, Twinkle, Little Star" (French air "Ah! vous dirai-je, maman", 1761), C major.
TWINKLE = [
    (60, Q),
    (60, Q),
    (67, Q),
    (67, Q),
    (69, Q),
    (69, Q),
    (67, H),
    (65, Q),
    (65, Q),
    (64, Q),
    (64, Q),
    (62, Q),
    (62, Q),
    (60, H),
]
# A hymn-like soprano line of our own, G major: a half cadence on A, then home on G.
CHORALE_MELODY = [
    (67, Q),
    (67, Q),
    (69, Q),
    (71, Q),
    (72, Q),
    (71, Q),
    (69, H),
    (67, Q),
    (71, Q),
    (74, Q),
    (72, Q),
    (71, Q),
    (69, Q),
    (67, H),
]
BUNDLED = {
    # file name: (score, tempo, General MIDI program)
    "ode_to_joy.mid": (ODE_TO_JOY, 100.0, 0),
    "twinkle.mid": (TWINKLE, 100.0, 0),
    "chorale_melody.mid": (CHORALE_MELODY, 80.0, 0),
}


def score_to_notes(score: list[tuple[int, int]], velocity: int = 90) -> list[Note]:
    notes, t = [], 0
    for pitch, length in score:
        notes.append(Note(pitch, t, t + length, velocity))
        t += length
    return notes


def write_bundled_melodies(folder: Path = MELODY_DIR) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, (score, tempo, program) in BUNDLED.items():
        notes = score_to_notes(score)
        comp = Composition([Track("melody", program, notes)], notes[-1].end, tempo)
        write_composition(comp, folder / name)


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_bundled_melodies_match_their_scores(name: str) -> None:
    score, tempo, _ = BUNDLED[name]
    melody = read_melody(MELODY_DIR / name)
    assert melody.notes == score_to_notes(score)
    assert melody.tempo_bpm == tempo
    assert melody.n_steps % 16 == 0 and melody.n_steps == sum(length for _, length in score)
    assert melody.source == name


def test_bundled_scores_fill_whole_bars() -> None:
    for score, _, _ in BUNDLED.values():
        bar_ends, t = set(), 0
        for _, length in score:
            t += length
            bar_ends.add(t)
        # Every bar line falls between notes: no note is tied over a bar.
        assert all(b in bar_ends for b in range(16, t + 1, 16))
        assert t in (64, 128)


# --------------------------------------------------------------------------- helpers


def save(
    tmp_path: Path, name: str, tracks: list[list[mido.Message | mido.MetaMessage]], tpb: int = 480
) -> Path:
    mid = mido.MidiFile(type=1, ticks_per_beat=tpb)
    for messages in tracks:
        mid.tracks.append(mido.MidiTrack(messages))
    path = tmp_path / name
    mid.save(path)
    return path


def on(note: int, time: int = 0, velocity: int = 100, channel: int = 0) -> mido.Message:
    return mido.Message("note_on", note=note, velocity=velocity, time=time, channel=channel)


def off(note: int, time: int = 0, channel: int = 0) -> mido.Message:
    return mido.Message("note_off", note=note, velocity=0, time=time, channel=channel)


def sample_composition(swing: float = 0.5) -> Composition:
    melody = [
        Note(72, 0, 4, 100),
        Note(72, 4, 8, 80),  # a re-attack of the same pitch
        Note(74, 8, 10, 70),
        Note(76, 12, 16, 110),
        Note(77, 18, 30, 64),
    ]
    bass = [Note(48, 0, 16, 90), Note(43, 16, 32, 90)]
    drums = [Note(36, s, s + 1, 120) for s in range(0, 32, 4)]
    return Composition(
        [
            Track("melody", 0, melody, channel=0),
            Track("bass", 33, bass, channel=1),
            Track("drums", 0, drums, is_drum=True, channel=9),
        ],
        n_steps=32,
        tempo_bpm=96.0,
        swing=swing,
    )


def absolute(track: mido.MidiTrack) -> list[tuple[int, mido.Message]]:
    out, tick = [], 0
    for msg in track:
        tick += msg.time
        out.append((tick, msg))
    return out


# --------------------------------------------------------------------------- writing


def test_round_trip_keeps_melody_and_tempo(tmp_path: Path) -> None:
    comp = sample_composition()
    comp.tracks = [comp.tracks[0], comp.tracks[2]]  # melody and drums
    path = tmp_path / "song.mid"
    write_composition(comp, path)
    melody = read_melody(path)
    # Drums are ignored, so the top line is the melody, re-attack and velocities included.
    assert melody.notes == comp.tracks[0].notes
    assert melody.tempo_bpm == pytest.approx(96.0)
    assert melody.n_steps == 32
    assert melody.source == "song.mid"


def test_round_trip_with_accompaniment_takes_the_top_line(tmp_path: Path) -> None:
    comp = sample_composition()
    path = tmp_path / "song.mid"
    write_composition(comp, path)
    melody = read_melody(path)
    # Every pitched part is merged: the bass, below the melody, shows only in its rests.
    assert melody.notes == [
        Note(72, 0, 4, 100),
        Note(72, 4, 8, 80),
        Note(74, 8, 10, 70),
        Note(48, 10, 12, 90),
        Note(76, 12, 16, 110),
        Note(43, 16, 18, 90),
        Note(77, 18, 30, 64),
        Note(43, 30, 32, 90),
    ]


def test_written_file_layout(tmp_path: Path) -> None:
    comp = sample_composition()
    path = tmp_path / "song.mid"
    write_composition(comp, path, ticks_per_beat=480)
    mid = mido.MidiFile(path)
    assert mid.type == 1 and mid.ticks_per_beat == 480
    assert len(mid.tracks) == 1 + len(comp.tracks)

    conductor = mid.tracks[0]
    tempo = [m for m in conductor if m.type == "set_tempo"]
    sig = [m for m in conductor if m.type == "time_signature"]
    assert mido.tempo2bpm(tempo[0].tempo) == pytest.approx(96.0)
    assert (sig[0].numerator, sig[0].denominator) == (4, 4)
    assert not any(isinstance(m, mido.Message) for m in conductor)

    names = [next(m.name for m in t if m.type == "track_name") for t in mid.tracks[1:]]
    assert names == ["melody", "bass", "drums"]
    programs = [
        [(m.channel, m.program) for m in t if m.type == "program_change"] for t in mid.tracks[1:]
    ]
    assert programs == [[(0, 0)], [(1, 33)], []]
    drum_channels = {m.channel for m in mid.tracks[3] if m.type.startswith("note")}
    assert drum_channels == {DRUM_CHANNEL}

    # Notes, velocities and lengths in ticks (120 ticks a 16th), and the file ends with the
    # last bar.
    melody = [(t, m) for t, m in absolute(mid.tracks[1]) if m.type == "note_on"]
    assert [(t, m.note, m.velocity) for t, m in melody] == [
        (0, 72, 100),
        (480, 72, 80),
        (960, 74, 70),
        (1440, 76, 110),
        (2160, 77, 64),
    ]
    for track in mid.tracks:
        assert absolute(track)[-1][0] == 32 * 120
    assert mid.length == pytest.approx(comp.seconds)


def test_swing_moves_offbeat_eighths(tmp_path: Path) -> None:
    notes = [Note(60, 0, 2), Note(62, 2, 4), Note(64, 4, 6), Note(65, 6, 8), Note(67, 9, 10)]
    ticks = {}
    for swing in (0.5, 2 / 3):
        comp = Composition([Track("melody", 0, notes)], 16, 120.0, swing=swing)
        path = tmp_path / f"swing{swing:.2f}.mid"
        write_composition(comp, path, ticks_per_beat=480)
        track = mido.MidiFile(path).tracks[1]
        ticks[swing] = [t for t, m in absolute(track) if m.type == "note_on"]
    assert ticks[0.5] == [0, 240, 480, 720, 1080]
    # The off-beat 8th moves from half the beat (240) to two thirds of it (320): +80 ticks.
    # Step 9 (a 16th after the downbeat) is stretched in proportion: 1/4 beat -> 1/3 beat.
    assert ticks[2 / 3] == [0, 320, 480, 800, 960 + 160]


def test_failed_write_leaves_old_file_and_no_temporary(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "song.mid"
    path.write_bytes(b"old contents")
    bad = Composition([Track("melody", 0, [Note(60, 0, 4), Note(200, 4, 8)])], 16, 120.0)
    with pytest.raises(ValueError):
        write_composition(bad, path)
    assert path.read_bytes() == b"old contents"
    assert os.listdir(tmp_path) == ["song.mid"]

    # A failure halfway through writing the bytes: still nothing half-written.
    def broken_save(self, filename=None, file=None):
        file.write(b"MThd\x00\x00")
        raise OSError("disk full")

    monkeypatch.setattr(mido.MidiFile, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        write_composition(sample_composition(), path)
    assert path.read_bytes() == b"old contents"
    assert os.listdir(tmp_path) == ["song.mid"]

    new = tmp_path / "new.mid"
    with pytest.raises(OSError):
        write_composition(sample_composition(), new)
    assert not new.exists()
    assert os.listdir(tmp_path) == ["song.mid"]


# --------------------------------------------------------------------------- reading


def test_polyphonic_input_gives_top_line(tmp_path: Path) -> None:
    # A held C major chord for a bar, a melody above it for the first half, then the chord alone.
    chord = [on(48), on(55), on(64, velocity=50), off(48, 1920), off(55), off(64)]
    tune = [on(72, velocity=90), off(72, 480), on(74, velocity=91), off(74, 480)]
    path = save(tmp_path, "poly.mid", [[mido.MetaMessage("set_tempo", tempo=500000)], chord, tune])
    melody = read_melody(path)
    assert melody.notes == [Note(72, 0, 4, 90), Note(74, 4, 8, 91), Note(64, 8, 16, 50)]
    assert melody.n_steps == 16


def test_reattacks_and_sloppy_note_offs(tmp_path: Path) -> None:
    messages = [
        off(50),  # a note-off with no note-on: ignored
        on(60, velocity=80),
        on(60, 480, velocity=0),  # note-on with velocity 0 is a note-off ...
        on(60, 0, velocity=70),  # ... immediately re-attacked
        on(60, 480, velocity=60),  # a second note-on while held: ends the first, starts again
        off(60, 480),
        off(60, 0),  # a duplicate note-off: ignored
        on(62, 0, velocity=55),  # never released: lasts to the end of the track
        mido.MetaMessage("end_of_track", time=960),
    ]
    melody = read_melody(save(tmp_path, "sloppy.mid", [messages]))
    assert melody.notes == [
        Note(60, 0, 4, 80),
        Note(60, 4, 8, 70),
        Note(60, 8, 12, 60),
        Note(62, 12, 20, 55),
    ]
    assert melody.n_steps == 32
    assert melody.tempo_bpm == 120.0  # no tempo in the file


def test_quantizes_merges_channels_and_drops_leading_bars(tmp_path: Path) -> None:
    tpb = 96  # 24 ticks a 16th
    bar = 16 * 24
    # Two bars of silence, then slightly early / late notes on two channels and a drum.
    a = [
        on(67, 2 * bar + 11, channel=0),
        off(67, 50, channel=0),
    ]  # 11 -> step 0 (rounds down), ends 61 -> 3
    b = [
        on(69, 2 * bar + 96 + 12, channel=3),
        off(69, 2, channel=3),
    ]  # exactly half a step late: rounds up
    drums = [
        on(80, 2 * bar, channel=9),
        off(80, 10, channel=9),
        on(36, 0, channel=9),
        off(36, 24, channel=9),
    ]
    tempo = [mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(87.5), time=bar)]
    path = save(tmp_path, "q.mid", [tempo, a, b, drums], tpb=tpb)
    melody = read_melody(path)
    assert melody.notes == [Note(67, 0, 3, 100), Note(69, 5, 6, 100)]  # at least one step long
    assert melody.n_steps == 16
    assert melody.tempo_bpm == pytest.approx(87.5)


def test_type0_file_keeps_its_tempo_changes(tmp_path: Path) -> None:
    mid = mido.MidiFile(type=0, ticks_per_beat=480)
    mid.tracks.append(
        mido.MidiTrack(
            [
                mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(140)),
                on(60, channel=2),
                mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(70), time=240),
                off(60, 240, channel=2),
            ]
        )
    )
    path = tmp_path / "type0.mid"
    mid.save(path)
    melody = read_melody(path)
    assert melody.notes == [Note(60, 0, 4, 100)]
    assert melody.tempo_bpm == pytest.approx(140.0)
    assert melody.tempo_changes == [(2, 70.0)]  # an 8th note in: step 2


def test_tempo_map_on_the_kept_bars(tmp_path: Path) -> None:
    # A bar of silence at 60 BPM is dropped, so its tempo opens the melody; 100 BPM comes
    # in bar 2 of the kept bars, a repeat of it is left out, and so is a change past the end.
    bar = 4 * 480
    tempi = [
        mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm), time=delta)
        for bpm, delta in ((50, 0), (60, bar // 2), (100, 3 * bar // 2), (100, bar), (30, 9 * bar))
    ]
    tune = [on(60, bar), off(60, 3 * bar)]
    melody = read_melody(save(tmp_path, "map.mid", [tempi, tune]))
    assert (melody.tempo_bpm, melody.tempo_changes, melody.n_steps) == (60.0, [(16, 100.0)], 48)


def test_tempo_changes_round_trip_and_time_the_file(tmp_path: Path) -> None:
    comp = sample_composition()
    comp.tempo_changes = [(16, 150.0), (24, 75.0)]
    path = tmp_path / "map.mid"
    write_composition(comp, path)
    again = read_melody(path)
    assert (again.tempo_bpm, again.tempo_changes) == (96.0, [(16, 150.0), (24, 75.0)])
    assert mido.MidiFile(path).length == pytest.approx(comp.seconds)


def valid_file_bytes(tmp_path: Path) -> bytes:
    path = tmp_path / "valid.mid"
    write_composition(sample_composition(), path)
    return path.read_bytes()


def bad_inputs(tmp_path: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    rng = random.Random(7)
    files["random"] = tmp_path / "noise.mid"
    files["random"].write_bytes(bytes(rng.randrange(256) for _ in range(2000)))
    files["garbage after header"] = tmp_path / "garbage.mid"
    files["garbage after header"].write_bytes(
        b"MThd" + bytes(rng.randrange(256) for _ in range(300))
    )
    valid = valid_file_bytes(tmp_path)
    for cut in (10, 30, len(valid) // 2, len(valid) - 3):
        files[f"truncated at {cut}"] = tmp_path / f"cut{cut}.mid"
        files[f"truncated at {cut}"].write_bytes(valid[:cut])
    files["bad chunk"] = tmp_path / "chunk.mid"
    files["bad chunk"].write_bytes(valid.replace(b"MTrk", b"XTrk"))
    files["bad data byte"] = tmp_path / "data.mid"
    files["bad data byte"].write_bytes(valid.replace(b"\x90\x48\x64", b"\x90\x48\xe4", 1))
    files["empty"] = tmp_path / "empty.mid"
    files["empty"].write_bytes(b"")
    files["drums only"] = save(
        tmp_path, "drums.mid", [[on(36, channel=9), off(36, 240, channel=9)]]
    )
    files["no notes"] = save(tmp_path, "meta.mid", [[mido.MetaMessage("set_tempo", tempo=500000)]])
    files["missing"] = tmp_path / "nowhere" / "missing.mid"
    files["folder"] = tmp_path
    files["text"] = tmp_path / "notes.txt"
    files["text"].write_text("C D E F G\n")
    return files


def test_bad_inputs_raise_one_line_user_errors(tmp_path: Path) -> None:
    messages = {}
    for kind, path in bad_inputs(tmp_path).items():
        with pytest.raises(UserError) as info:
            read_melody(path)
        message = str(info.value)
        assert str(path) in message, kind
        assert "\n" not in message and len(message) < 300, kind
        messages[kind] = message
    assert messages["random"].endswith("not a MIDI file")
    assert "truncated MIDI file" in messages["truncated at 30"]
    assert "corrupt MIDI file" in messages["bad chunk"]
    assert "corrupt MIDI file" in messages["bad data byte"]
    assert "MIDI file" in messages["garbage after header"]
    assert "empty file" in messages["empty"]
    assert "no pitched notes" in messages["drums only"]
    assert "no pitched notes" in messages["no notes"]
    assert "no such file" in messages["missing"]


def test_accepts_str_paths(tmp_path: Path) -> None:
    path = tmp_path / "song.mid"
    write_composition(sample_composition(), str(path))
    assert isinstance(read_melody(str(path)), Melody)


if __name__ == "__main__":
    if sys.argv[1:] == ["--write-melodies"]:
        write_bundled_melodies()
        print(f"wrote {', '.join(BUNDLED)} to {MELODY_DIR}")
    else:
        sys.exit(__doc__)


def test_chords_are_marker_events_that_reading_ignores(tmp_path: Path) -> None:
    comp = sample_composition()
    comp.chords = [Chord.parse(name) for name in ("C", "C", "Am", "N")]
    path = tmp_path / "chords.mid"
    write_composition(comp, path)
    conductor = absolute(mido.MidiFile(path).tracks[0])
    markers = [(tick, msg.text) for tick, msg in conductor if msg.type == "marker"]
    assert markers == [(0, "C"), (4 * 480, "Am"), (6 * 480, "N")]  # a half bar is 2 beats
    plain = tmp_path / "plain.mid"
    write_composition(sample_composition(), plain)
    assert read_melody(path).notes == read_melody(plain).notes
