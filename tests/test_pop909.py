"""The POP909 reader, on a song folder written here in the dataset's own layout."""

from __future__ import annotations

from pathlib import Path

import mido
import numpy as np
import pytest

from deepkeys.device.chords import NO_CHORD, Chord
from deepkeys.device.encoding import REST

pytest.importorskip("tensorflow")  # host code: the windows it builds are the trainer's

from deepkeys.host.data import pop909
from deepkeys.host.harmony.data import pop909_phrases

TPB = 480
BPM = 100
OFFSET = 240  # the first beat is at tick 240, as POP909's grids start from an offset
ARPEGGIO = (72, 76, 79, 84)  # the melody of every bar, a note a beat
CHORDS = ["C:maj", "C:maj", "A:min7", "A:min7", "F:maj/3", "F:maj/3", "G:sus4(b7)", "N"]


def _song(folder: Path, bars: int = 8) -> Path:
    """A song: melody C-E-G-C on every bar's beats, piano chord per bar, 4/4 throughout."""
    folder.mkdir(parents=True)
    seconds_per_beat = 60 / BPM
    first = mido.tick2second(OFFSET, TPB, mido.bpm2tempo(BPM))
    beats = [first + k * seconds_per_beat for k in range(bars * 4)]
    (folder / "beat_midi.txt").write_text(
        "".join(f"{t} {float(k % 2 == 0)} {float(k % 4 == 0)}\n" for k, t in enumerate(beats))
    )
    (folder / "chord_midi.txt").write_text(
        "".join(
            f"{beats[b * 4]}\t{beats[b * 4] + 4 * seconds_per_beat}\t{CHORDS[b]}\n"
            for b in range(bars)
        )
    )
    mid = mido.MidiFile(ticks_per_beat=TPB)
    tempo = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(BPM))])
    mid.tracks.append(tempo)
    for name, notes in (
        (
            "MELODY",
            [(p, b * 4 + i, 1) for b in range(bars) for i, p in enumerate((72, 76, 79, 84))],
        ),
        ("BRIDGE", []),
        ("PIANO", [(p, b * 4, 4) for b in range(bars) for p in (48, 55, 64)]),
    ):
        track = mido.MidiTrack([mido.MetaMessage("track_name", name=name)])
        events = []
        for pitch, start, length in notes:
            events.append((OFFSET + start * TPB, 1, "note_on", pitch))
            events.append((OFFSET + (start + length) * TPB, 0, "note_off", pitch))
        now = 0
        for tick, _, kind, pitch in sorted(events):
            track.append(mido.Message(kind, note=pitch, velocity=80, time=tick - now))
            now = tick
        mid.tracks.append(track)
    mid.save(folder / f"{folder.name}.mid")
    return folder


def test_a_song_lands_on_its_own_beat_grid(tmp_path: Path):
    song = pop909.parse_song(_song(tmp_path / "001"))
    assert isinstance(song, pop909.Song)
    assert song.segments == [pop909.Segment(0, 8)]
    pitch, onset = song.melody_voice(16, 16)  # bar 2
    assert pitch[[0, 4, 8, 12]].tolist() == [72, 76, 79, 84]
    assert onset[[0, 4, 8, 12]].all() and not onset[[1, 5]].any()
    sounding, struck = song.piano_roll(0, 16)
    assert sounding[:, [48, 55, 64]].all() and struck[0, 48] and not struck[1, 48]
    names = [Chord.from_token(int(t)).name for t in song.chords[::4]]
    assert names == ["C", "C", "Am7", "Am7", "F", "F", "Gsus4", "N"]
    assert song.bass[8] == 9  # Am7, bar 3: the bass plays its root
    assert song.bass[16] == 9  # F:maj/3, bar 5: the bass plays A


def test_unknown_labels_become_no_chord_and_a_broken_folder_says_why(tmp_path: Path):
    folder = _song(tmp_path / "002")
    (folder / "chord_midi.txt").write_text("0.0\t100.0\tC:weird\n")
    song = pop909.parse_song(folder)
    assert isinstance(song, pop909.Song) and (song.chords == NO_CHORD).all()
    (folder / "002.mid").write_bytes(b"not midi")
    reason = pop909.parse_song(folder)
    assert isinstance(reason, str) and reason.startswith("unreadable")


def test_the_cache_and_the_phrases_for_the_harmony_model(tmp_path: Path, monkeypatch):
    root = tmp_path / "pop909"
    _song(root / "001")
    _song(root / "002", bars=5)
    (root / "003").mkdir()  # no files: not a song
    monkeypatch.setenv("DEEPKEYS_POP909", str(root))
    monkeypatch.setenv("DEEPKEYS_CACHE", str(tmp_path / "cache"))
    songs = pop909.load_songs(workers=1)
    again = pop909.load_songs(workers=1)  # from the cache
    assert [s.name for s in songs] == [s.name for s in again] == ["001", "002"]
    assert all(np.array_equal(a.chords, b.chords) for a, b in zip(songs, again))
    phrases = pop909_phrases({"001", "002"}, songs)
    assert len(phrases) == 2  # one 8-bar phrase each (002 is one 5-bar run)
    cells = phrases.targets[0]
    rotation = int(phrases.rotation[0])
    back = [Chord.from_token(int(t)).transposed(rotation).name for t in cells]
    assert (
        back[:4] == ["C", "C", "C", "C"] and back[4] == "Am7" and back[8] == "F"
    )  # tokens carry no bass
    assert (phrases.targets[1][10:] == -1).all()  # 5 bars: the rest is padding
    assert phrases.features[1][10:, 39].sum() == 0  # and marked so in the input


def test_the_piano_genre_splits_the_pianist_into_bass_and_chords(tmp_path: Path):
    song = pop909.parse_song(_song(tmp_path / "001"))
    assert isinstance(song, pop909.Song)
    windows = pop909.piano_windows([song], bars=4)
    assert len(windows) == 3  # bars 0, 2 and 4 of 8, two bars apart
    assert set(windows.mono_pitch[0, 0].tolist()) == {48}  # the lowest piano note
    roll = windows.poly[0, 0]
    assert roll[:, [55, 64]].all() and not roll[:, 48].any()
    assert windows.melody_pitch[0, 0] == 72 and REST not in windows.melody_pitch[0, :16]
    assert [Chord.from_token(int(t)).name for t in windows.chords[1]][:2] == ["Am7", "Am7"]
