"""A genre from the user's own MIDI files: a folder of generated multitrack files, some
of them broken, scanned, split, trained (tiny), exported and played."""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter

import mido
import numpy as np
import pytest

from conftest import MELODIES, run_cli

pytest.importorskip("tensorflow")
from deepkeys.device.encoding import DRUM_CLASSES, Note
from deepkeys.device.generation.card import load_card
from deepkeys.device.generation.generator import Generator
from deepkeys.device.generation.midifile import read_melody
from deepkeys.host.data.band import BAND
from deepkeys.host.data.folder import (
    CAP_MEDIANS,
    CAP_MIN,
    balanced_split,
    load_folder,
    scan_folder,
)
from deepkeys.host.data.synthetic import ROOTS, band_song
from deepkeys.host.evaluate import evaluate_table, shuffled, true_parts, window_metrics
from deepkeys.host.export import calibration_set, export
from deepkeys.host.model import GeneratorConfig, TrainConfig
from deepkeys.host.train import Trainer, read_log


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("my music")
    for i in range(8):
        band_song(root / f"song {i} (take 'one').mid", seed=i)
    (root / "sub").mkdir()
    band_song(root / "sub" / "nested.MIDI", seed=99)
    (root / "garbage.mid").write_bytes(b"MThd\x00\x00\x00\x06this is not midi")
    band_song(root / "waltz.mid", seed=1, metre=(3, 4))
    band_song(root / "short.mid", seed=2, bars=2)
    band_song(root / "solo.mid", seed=3, parts=("lead",))
    band_song(root / "chords only.mid", seed=4, parts=("piano", "drums"))
    mido.MidiFile(tracks=[mido.MidiTrack()]).save(root / "empty.mid")
    (root / "notes.txt").write_text("not a MIDI file, not even looked at")
    return root


def test_every_unusable_file_is_listed_with_its_reason(folder):
    scan = scan_folder(folder)
    reasons = {p.name: why for p, why in scan.skipped}
    assert set(reasons) == {
        "garbage.mid",
        "waltz.mid",
        "short.mid",
        "solo.mid",
        "chords only.mid",
        "empty.mid",
    }
    assert reasons["garbage.mid"].startswith("not a readable MIDI file")
    assert reasons["waltz.mid"] == "not in 4/4 (3/4)"
    assert reasons["short.mid"] == "shorter than one 4-bar phrase"
    assert reasons["solo.mid"] == "no accompaniment tracks besides the melody"
    assert reasons["chords only.mid"].startswith("no monophonic melody track")
    assert reasons["empty.mid"] == "no notes"
    assert len(scan.pieces) == 9  # eight songs and the nested one


def test_tracks_map_by_program_family_and_the_melody_is_the_top_line(folder):
    piece = next(p for p in scan_folder(folder).pieces if p.name.startswith("song 0"))
    assert (piece.melody_pitch[piece.melody_pitch >= 0] >= 72).all()  # the lead, not the piano
    assert piece.parts["bass"].sounding[:, 48].any()
    assert piece.parts["comp"].sounding[:, 60].any()  # the piano chords
    assert not piece.parts["pad"].sounding.any()  # the lead is the melody, not a pad
    assert piece.parts["drums"].onset[0, 0] and piece.parts["drums"].onset[4, 1]  # kick, snare


def test_a_named_melody_track_wins_and_a_missing_one_is_a_reason(folder):
    by_name = scan_folder(folder, melody_track="PIANO")
    song = next(p for p in by_name.pieces if p.name.startswith("song 0"))
    tops = {r + 12 + 7 for r in ROOTS}  # the piano chords' top notes
    assert set(song.melody_pitch[song.melody_pitch >= 0].tolist()) == tops
    missing = dict((p.name, why) for p, why in scan_folder(folder, melody_track="flute").skipped)
    assert missing["song 0 (take 'one').mid"].startswith("no track named 'flute'")


def test_split_is_by_file(folder):
    sets = load_folder(folder)
    names = {part: set(w.names) for part, w in sets.items()}
    assert all(names.values())
    assert not (names["train"] & names["test"]) and not (names["train"] & names["validation"])


@pytest.fixture(scope="module")
def lopsided(tmp_path_factory):
    """Many short songs and three long ones, as a real folder of game music has."""
    root = tmp_path_factory.mktemp("lopsided")
    for i in range(22):
        band_song(root / f"short {i}.mid", seed=i, bars=8)
    for i in range(3):
        band_song(root / f"long {i}.mid", seed=100 + i, bars=200)
    return root


