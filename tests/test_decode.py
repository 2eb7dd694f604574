"""Decoding model outputs into voices: segments, re-attacks, temperature."""

import numpy as np

from deepkeys.device.encoding import REST, voice_to_notes
from deepkeys.device.generation.decode import decode_voice


def one_hot_probs(classes: list[int], n_classes: int, sharp: float = 0.9) -> np.ndarray:
    probs = np.full((len(classes), n_classes), (1 - sharp) / (n_classes - 1))
    probs[np.arange(len(classes)), classes] = sharp
    return probs


def test_held_note_is_one_note_and_rest_class_is_silence():
    probs = one_hot_probs([0, 0, 0, 2, 2], n_classes=3)  # classes 0,1 = pitches, 2 = rest
    pitch, onset = decode_voice(probs, np.array([0.9, 0.1, 0.1, 0, 0]), pitch_low=60)
    assert pitch.tolist() == [60, 60, 60, REST, REST]
    assert onset.tolist() == [True, False, False, False, False]


def test_onset_on_same_pitch_is_a_reattack():
    probs = one_hot_probs([1, 1, 1, 1], n_classes=3)
    pitch, onset = decode_voice(probs, np.array([0.9, 0.1, 0.8, 0.1]), pitch_low=60)
    notes = voice_to_notes(pitch, onset)
    assert [(n.pitch, n.start, n.end) for n in notes] == [(61, 0, 2), (61, 2, 4)]


def test_notes_begin_only_at_onsets_and_take_their_likeliest_pitch():
    # The argmax wavers inside a note; with no onset there it stays one note, on
    # the pitch most likely over the note's steps.
    probs = one_hot_probs([0, 0, 1, 0], n_classes=3)
    pitch, onset = decode_voice(probs, np.array([0.9, 0.0, 0.1, 0.0]), pitch_low=40)
    assert pitch.tolist() == [40, 40, 40, 40]
    assert onset.tolist() == [True, False, False, False]
    probs = one_hot_probs([0, 0, 1, 1], n_classes=3)
    pitch, onset = decode_voice(probs, np.array([0.9, 0.0, 0.9, 0.0]), pitch_low=40)
    assert pitch.tolist() == [40, 40, 41, 41]
    assert onset.tolist() == [True, False, True, False]


def test_temperature_zero_is_deterministic_and_sampling_varies_by_seed():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(12), size=64)
    onsets = (np.arange(64) % 4 == 0).astype(float)
    greedy = decode_voice(probs, onsets, 60)[0]
    assert np.array_equal(greedy, decode_voice(probs, onsets, 60)[0])
    a = decode_voice(probs, onsets, 60, 1.0, np.random.default_rng(1))[0]
    b = decode_voice(probs, onsets, 60, 1.0, np.random.default_rng(1))[0]
    c = decode_voice(probs, onsets, 60, 1.0, np.random.default_rng(2))[0]
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_a_segment_keeps_one_pitch_even_when_sampled():
    # Flat distributions inside one segment: sampling picks one pitch for the whole
    # segment, it does not flicker step by step.
    probs = np.tile([[0.5, 0.5, 0.0]], (8, 1))
    onsets = np.array([1, 0, 0, 0, 0, 0, 0, 0], float)
    for seed in range(10):
        pitch, _ = decode_voice(probs, onsets, 60, 1.0, np.random.default_rng(seed))
        assert len(set(pitch.tolist())) == 1
