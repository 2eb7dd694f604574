"""`deepkeys generate` end to end with the shipped chorale model: files, determinism,
melody lengths and registers, and every kind of bad input."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import wave
from pathlib import Path

import mido
import numpy as np
import pytest

from deepkeys.device.generation.arrange import compose
from deepkeys.device.generation.card import load_card
from deepkeys.device.generation.generator import Generator
from deepkeys.device.generation.midifile import read_melody

from conftest import MELODIES, MODELS, run_cli, write_midi

pytestmark = pytest.mark.usefixtures("chorale_card")


def generate(src: Path, out: Path, *extra: str) -> dict[str, Path]:
    result = run_cli("generate", src, "--genre", "chorale", "--out", out, *extra)
    assert result.returncode == 0, result.stderr
    return {k: Path(v) for k, v in (line.split("=", 1) for line in result.stdout.split())}


def notes_of(track: mido.MidiTrack) -> list[tuple[int, int]]:
    """(pitch, absolute tick) of each note-on in a track."""
    now, out = 0, []
    for msg in track:
        now += msg.time
        if msg.type == "note_on" and msg.velocity:
            out.append((msg.note, now))
    return out


def test_generate_writes_midi_wav_and_png(tmp_path):
    paths = generate(MELODIES / "ode_to_joy.mid", tmp_path)
    assert {p.name for p in paths.values()} == {
        "ode_to_joy-chorale.mid",
        "ode_to_joy-chorale.wav",
        "ode_to_joy-chorale.png",
    }
    card = load_card(MODELS / "chorale.json")
    mid = mido.MidiFile(paths["mid"])
    names = [t.name for t in mid.tracks if any(m.type == "note_on" for m in t)]
    assert names == ["melody"] + [t.name for t in card.tracks]
    melody = read_melody(MELODIES / "ode_to_joy.mid")
    melody_track = next(t for t in mid.tracks if t.name == "melody")
    assert [p for p, _ in notes_of(melody_track)] == [n.pitch for n in melody.notes]
    for spec in card.tracks:
        track = next(t for t in mid.tracks if t.name == spec.name)
        programs = [m.program for m in track if m.type == "program_change"]
        assert programs == [spec.program]
        assert len(notes_of(track)) >= melody.n_steps // 16  # at least a note a bar
    with wave.open(str(paths["wav"])) as w:
        assert (w.getframerate(), w.getnchannels()) == (48000, 2)
        seconds = w.getnframes() / w.getframerate()
        audio = np.frombuffer(w.readframes(w.getnframes()), np.int16)
    expected = melody.n_steps / 4 * 60 / melody.tempo_bpm
    assert expected < seconds < expected + 3
    assert np.abs(audio).max() > 1000
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_stdout_holds_only_the_paths_even_on_a_ci_runner(tmp_path):
    # pyfluidsynth prints where it found libfluidsynth when $CI is set; scripts parse our stdout.
    env = {**os.environ, "CI": "1"}
    result = run_cli(
        "generate", MELODIES / "twinkle.mid", "--genre", "chorale", "--out", tmp_path, env=env
    )
    assert result.returncode == 0, result.stderr
    assert [line.split("=")[0] for line in result.stdout.splitlines()] == ["mid", "wav", "png"]


def test_same_seed_same_output_another_seed_a_variation(tmp_path):
    a = generate(MELODIES / "twinkle.mid", tmp_path / "a", "--seed", "7", "--no-wav")
    b = generate(MELODIES / "twinkle.mid", tmp_path / "b", "--seed", "7", "--no-wav")
    c = generate(MELODIES / "twinkle.mid", tmp_path / "c", "--seed", "8", "--no-wav")
    assert a["mid"].read_bytes() == b["mid"].read_bytes()
    assert a["mid"].read_bytes() != c["mid"].read_bytes()


def test_tempo_is_kept_unless_given(tmp_path):
    src = write_midi(tmp_path / "slow.mid", [(67, i, 1) for i in range(8)], bpm=72)
    kept = generate(src, tmp_path / "kept", "--no-wav")
    assert mido.tempo2bpm(_tempo(kept["mid"])) == pytest.approx(72, abs=0.01)
    given = generate(src, tmp_path / "given", "--no-wav", "--tempo", "132")
    assert mido.tempo2bpm(_tempo(given["mid"])) == pytest.approx(132, abs=0.01)


def _tempo(path: Path) -> int:
    return next(m.tempo for t in mido.MidiFile(path).tracks for m in t if m.type == "set_tempo")


@pytest.fixture(scope="module")
def generator() -> Generator:
    return Generator(load_card(MODELS / "chorale.json"))


def test_short_melody_is_looped_and_cut_back(tmp_path, generator):
    src = write_midi(tmp_path / "one_bar.mid", [(72, 0, 1), (71, 1, 1), (69, 2, 1), (67, 3, 1)])
    comp = compose(read_melody(src), generator, seed=1)
    assert comp.n_steps == 16
    for track in comp.tracks[1:]:
        assert track.notes, track.name
        assert max(n.end for n in track.notes) <= 16


def test_long_melody_is_accompanied_phrase_by_phrase(tmp_path, generator):
    scale = [60, 62, 64, 65, 67, 69, 71, 72, 71, 69]
    src = write_midi(
        tmp_path / "ten_bars.mid", [(scale[i // 4 % 10], i, 1) for i in range(40)]
    )  # 10 bars of quarters
    comp = compose(read_melody(src), generator, seed=1)
    assert comp.n_steps == 160
    for track in comp.tracks[1:]:
        bars = {n.start // 16 for n in track.notes}
        assert bars >= set(range(10)) - {0}, (track.name, sorted(bars))


@pytest.mark.parametrize("octave", [-2, 0, 2])
def test_any_register_gets_an_accompaniment_in_its_own_register(tmp_path, generator, octave):
    tune = [(60 + 12 * octave + p, i, 1) for i, p in enumerate([7, 7, 9, 11, 12, 11, 9, 7] * 2)]
    comp = compose(read_melody(write_midi(tmp_path / "m.mid", tune)), generator, seed=3)
    melody = np.median([n.pitch for n in comp.tracks[0].notes])
    accompaniment = [n.pitch for t in comp.tracks[1:] for n in t.notes]
    assert len(accompaniment) >= 8
    # Chorale voices lie below the tune: within three octaves under it, never far above.
    assert melody - 36 <= np.median(accompaniment) <= melody


def test_polyphonic_input_takes_its_top_line(tmp_path):
    chords = [(p, i, 1) for i in range(8) for p in (48, 55, 64 + (i % 3))]
    melody = read_melody(write_midi(tmp_path / "chords.mid", chords))
    assert [n.pitch for n in melody.notes] == [64 + (i % 3) for i in range(8)]


def test_generate_does_not_import_tensorflow(tmp_path):
    code = (
        "import sys\n"
        "from deepkeys.device.cli import main\n"
        f"rc = main(['generate', {str(MELODIES / 'twinkle.mid')!r}, '--genre', 'chorale',"
        f" '--out', {str(tmp_path)!r}])\n"
        "assert rc == 0\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'music21')]\n"
        "print('host modules:', bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# --- bad input: one line, exit 2, nothing written ---------------------------------------
def _models_copy(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for f in MODELS.glob("chorale.*"):
        shutil.copy(f, folder)
    return folder


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    good = MELODIES / "twinkle.mid"
    cases: dict[str, tuple[list[str], str]] = {}
    (tmp_path / "text.mid").write_text("hello, not music\n")
    cases["not a MIDI file"] = ([str(tmp_path / "text.mid")], "not a MIDI file")
    data = good.read_bytes()
    (tmp_path / "cut.mid").write_bytes(data[: len(data) // 2])
    cases["truncated"] = ([str(tmp_path / "cut.mid")], "truncated")
    (tmp_path / "empty.mid").write_bytes(b"")
    cases["empty"] = ([str(tmp_path / "empty.mid")], "empty")
    write_midi(tmp_path / "drums.mid", [(36, i, 1) for i in range(4)], channel=9)
    cases["no pitched notes"] = ([str(tmp_path / "drums.mid")], "no pitched notes")
    cases["missing input"] = ([str(tmp_path / "nope.mid")], "no such file")
    cases["unknown genre"] = ([str(good), "--genre", "polka"], "no model for genre 'polka'")

    missing = _models_copy(tmp_path / "m1")
    (missing / "chorale.tflite").unlink()
    cases["missing model file"] = ([str(good), "--models", str(missing)], "model file missing")

    corrupt = _models_copy(tmp_path / "m2")
    (corrupt / "chorale.tflite").write_bytes(b"\0garbage" * 100)
    cases["card does not match model"] = (
        [str(good), "--models", str(corrupt)],
        "does not match its card",
    )

    unloadable = _models_copy(tmp_path / "m3")
    (unloadable / "chorale.tflite").write_bytes(b"\0garbage" * 100)
    card = json.loads((unloadable / "chorale.json").read_text())
    card["sha256"] = hashlib.sha256(b"\0garbage" * 100).hexdigest()
    (unloadable / "chorale.json").write_text(json.dumps(card))
    cases["corrupt model"] = ([str(good), "--models", str(unloadable)], "not a loadable LiteRT")

    shapes = _models_copy(tmp_path / "m4")
    card = json.loads((shapes / "chorale.json").read_text())
    card["shapes"]["inputs"]["noise"]["shape"] = [1, 7]
    (shapes / "chorale.json").write_text(json.dumps(card))
    cases["card shapes do not match"] = ([str(good), "--models", str(shapes)], "card says")

    broken = _models_copy(tmp_path / "m5")
    (broken / "chorale.json").write_text("{ not json")
    cases["unreadable card"] = ([str(good), "--models", str(broken)], "not a readable model card")
    return cases


BAD_CASES = [
    "not a MIDI file",
    "truncated",
    "empty",
    "no pitched notes",
    "missing input",
    "unknown genre",
    "missing model file",
    "card does not match model",
    "corrupt model",
    "card shapes do not match",
    "unreadable card",
]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, case):
    args, message = _bad_inputs(tmp_path)[case]
    out = tmp_path / "out"
    if "--genre" not in args:
        args = [args[0], "--genre", "chorale", *args[1:]]
    result = run_cli("generate", *args, "--out", out)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("deepkeys: "), result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.stderr
    assert not out.exists() or not any(out.iterdir())
