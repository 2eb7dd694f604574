"""The composition timeline in beats that the MIDI writer, the renderer and the sequencer share."""

from __future__ import annotations

import pytest

from deepkeys.device.encoding import Composition, Note, Track
from deepkeys.device.gm import NOTE_OFF, NOTE_ON, PROGRAM
from deepkeys.device.timeline import composition_events

NAMES = {NOTE_ON: "note_on", NOTE_OFF: "note_off", PROGRAM: "program_change"}


def sample_composition() -> Composition:
    melody = Track("melody", 0, [Note(69, 0, 4), Note(71, 4, 8), Note(72, 8, 16)])
    bass = Track("bass", 32, [Note(45, 0, 8), Note(50, 8, 16)], channel=1)
    drums = Track("drums", 0, [Note(36, 0, 1), Note(38, 4, 5)], is_drum=True)
    return Composition([melody, bass, drums], 16, 120.0)


def test_swing_moves_the_off_beats_in_beats() -> None:
    notes = [Note(60, 0, 1), Note(62, 2, 3), Note(64, 4, 5), Note(65, 6, 7), Note(67, 9, 10)]
    comp = Composition([Track("melody", 0, notes)], 16, 120.0, swing=2 / 3)
    onsets = [beat for beat, status, *_ in composition_events(comp) if status == NOTE_ON]
    # Straight beats stay put; the off-beat 8th moves to two thirds of its beat.
    assert onsets == pytest.approx([0.0, 2 / 3, 1.0, 1 + 2 / 3, 2 + 1 / 3])


def test_events_release_before_reattack() -> None:
    comp = Composition([Track("melody", 5, [Note(60, 0, 4), Note(60, 4, 8)])], 16, 60.0)
    events = [
        (beat, NAMES[status], data1) for beat, status, _, data1, _ in composition_events(comp)
    ]
    assert events == [
        (0.0, "program_change", 5),
        (0.0, "note_on", 60),
        (1.0, "note_off", 60),
        (1.0, "note_on", 60),
        (2.0, "note_off", 60),
    ]
    times = [beat for beat, *_ in composition_events(sample_composition())]
    assert times == sorted(times)


def test_events_clamp_velocity_and_skip_empty_notes() -> None:
    comp = Composition(
        [Track("m", 0, [Note(60, 0, 4, 0), Note(62, 4, 4), Note(64, 4, 8, 300)])], 16, 120.0
    )
    ons = [
        (note, velocity)
        for _, status, _, note, velocity in composition_events(comp)
        if status == NOTE_ON
    ]
    assert ons == [(60, 1), (64, 127)]


def test_drums_play_on_channel_10_without_a_program() -> None:
    events = composition_events(sample_composition())
    drums = {(status, channel) for _, status, channel, *_ in events if channel == 9}
    assert drums == {(NOTE_ON, 9), (NOTE_OFF, 9)}


def test_a_pitch_midi_cannot_carry_is_refused() -> None:
    comp = Composition([Track("m", 0, [Note(128, 0, 4)])], 16, 120.0)
    with pytest.raises(ValueError, match=r"outside MIDI's 0\.\.127"):
        composition_events(comp)
