"""The style-genre data path: chord reduction of the chorales, real MMA renders mapped
onto the model's parts by GM program family, and the training windows built from them."""

from __future__ import annotations

import doctest
import importlib
import shutil

import numpy as np
import pytest

from deepkeys.device.encoding import DRUM_CLASSES, REST, drum_class_of

pytest.importorskip("tensorflow")  # host modules (the windows import the model)
from deepkeys.host.data import mma, multitrack
from deepkeys.host.data.multitrack import MidiNote, grid_parts, line, role_of

needs_mma = pytest.mark.skipif(
    shutil.which("mma") is None, reason="mma is not installed (make test installs it)"
)


@pytest.mark.parametrize(
    "name", ["data.multitrack", "data.mma", "evaluate", "data.windows", "data.band", "data.sources"]
)
def test_host_docstring_examples(name):
    module = importlib.import_module(f"deepkeys.host.{name}")
    assert doctest.testmod(module, optionflags=doctest.ELLIPSIS).failed == 0


def test_roles_follow_the_general_midi_families():
    assert [role_of(p, 0) for p in (0, 24, 16, 33, 48, 89, 105, 122)] == [
        "comp",
        "comp",
        "comp",
        "bass",
        "pad",
        "pad",
        "comp",
        None,
    ]
    assert role_of(33, 9) == "drums"  # channel 10 is drums whatever its program


def test_every_drum_class_has_distinct_notes():
    notes = [n for _, group in DRUM_CLASSES for n in group]
    assert len(notes) == len(set(notes))
    assert [drum_class_of(group[0]) for _, group in DRUM_CLASSES] == list(range(len(DRUM_CLASSES)))


def test_swung_eighths_land_on_the_straight_grid():
    notes = [MidiNote(60, b, b + 0.3, 0, 0, "p") for b in (0, 2 / 3, 1, 1 + 2 / 3)]
    swung = grid_parts(notes, 16, swing=True)["comp"].onset.any(axis=1)
    straight = grid_parts(notes, 16, swing=False)["comp"].onset.any(axis=1)
    assert np.flatnonzero(swung).tolist() == [0, 2, 4, 6]
    assert np.flatnonzero(straight).tolist() == [0, 3, 4, 7]


def test_bass_voice_is_the_lowest_line_and_melody_the_highest():
    notes = [
        MidiNote(48, 0, 1, 0, 33, "b"),
        MidiNote(55, 0, 2, 0, 33, "b"),
        MidiNote(72, 0, 1, 0, 0, "m"),
        MidiNote(76, 1, 2, 0, 0, "m"),
    ]
    parts = grid_parts(notes, 8)
    assert line(parts["bass"])[0].tolist() == [48] * 4 + [55] * 4
    assert line(parts["bass"])[1].astype(int).tolist() == [1, 0, 0, 0, 1, 0, 0, 0]
    top = line(parts["comp"], top=True)[0]
    assert top.tolist() == [72] * 4 + [76] * 4


def test_chords_are_read_from_the_four_voices():
    def voices(*pitches):
        return np.array([[p] * 8 for p in pitches])

    assert mma.chord_of(voices(67, 64, 60, 48)) == "C"
    assert mma.chord_of(voices(69, 64, 60, 45)) == "Am"
    assert mma.chord_of(voices(65, 59, 55, 43)) == "G7"
    assert mma.chord_of(np.full((4, 8), REST)) is None
    # Two chords in a bar; a silent first bar (a pickup's) takes the chord after it.
    bar = np.concatenate(
        [
            np.full((4, 16), REST),
            np.concatenate([voices(67, 64, 60, 48), voices(67, 62, 59, 43)], axis=1),
        ],
        axis=1,
    )
    assert mma.chord_progression(bar) == [["C", "C"], ["C", "G"]]
    assert mma.mma_line(["C", "G"]) == "C / G /"
    assert mma.mma_line(["F", "F"]) == "F / / /"


