"""The harmony step: chord names, the sampler, the shipped harmony model and its card."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from deepkeys.device.chords import (
    N_TOKENS,
    NO_CHORD,
    Chord,
    fingered,
    parse_progression,
    progression_text,
)
from deepkeys.device.encoding import notes_to_voice
from deepkeys.device.errors import UserError
from deepkeys.device.generation.harmony import (
    CELL_STEPS,
    Harmonizer,
    estimate_key,
    load_harmony_card,
    pitch_class_weights,
    sample_chain,
)
from deepkeys.device.generation.midifile import read_melody

from conftest import MELODIES, MODELS

HARMONY = MODELS / "harmony.json"


@pytest.fixture(scope="module")
def harmonizer() -> Harmonizer:
    return Harmonizer(load_harmony_card(HARMONY))


@pytest.fixture(scope="module")
def ode() -> tuple[np.ndarray, np.ndarray]:
    melody = read_melody(MELODIES / "ode_to_joy.mid")
    return notes_to_voice(melody.notes, melody.n_steps)


# --- names ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "expected"),
    [("C", "C"), ("Cmin", "Cm"), ("F#m7", "F#m7"), ("BbM7", "Bbmaj7"), ("Dm7b5", "Ddim"),
     ("Gsus", "Gsus4"), ("A7sus4", "Asus4"), ("E/G#", "E/Ab"), ("N.C.", "N"), ("Cadd9", "C")],
)  # fmt: skip
def test_chord_names_people_write_fold_onto_the_vocabulary(name, expected):
    # One spelling per pitch class (ROOT_NAMES): G# is written Ab.
    assert Chord.parse(name).name == expected


@pytest.mark.parametrize("bad", ["H", "Cx7", "C/H", "", "c", "Am/"])
def test_a_bad_chord_name_is_one_user_error(bad):
    with pytest.raises(UserError, match="not a chord name"):
        Chord.parse(bad)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("C | | G", "bar 2 of the chords is empty"),
        ("C G Am | F", "has 3 chords"),
        ("  ", "no chords"),
    ],
)
def test_a_bad_progression_says_which_bar(text, message):
    with pytest.raises(UserError, match=message):
        parse_progression(text)


def test_every_token_round_trips_and_a_progression_reads_back():
    for token in range(N_TOKENS):
        assert Chord.from_token(token).token == token
        assert Chord.parse(Chord.from_token(token).name).token == token
    text = "C | G | Am F | F G"
    assert progression_text(parse_progression(text)) == text


def test_fingered_chords_read_as_an_arranger_keyboard_does():
    assert fingered([48, 52, 55, 58]).name == "C7"
    assert fingered([45, 48, 52]).name == "Am"
    assert fingered([43, 47, 50, 53]).name == "G7"
    assert fingered([52, 55, 60]).name == "C/E"


def test_the_key_estimate_follows_transposition(ode):
    pitch, _ = ode
    key = estimate_key(pitch_class_weights(pitch))
    shifted = estimate_key(pitch_class_weights(np.where(pitch >= 0, pitch + 5, pitch)))
    assert shifted.rotation == (key.rotation + 5) % 12


# --- the sampler -----------------------------------------------------------------------
def test_the_sampler_keeps_fixed_cells_and_never_draws_no_chord():
    rng = np.random.default_rng(0)
    emission = np.log(rng.dirichlet(np.ones(N_TOKENS), size=12))
    emission[:, NO_CHORD] = 0.0  # the most likely token everywhere, and never allowed
    tokens = sample_chain(emission, np.zeros((N_TOKENS, N_TOKENS)), 1.0, rng, {3: 17})
    assert tokens[3] == 17
    assert NO_CHORD not in tokens


def test_temperature_zero_is_the_most_likely_path():
    emission = np.full((3, N_TOKENS), -10.0)
    emission[:, 5] = 0.0
    emission[1, 9] = 0.5  # alone, cell 1 prefers 9 ...
    transition = np.full((N_TOKENS, N_TOKENS), -5.0)
    np.fill_diagonal(transition, 0.0)  # ... but staying on 5 is worth more
    assert sample_chain(emission, transition, 0.0, np.random.default_rng(0)) == [5, 5, 5]
    assert sample_chain(emission, np.zeros_like(transition), 0.0, np.random.default_rng(0)) == [
        5,
        9,
        5,
    ]


# --- the shipped model ---------------------------------------------------------------
def test_one_seed_one_progression_and_another_seed_reharmonizes(harmonizer, ode):
    pitch, onset = ode
    first = harmonizer.harmonize(pitch, onset, seed=1)
    assert len(first) == -(-len(pitch) // CELL_STEPS)
    assert all(c.root is not None for c in first)
    assert harmonizer.harmonize(pitch, onset, seed=1) == first
    others = [harmonizer.harmonize(pitch, onset, seed=s, temperature=1.0) for s in range(2, 6)]
    assert any(o != first for o in others)


def test_hints_are_kept_and_the_chords_around_them_still_fit(harmonizer, ode):
    pitch, onset = ode
    hints = {0: Chord.parse("F"), 5: Chord.parse("Bbmaj7")}
    chords = harmonizer.harmonize(pitch, onset, seed=3, hints=hints)
    assert chords[0] == hints[0] and chords[5] == hints[5]


def test_the_model_harmonizes_a_c_major_tune_in_c(harmonizer, ode):
    """Ode to Joy is in a major key: its most likely chords are mostly the key's I, IV, V."""
    pitch, onset = ode
    key = estimate_key(pitch_class_weights(pitch))
    chords = harmonizer.harmonize(pitch, onset, temperature=0.0)
    primary = {(key.tonic + i) % 12 for i in (0, 5, 7)}
    share = np.mean([c.root in primary for c in chords])
    assert share >= 0.6, [c.name for c in chords]


def test_the_rule_harmonizer_is_the_fallback_and_is_deterministic(ode):
    pitch, onset = ode
    rule = Harmonizer.rule()
    a, b = rule.harmonize(pitch, onset, seed=1), rule.harmonize(pitch, onset, seed=9)
    assert a == b and all(c.quality in ("maj", "min", "dim") for c in a)


def test_the_harmony_card_refuses_a_changed_model_or_vocabulary(tmp_path: Path):
    shutil.copy(HARMONY.with_suffix(".tflite"), tmp_path / "harmony.tflite")
    raw = json.loads(HARMONY.read_text())
    bad = {**raw, "chords": {**raw["chords"], "qualities": ["maj", "min"]}}
    (tmp_path / "harmony.json").write_text(json.dumps(bad))
    with pytest.raises(UserError, match="vocabulary"):
        load_harmony_card(tmp_path / "harmony.json")
    (tmp_path / "harmony.json").write_text(json.dumps({**raw, "sha256": "0" * 64}))
    with pytest.raises(UserError, match="sha256"):
        load_harmony_card(tmp_path / "harmony.json")
    (tmp_path / "harmony.json").write_text("{not json")
    with pytest.raises(UserError, match="not a readable harmony card"):
        load_harmony_card(tmp_path / "harmony.json")


def test_the_harmony_card_records_how_it_was_made_and_its_test_figures():
    raw = json.loads(HARMONY.read_text())
    prov = raw["provenance"]
    assert prov["command"].startswith("deepkeys train-harmony")
    assert "POP909" in prov["dataset"] and "chorales" in prov["dataset"]
    test = prov["test_metrics"]
    assert test["model_most_likely_pop909"]["root"] > test["rule_pop909"]["root"]
    assert test["model_most_likely"]["top2_root"] > test["model_most_likely"]["root"]
