"""Hand-checked values for deepkeys.host.metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from deepkeys.device.encoding import Note
from deepkeys.host.metrics import (
    TONAL_MATRIX,
    consonance,
    drum_pattern_rate,
    empty_bar_rate,
    estimate_key,
    in_key_ratio,
    mean_metrics,
    polyphony,
    qualified_note_rate,
    scale_pitch_classes,
    summarize,
    tonal_distance,
    used_pitch_classes,
    why_undefined,
)


def line(pitches, length=2, start=0):
    """A monophonic line of equal-length notes."""
    return [Note(p, start + i * length, start + (i + 1) * length) for i, p in enumerate(pitches)]


def triad(root, start=0, end=16):
    return [Note(root + i, start, end) for i in (0, 4, 7)]


C_MAJOR_SCALE = [60, 62, 64, 65, 67, 69, 71, 72]


# ---------------------------------------------------------------- EB


def test_empty_bar_rate_one_of_four():
    notes = [Note(60, 0, 16), Note(62, 16, 20), Note(64, 60, 64)]  # bar 2 empty
    assert empty_bar_rate(notes, 64) == 0.25


def test_empty_bar_rate_held_note_fills_next_bar():
    assert empty_bar_rate([Note(60, 10, 20)], 32) == 0.0
    assert empty_bar_rate([], 32) == 1.0


def test_empty_bar_rate_custom_bar_and_partial_bar():
    assert empty_bar_rate([Note(60, 0, 1)], 24, steps_per_bar=12) == 0.5
    # 20 steps = one full bar plus a partial one that counts as a bar.
    assert empty_bar_rate([Note(60, 0, 1)], 20) == 0.5


def test_empty_bar_rate_no_bars_is_nan():
    assert math.isnan(empty_bar_rate([], 0))


# ---------------------------------------------------------------- UPC


def test_used_pitch_classes_skips_empty_bars_and_merges_octaves():
    notes = [
        *triad(60, 0, 16),  # bar 0: C E G -> 3
        Note(48, 16, 32),
        Note(60, 16, 32),
        Note(72, 16, 20),  # bar 1: C only -> 1
        # bar 2 empty
        Note(71, 48, 64),
        Note(62, 56, 64),  # bar 3: B D -> 2
    ]
    assert used_pitch_classes(notes, 64) == pytest.approx((3 + 1 + 2) / 3)


def test_used_pitch_classes_counts_held_notes_in_each_bar():
    notes = [Note(60, 8, 24), Note(67, 16, 18)]  # bar 0: C; bar 1: C G
    assert used_pitch_classes(notes, 32) == 1.5


def test_used_pitch_classes_all_empty_is_nan():
    assert math.isnan(used_pitch_classes([], 32))


# ---------------------------------------------------------------- QN


def test_qualified_note_rate_lengths_1_2_4():
    notes = [Note(60, 0, 1), Note(62, 1, 3), Note(64, 3, 7)]
    assert qualified_note_rate(notes, min_steps=2) == pytest.approx(2 / 3)
    assert qualified_note_rate(notes, min_steps=3) == pytest.approx(1 / 3)
    assert qualified_note_rate(notes, min_steps=1) == 1.0


def test_qualified_note_rate_default_is_eighth_note():
    assert qualified_note_rate([Note(60, 0, 1), Note(60, 1, 3)]) == 0.5
    assert math.isnan(qualified_note_rate([]))


# ---------------------------------------------------------------- DP


def test_drum_pattern_rate_onsets_0_2_3():
    notes = [Note(36, 0, 1), Note(38, 2, 3), Note(42, 3, 4)]
    assert drum_pattern_rate(notes) == pytest.approx(2 / 3)


def test_drum_pattern_rate_sixteenths_are_half():
    hats = [Note(42, t, t + 1) for t in range(16)]
    assert drum_pattern_rate(hats) == 0.5
    assert math.isnan(drum_pattern_rate([]))


# ---------------------------------------------------------------- polyphony


def test_polyphony_held_triad_is_three():
    assert polyphony(triad(60, 0, 16), 32) == 3.0


def test_polyphony_mixed_and_silent():
    notes = [Note(60, 0, 4), Note(64, 2, 4)]  # 1, 1, 2, 2 sounding
    assert polyphony(notes, 16) == 1.5
    assert math.isnan(polyphony([], 16))


# ---------------------------------------------------------------- TD


def test_tonal_matrix_matches_harte():
    # Column of pitch class 0 and 6 by hand: fifths 0 / 7*pi, minor thirds 0 / 9*pi,
    # major thirds 0 / 4*pi.
    np.testing.assert_allclose(TONAL_MATRIX[:, 0], [0, 1, 0, 1, 0, 0.5], atol=1e-12)
    np.testing.assert_allclose(TONAL_MATRIX[:, 6], [0, -1, 0, -1, 0, 0.5], atol=1e-12)
    # Pitch class 1: angles 7pi/6, 3pi/2, 2pi/3.
    s3 = math.sqrt(3)
    np.testing.assert_allclose(
        TONAL_MATRIX[:, 1], [-0.5, -s3 / 2, -1, 0, 0.5 * s3 / 2, -0.25], atol=1e-12
    )


def test_tonal_distance_c_triad_to_itself_is_zero():
    assert tonal_distance(triad(60), triad(48), 16) == pytest.approx(0.0, abs=1e-12)


def test_tonal_distance_c_to_f_sharp_triad():
    # Transposing by a tritone negates the fifths and minor-thirds components and
    # leaves the major-thirds ones. The C major centroid's first four components are
    # ((1+sqrt3)/6, (1+sqrt3)/6, 1/3, 2/3), so the distance is
    # 2 * sqrt(2 * (1+sqrt3)^2 / 36 + 1/9 + 4/9) = (2/3) * sqrt(7 + sqrt3).
    expected = 2 / 3 * math.sqrt(7 + math.sqrt(3))
    assert tonal_distance(triad(60), triad(66), 16) == pytest.approx(expected)
    assert expected > 1.9


def test_tonal_distance_single_tritone_is_two_root_two():
    got = tonal_distance([Note(60, 0, 16)], [Note(66, 0, 16)], 16)
    assert got == pytest.approx(2 * math.sqrt(2))


def test_tonal_distance_related_chord_is_closer_than_tritone():
    c, g, f_sharp = triad(60), triad(67), triad(66)
    assert tonal_distance(c, g, 16) < tonal_distance(c, f_sharp, 16)


def test_tonal_distance_averages_only_bars_where_both_sound():
    a = [*triad(60, 0, 16), *triad(60, 16, 32), Note(60, 48, 64)]
    b = [*triad(60, 0, 16), *triad(66, 16, 32), Note(66, 32, 48)]
    # bar 0: 0, bar 1: (2/3)sqrt(7+sqrt3), bar 2 only b, bar 3 only a.
    expected = (0 + 2 / 3 * math.sqrt(7 + math.sqrt(3))) / 2
    assert tonal_distance(a, b, 64) == pytest.approx(expected)


def test_tonal_distance_weights_by_duration():
    # a: C for 12 steps, G for 4 -> chroma 0.75 C + 0.25 G.
    a = [Note(60, 0, 12), Note(67, 12, 16)]
    b = [Note(60, 0, 16)]
    diff = 0.25 * (TONAL_MATRIX[:, 7] - TONAL_MATRIX[:, 0])
    assert tonal_distance(a, b, 16) == pytest.approx(float(np.linalg.norm(diff)))


def test_tonal_distance_no_shared_bar_is_nan():
    assert math.isnan(tonal_distance([Note(60, 0, 16)], [Note(60, 16, 32)], 32))


# ---------------------------------------------------------------- key


def test_estimate_key_c_major_scale():
    assert estimate_key(line(C_MAJOR_SCALE)) == (0, "major")


def test_estimate_key_a_harmonic_minor():
    # A B C D E F G# A, then a cadence E - A with a long tonic.
    notes = line([57, 59, 60, 62, 64, 65, 68, 69, 64], length=2) + [Note(57, 18, 26)]
    assert estimate_key(notes) == (9, "minor")
    # The bare ascending scale, equal lengths, is also A minor (not C major).
    assert estimate_key(line([57, 59, 60, 62, 64, 65, 68, 69])) == (9, "minor")


def test_estimate_key_transposes():
    assert estimate_key(line([p + 7 for p in C_MAJOR_SCALE])) == (7, "major")


def test_estimate_key_without_information_is_c_major():
    assert estimate_key([]) == (0, "major")


def test_scale_pitch_classes():
    assert scale_pitch_classes((0, "major")) == {0, 2, 4, 5, 7, 9, 11}
    assert scale_pitch_classes((9, "minor")) == {9, 11, 0, 2, 4, 5, 7, 8}
    with pytest.raises(ValueError):
        scale_pitch_classes((0, "dorian"))


def test_in_key_ratio_c_major_scale_is_one():
    assert in_key_ratio(line(C_MAJOR_SCALE), (0, "major")) == 1.0


def test_in_key_ratio_is_duration_weighted():
    notes = [Note(60, 0, 6), Note(61, 6, 8)]  # 6 steps in, 2 out
    assert in_key_ratio(notes, (0, "major")) == 0.75
    # G# is in A minor (raised 7th) but not in C major.
    assert in_key_ratio([Note(68, 0, 4)], (9, "minor")) == 1.0
    assert in_key_ratio([Note(68, 0, 4)], (0, "major")) == 0.0
    assert math.isnan(in_key_ratio([], (0, "major")))


# ---------------------------------------------------------------- consonance


def test_consonance_tritone_is_dissonant():
    assert consonance([Note(66, 0, 4)], [Note(60, 0, 4)], 4) == 0.0


def test_consonance_intervals():
    cases = [
        (0, 1),
        (1, 0),
        (2, 0),
        (3, 1),
        (4, 1),
        (5, 1),
        (6, 0),
        (7, 1),
        (8, 1),
        (9, 1),
        (10, 0),
        (11, 0),
        (12, 1),
        (16, 1),
        (18, 0),
    ]
    for interval, expected in cases:
        got = consonance([Note(60 + interval, 0, 1)], [Note(60, 0, 1)], 1)
        assert got == expected, interval
        # Accompaniment above the melody gives the same answer.
        assert consonance([Note(60, 0, 1)], [Note(60 + interval, 0, 1)], 1) == expected


def test_consonance_counts_step_pairs():
    melody = [Note(72, 0, 4)]  # C, steps 0-3
    accomp = [*triad(60, 0, 8), Note(61, 2, 4)]  # C E G all 4 steps, C# at 2-3
    # 12 consonant pairs, 2 dissonant; accompaniment at steps 4-7 has no melody.
    assert consonance(melody, accomp, 8) == pytest.approx(12 / 14)


def test_consonance_no_overlap_is_nan():
    assert math.isnan(consonance([Note(72, 0, 4)], [Note(60, 4, 8)], 8))


# ---------------------------------------------------------------- summarize


def make_window():
    melody = line(C_MAJOR_SCALE, length=8)  # 64 steps of C major scale
    parts = {
        "bass": [Note(36, 0, 16), Note(43, 16, 32), Note(41, 32, 48), Note(36, 48, 64)],
        "piano": [*triad(60, 0, 16), *triad(67, 16, 32), *triad(65, 32, 48)],  # bar 3 empty
        "drums": [Note(36, 0, 1), Note(38, 4, 5), Note(42, 3, 4), Note(36, 8, 9)],
    }
    return melody, parts


def test_summarize_keys_and_values():
    melody, parts = make_window()
    s = summarize(melody, parts, 64, drum_parts=("drums",))
    assert set(s) == {
        "EB/bass",
        "UPC/bass",
        "QN/bass",
        "EB/piano",
        "UPC/piano",
        "QN/piano",
        "EB/drums",
        "DP/drums",
        "polyphony",
        "in_key",
        "consonance",
        "TD/bass-piano",
    }
    assert s["EB/bass"] == 0.0
    assert s["EB/piano"] == 0.25
    assert s["EB/drums"] == 0.75
    assert s["UPC/bass"] == 1.0
    assert s["UPC/piano"] == 3.0
    assert s["QN/bass"] == 1.0
    assert s["DP/drums"] == 0.75
    # Bars 0-2: bass + triad = 4 pitches (bass root is a different octave); bar 3: 1.
    assert s["polyphony"] == pytest.approx((48 * 4 + 16 * 1) / 64)
    assert s["in_key"] == 1.0
    # TD: in bars 0-2 the bass plays the triad's root, in bar 3 piano is silent.
    root_to_triad = tonal_distance([Note(36, 0, 16)], triad(60), 16)
    assert s["TD/bass-piano"] == pytest.approx(root_to_triad)
    # Consonance cross-checked against the standalone function.
    pitched = parts["bass"] + parts["piano"]
    assert s["consonance"] == pytest.approx(consonance(melody, pitched, 64))
    assert 0.0 < s["consonance"] < 1.0


def test_summarize_matches_standalone_functions():
    melody, parts = make_window()
    s = summarize(melody, parts, 64, drum_parts=("drums",))
    assert s["EB/piano"] == empty_bar_rate(parts["piano"], 64)
    assert s["UPC/piano"] == used_pitch_classes(parts["piano"], 64)
    assert s["polyphony"] == polyphony(parts["bass"] + parts["piano"], 64)


def test_summarize_silent_melody_and_three_parts():
    parts = {"a": [Note(60, 0, 4)], "b": [Note(64, 0, 4)], "c": []}
    s = summarize([], parts, 16)
    assert math.isnan(s["in_key"])
    assert math.isnan(s["consonance"])
    assert list(k for k in s if k.startswith("TD/")) == ["TD/a-b", "TD/a-c", "TD/b-c"]
    assert math.isnan(s["TD/a-c"])
    assert s["TD/a-b"] == pytest.approx(tonal_distance(parts["a"], parts["b"], 16))
    assert s["EB/c"] == 1.0 and math.isnan(s["UPC/c"]) and math.isnan(s["QN/c"])


# ---------------------------------------------------------------- mean_metrics


def test_mean_metrics_nanmean_and_missing_keys():
    got = mean_metrics(
        [
            {"EB/bass": 0.5, "TD/a-b": math.nan, "x": math.nan},
            {"EB/bass": 0.0, "TD/a-b": 1.0, "x": math.nan},
            {"EB/bass": 1.0, "DP/drums": 0.75},
        ]
    )
    assert got["EB/bass"] == 0.5
    assert got["TD/a-b"] == 1.0
    assert got["DP/drums"] == 0.75
    assert math.isnan(got["x"])
    assert list(got) == ["EB/bass", "TD/a-b", "x", "DP/drums"]
    assert mean_metrics([]) == {}


# ---------------------------------------------------------------- undefined, and why
def test_undefined_metrics_are_named_with_their_reason_in_one_line():
    nan = float("nan")
    row = {"EB": 1.0, "UPC": nan, "QN": nan, "DP": 0.5, "polyphony": nan, "in_key": nan}
    row |= {"consonance": nan, "TD": nan}
    why = why_undefined(row)
    assert why is not None and "\n" not in why
    assert why.startswith("UPC, QN, polyphony, in_key, consonance undefined: no pitched note")
    assert "TD undefined: no bar in which two pitched parts sound" in why
    assert "EB" not in why and "DP" not in why
    assert why_undefined({"EB": 0.5, "UPC": 3.0, "TD": 0.7}) is None