@needs_mma
@pytest.mark.parametrize("genre", ["rock", "jazz", "bossa"])
def test_mma_renders_each_groove_onto_drums_bass_and_comping(tmp_path, genre):
    progression = [[["C", "C"], ["F", "G7"], ["Am", "Am"], ["Dm", "G7"]]]
    style = mma.STYLES[genre]
    out = tmp_path / "song.mid"
    mma.render(progression, style.grooves[0], style.tempo_bpm, out)
    notes, _ = multitrack.read_notes(out)
    parts = grid_parts(notes, 64, swing=style.swing, roles=mma.mma_roles(notes))
    hits = parts["drums"].onset
    assert hits.sum() >= 16  # a groove, at least a hit a beat
    assert (np.flatnonzero(hits.any(axis=1)) % 2 == 0).mean() >= 0.85  # on the 8th grid
    bass, _ = line(parts["bass"])
    sounding = bass[bass != REST]
    assert len(sounding) and sounding.max() < 60  # bass in the bass register
    # The bass plays the chord roots on the downbeats: C, F, A, D.
    assert [int(bass[b * 16]) % 12 for b in range(4)] == [0, 5, 9, 2]
    assert parts["comp"].sounding.any()


def test_unknown_style_is_a_one_line_error():
    from deepkeys.device.errors import UserError

    with pytest.raises(UserError, match="no MMA recipe for genre 'polka'"):
        mma.load_style_split("polka")


def test_windows_transpose_melody_and_pitched_parts_together():
    from deepkeys.host.data.windows import Windows

    n, steps = 4, 16
    melody = np.full((n, steps), 72, np.int16)
    bass = np.full((n, 1, steps), 48, np.int16)
    poly = np.zeros((n, 2, steps, 128), bool)
    poly[:, 0, :, 60] = True
    drums = np.zeros((n, 1, steps, len(DRUM_CLASSES)), bool)
    drums[:, 0, ::4, 0] = True
    w = Windows(
        melody,
        np.ones((n, steps), bool),
        bass,
        np.ones((n, 1, steps), bool),
        poly,
        np.ones((n, 2, steps), bool),
        drums,
        ["a"] * n,
        np.zeros(n, np.int32),
        np.zeros((n, 2), np.int16),
        np.full((n, 2), -1, np.int16),
    )
    moved = w.transposed(np.random.default_rng(0), low=24, high=107)
    shift = moved.melody_pitch[:, 0] - 72
    assert (moved.mono_pitch[:, 0, 0] - 48 == shift).all()
    assert [int(np.flatnonzero(moved.poly[i, 0, 0])[0]) - 60 for i in range(n)] == shift.tolist()
    assert np.array_equal(moved.drums, drums)  # drums have no key


def test_transposition_stays_in_range_and_draws_every_key():
    from deepkeys.host.data.windows import Windows

    # Melodies from the bottom to the top of a narrow range: some shifts fit, some do not.
    n, steps, low, high = 600, 8, 60, 80
    rng = np.random.default_rng(1)
    melody = rng.integers(low, high + 1, size=(n, 1)).astype(np.int16).repeat(steps, axis=1)
    empty_voice = np.full((n, 0, steps), REST, np.int16)
    w = Windows(
        melody,
        np.ones((n, steps), bool),
        empty_voice,
        np.zeros((n, 0, steps), bool),
        np.zeros((n, 0, steps, 128), bool),
        np.zeros((n, 0, steps), bool),
        np.zeros((n, 0, steps, len(DRUM_CLASSES)), bool),
        ["a"] * n,
        np.zeros(n, np.int32),
        np.zeros((n, 2), np.int16),
        np.full((n, 2), -1, np.int16),
    )
    moved = w.transposed(np.random.default_rng(0), low=low, high=high)
    assert moved.melody_pitch.min() >= low and moved.melody_pitch.max() <= high
    shifts = moved.melody_pitch[:, 0] - melody[:, 0]
    # The middle of the range has room for every shift of -6..5: each key is drawn.
    middle = np.abs(melody[:, 0] - 70) <= 3
    assert set(shifts[middle].tolist()) == set(range(-6, 6))