def test_split_is_balanced_by_windows_and_each_set_is_reported(lopsided, caplog):
    caplog.set_level(logging.INFO, logger="deepkeys.host.data.folder")
    sets = load_folder(lopsided)
    sizes = {part: len(w) for part, w in sets.items()}
    total = sum(sizes.values())
    # held-out sets get about their tenth of the windows, not 2 % as a split by file did
    assert 0.07 <= sizes["validation"] / total <= 0.16, sizes
    assert 0.07 <= sizes["test"] / total <= 0.16, sizes
    names = {part: set(w.names) for part, w in sets.items()}
    assert not (names["train"] & names["test"]) and not (names["train"] & names["validation"])
    # a long file is thinned to the cap, evenly: it cannot outweigh the rest
    per_file = Counter(n for w in sets.values() for n in w.names)
    assert per_file["long 0.mid"] == max(CAP_MIN, CAP_MEDIANS * 5) < 197
    lines = [r.getMessage() for r in caplog.records]
    for part in ("train", "validation", "test"):
        line = next(m for m in lines if m.startswith(f"split set={part} "))
        assert f"windows={sizes[part]}" in line and f"files={len(names[part])}" in line
        assert "bass=100%" in line and "comp=100%" in line and "pad=0%" in line
    assert any(m.startswith("capped file='long 0.mid' windows=197 kept=") for m in lines)


def test_the_split_does_not_move_with_unrelated_files():
    counts = {f"f{i}.mid": 10 for i in range(30)}
    before = balanced_split(counts)
    assert Counter(before.values()) == {"train": 24, "validation": 3, "test": 3}
    assert balanced_split(counts) == before  # deterministic
    three = balanced_split({"a.mid": 100, "b.mid": 50, "c.mid": 60})
    assert three == {"a.mid": "train", "b.mid": "test", "c.mid": "validation"}


def test_a_folder_without_enough_usable_files_is_a_one_line_error(tmp_path):
    (tmp_path / "garbage.mid").write_bytes(b"nope")
    band_song(tmp_path / "one.mid", seed=0)
    result = run_cli(
        "train",
        "--genre",
        "mine",
        "--data",
        tmp_path,
        "--epochs",
        "1",
        "--run-dir",
        tmp_path / "run",
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"deepkeys: {tmp_path}: 1 usable MIDI files, need at least 3 (train, validation, test)"
    )


def test_custom_genre_trains_exports_and_accompanies(folder, tmp_path):
    cfg = GeneratorConfig(
        **BAND,
        n_drum_classes=len(DRUM_CLASSES),
        widths=(16, 16, 16, 16),
        critic_widths=(8, 8, 8, 8),
        noise_dim=4,
    )
    data = load_folder(folder)
    run = tmp_path / "run"
    run.mkdir()
    trainer = Trainer(cfg, TrainConfig(epochs=2, batch_size=8, steps_per_epoch=5), run)
    trainer.write_config("my-band", f"deepkeys train --genre my-band --data '{folder}'")
    trainer.fit(data, run / "log.jsonl", "test")
    rows = read_log(run / "log.jsonl")
    assert {"poly_bce", "drum_bce", "val_DP", "val_loss"} <= set(rows[-1])

    card = export(
        run,
        "my-band",
        tmp_path / "models",
        calibration_set(data["train"], cfg),
        melody_center=76,
        history=rows,
        extra_provenance={},
        dataset="my files",
    )
    assert card.path is not None
    card = load_card(card.path)
    assert {t.name: t.kind for t in card.tracks} == {
        "bass": "mono",
        "comp": "poly",
        "pad": "poly",
        "drums": "drums",
    }
    drums = next(t for t in card.tracks if t.kind == "drums")
    assert drums.channel == 9 and len(drums.drum_notes) == len(DRUM_CLASSES)
    melody = read_melody(MELODIES / "twinkle.mid")
    parts = Generator(card).accompany(melody.notes, melody.n_steps, seed=0).parts
    assert set(parts) == {"bass", "comp", "pad", "drums"}
    for notes in parts.values():
        assert all(0 <= n.start < n.end <= melody.n_steps for n in notes)
    result = run_cli(
        "generate",
        MELODIES / "twinkle.mid",
        "--genre",
        "my-band",
        "--models",
        tmp_path / "models",
        "--out",
        tmp_path / "out",
        "--no-wav",
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "twinkle-my-band.mid").exists()


