"""A genre from the user's own MIDI files: a folder of generated multitrack files, some
of them broken, scanned, split, trained (tiny), exported and played."""

from __future__ import annotations

import mido
import numpy as np
import pytest

from conftest import MELODIES, run_cli

pytest.importorskip("tensorflow")
from deepkeys.device.generation.card import load_card
from deepkeys.device.generation.generator import Generator
from deepkeys.device.generation.midifile import read_melody
from deepkeys.host.data.band import BAND
from deepkeys.host.data.folder import load_folder, scan_folder
from deepkeys.host.export import calibration_set, export
from deepkeys.host.model import GeneratorConfig, TrainConfig
from deepkeys.host.train import Trainer, read_log

TPB = 96
SCALE = [60, 62, 64, 65, 67, 69, 71, 72]
ROOTS = [48, 53, 55, 45]  # C F G A


def track(
    name: str, channel: int, program: int | None, notes: list[tuple[int, float, float]]
) -> mido.MidiTrack:
    """A named track from (pitch, start beat, beats) notes."""
    t = mido.MidiTrack([mido.MetaMessage("track_name", name=name)])
    if program is not None:
        t.append(mido.Message("program_change", channel=channel, program=program))
    events = []
    for pitch, start, length in notes:
        events.append((round(start * TPB), 1, "note_on", pitch))
        events.append((round((start + length) * TPB), 0, "note_off", pitch))
    now = 0
    for tick, _, kind, pitch in sorted(events):
        t.append(
            mido.Message(
                kind,
                channel=channel,
                note=pitch,
                velocity=80 if kind == "note_on" else 0,
                time=tick - now,
            )
        )
        now = tick
    return t


def band_song(
    path,
    seed: int,
    bars: int = 8,
    metre: tuple[int, int] = (4, 4),
    parts: tuple[str, ...] = ("lead", "bass", "piano", "drums"),
) -> None:
    rng = np.random.default_rng(seed)
    meta = mido.MidiTrack(
        [
            mido.MetaMessage("time_signature", numerator=metre[0], denominator=metre[1]),
            mido.MetaMessage("set_tempo", tempo=500000),
        ]
    )
    make = {
        "lead": lambda: track(
            "lead", 0, 73, [(int(rng.choice(SCALE)) + 12, b * 0.5, 0.5) for b in range(bars * 8)]
        ),
        "bass": lambda: track(
            "bass", 1, 33, [(ROOTS[(b // 4) % 4], b, 1.0) for b in range(bars * 4)]
        ),
        "piano": lambda: track(
            "piano",
            2,
            0,
            [
                (ROOTS[(b // 2) % 4] + 12 + i, b * 2, 2.0)
                for b in range(bars * 2)
                for i in (0, 4, 7)
            ],
        ),
        "drums": lambda: track(
            "drums",
            9,
            None,
            [
                (36 if b % 4 == 0 else 38 if b % 4 == 2 else 42, b * 0.5, 0.25)
                for b in range(bars * 8)
            ],
        ),
    }
    mido.MidiFile(ticks_per_beat=TPB, tracks=[meta] + [make[p]() for p in parts]).save(path)


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
    from deepkeys.device.encoding import DRUM_CLASSES

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
    trainer.write_config("my band", f"deepkeys train --genre 'my band' --data '{folder}'")
    trainer.fit(data, run / "log.jsonl", "test")
    rows = read_log(run / "log.jsonl")
    assert {"poly_bce", "drum_bce", "val_DP", "val_loss"} <= set(rows[-1])

    card = export(
        run,
        "my band",
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
        "my band",
        "--models",
        tmp_path / "models",
        "--out",
        tmp_path / "out",
        "--no-wav",
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "twinkle-my band.mid").exists()
