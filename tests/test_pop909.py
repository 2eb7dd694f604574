"""The POP909 reader, on a song folder written here in the dataset's own layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from deepkeys.device.chords import NO_CHORD, Chord
from deepkeys.device.encoding import REST

pytest.importorskip("tensorflow")  # host code: the windows it builds are the trainer's

from pop909_layout import write_song

from deepkeys.host.data import pop909
from deepkeys.host.harmony.data import pop909_phrases


def test_a_song_lands_on_its_own_beat_grid(tmp_path: Path):
    song = pop909.parse_song(write_song(tmp_path / "001"))
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
    folder = write_song(tmp_path / "002")
    (folder / "chord_midi.txt").write_text("0.0\t100.0\tC:weird\n")
    song = pop909.parse_song(folder)
    assert isinstance(song, pop909.Song) and (song.chords == NO_CHORD).all()
    (folder / "002.mid").write_bytes(b"not midi")
    reason = pop909.parse_song(folder)
    assert isinstance(reason, str) and reason.startswith("unreadable")


def test_the_cache_and_the_phrases_for_the_harmony_model(tmp_path: Path, monkeypatch):
    root = tmp_path / "pop909"
    write_song(root / "001")
    write_song(root / "002", bars=5)
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
    song = pop909.parse_song(write_song(tmp_path / "001"))
    assert isinstance(song, pop909.Song)
    windows = pop909.piano_windows([song], bars=4)
    assert len(windows) == 3  # bars 0, 2 and 4 of 8, two bars apart
    assert set(windows.mono_pitch[0, 0].tolist()) == {48}  # the lowest piano note
    roll = windows.poly[0, 0]
    assert roll[:, [55, 64]].all() and not roll[:, 48].any()
    assert windows.melody_pitch[0, 0] == 72 and REST not in windows.melody_pitch[0, :16]
    assert [Chord.from_token(int(t)).name for t in windows.chords[1]][:2] == ["Am7", "Am7"]