# --------------------------------------------------------------------------- the baseline
def test_the_shuffled_baseline_pairs_melodies_with_other_pieces_or_says_why_not(folder, caplog):
    data = load_folder(folder)["train"]
    kinds = {"bass": "mono", "comp": "poly", "pad": "poly", "drums": "drums"}
    # one piece holds three quarters of the windows: the baseline still forms
    n = len(data)
    names = ["big"] * (3 * n // 4) + ["small"] * (n - 3 * n // 4)
    lopsided = dataclasses.replace(data, names=names)
    real = true_parts(lopsided, kinds)
    # each window's "accompaniment" names its window, to see which one each melody gets
    tagged = [{"w": [Note(60, i, i + 1)]} for i in range(n)]
    pairs = [p["w"][0].start for p in shuffled(tagged, names)]
    assert all(names[j] != names[i] for i, j in enumerate(pairs))
    table = evaluate_table(lopsided, kinds, lambda *_: real)
    assert set(table) == {"generated", "real", "shuffled"}
    # one piece only: no baseline, one warning line, the rest of the table
    caplog.set_level(logging.WARNING, logger="deepkeys.evaluate")
    single = dataclasses.replace(data, names=["only"] * n)
    table = evaluate_table(single, kinds, lambda *_: true_parts(single, kinds))
    assert set(table) == {"generated", "real"}
    warnings = [r.getMessage() for r in caplog.records if r.name == "deepkeys.evaluate"]
    assert warnings == [
        f'baseline=none reason="every one of the {n} windows is from one piece '
        "(only): no other piece's accompaniment to pair a melody with\""
    ]


def test_export_of_a_small_folder_finishes_with_a_warning_for_the_baseline(tmp_path):
    root = tmp_path / "three songs"
    root.mkdir()
    for i in range(3):
        band_song(root / f"song {i}.mid", seed=i, bars=8)
    cfg = GeneratorConfig(
        **BAND,
        n_drum_classes=len(DRUM_CLASSES),
        widths=(16, 16, 16, 16),
        critic_widths=(8, 8, 8, 8),
        noise_dim=4,
    )
    run = tmp_path / "run"
    run.mkdir()
    trainer = Trainer(cfg, TrainConfig(epochs=1, batch_size=4, steps_per_epoch=2), run)
    trainer.write_config("mine", f"deepkeys train --genre mine --data '{root}'")
    trainer.fit(load_folder(root), run / "log.jsonl", "test")
    result = run_cli(
        "export", "--genre", "mine", "--run-dir", run, "--data", root, "--out", tmp_path / "m"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    baseline = [line for line in result.stderr.splitlines() if "baseline=none" in line]
    assert len(baseline) == 1 and "from one piece" in baseline[0], result.stderr[-3000:]
    card = load_card(tmp_path / "m" / "mine.json")
    assert set(card.provenance["metrics"]["test_split"]) == {"generated", "real"}
    # these songs have no pad: the card does not list an instrument that never plays
    assert [t.name for t in card.tracks] == ["bass", "comp", "drums"]
    assert card.provenance["dropped_tracks"] == {
        "pad": "its data never plays it (no note in the validation windows)"
    }
    assert "track=pad dropped" in result.stderr
    melody = read_melody(MELODIES / "twinkle.mid")
    parts = Generator(card).accompany(melody.notes, melody.n_steps, seed=0).parts
    assert set(parts) == {"bass", "comp", "drums"}


def test_undefined_validation_metrics_say_why_in_one_line(folder, caplog):
    cfg = GeneratorConfig(**BAND, n_drum_classes=len(DRUM_CLASSES), noise_dim=4)
    data = load_folder(folder)["validation"]
    n, steps = data.melody_pitch.shape
    silent_bass = np.zeros((n, steps, cfg.n_classes), np.float32)
    silent_bass[..., -1] = 1.0  # rest, everywhere
    outputs = {  # a model that plays drums only, as a real folder's did early in training
        "bass": silent_bass,
        "bass_onset": np.zeros((n, steps), np.float32),
        "comp": np.zeros((n, steps, cfg.n_pitches), np.float32),
        "comp_onset": np.zeros((n, steps), np.float32),
        "pad": np.zeros((n, steps, cfg.n_pitches), np.float32),
        "pad_onset": np.zeros((n, steps), np.float32),
        "drums": np.full((n, steps, cfg.n_drum_classes), 0.9, np.float32),
    }
    caplog.set_level(logging.WARNING, logger="deepkeys.evaluate")
    row = window_metrics(data, outputs, cfg)
    assert np.isnan(row["UPC"]) and row["EB"] == 0.75 and row["DP"] > 0  # 3 of 4 parts silent
    lines = [r.getMessage() for r in caplog.records if r.name == "deepkeys.evaluate"]
    assert len(lines) == 1
    assert lines[0].startswith(
        "validation metrics: UPC, QN, polyphony, in_key, consonance undefined: no pitched "
        "note in any window; TD undefined: no bar in which two pitched parts sound in any "
        f"window of the {n} decoded at threshold 0.5"
    ), lines[0]
