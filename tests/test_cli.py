"""The command line: host commands without the host extra, listing genres, the demo and
the benchmarks."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import REPO, SHIPPED_GENRES, run_cli


@pytest.mark.host  # it hides TensorFlow only: music21 must be there
def test_host_command_without_host_extra_says_what_to_install():
    # Hide TensorFlow as a device install would lack it.
    code = (
        "import importlib.util as u, sys\n"
        "real = u.find_spec\n"
        "u.find_spec = lambda name, *a: None if name == 'tensorflow' else real(name, *a)\n"
        "from deepkeys.device.cli import main\n"
        "sys.exit(main(['train', '--genre', 'chorale']))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "deepkeys: 'deepkeys train' runs on the workstation and needs tensorflow: "
        "pip install 'deepkeys[host]'"
    )


def test_genres_lists_the_shipped_chorale_model(chorale_card):
    result = run_cli("genres")
    assert result.returncode == 0
    rows = {line.split("\t")[0]: line.split("\t") for line in result.stdout.splitlines()}
    assert rows["chorale"][2] == "alto, tenor, bass"


def test_unknown_subcommand_is_a_usage_error():
    result = run_cli("fly")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


def test_demo_accompanies_every_bundled_melody(tmp_path, chorale_card):
    result = run_cli("demo", "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    melodies = sorted(p.stem for p in (REPO / "device" / "melodies").glob("*.mid"))
    for stem in melodies:
        for ext in ("mid", "wav", "png"):
            assert (tmp_path / f"{stem}-chorale.{ext}").stat().st_size > 0
    genres = SHIPPED_GENRES
    for genre in genres:
        assert (tmp_path / f"{melodies[0]}-{genre}.mid").exists()
    assert (
        result.stdout.strip()
        .splitlines()[-1]
        .startswith(f"deepkeys demo: {len(melodies) * len(genres)} ")
    )


@pytest.mark.parametrize(
    "args, row",
    [
        (["startup", "--runs", "1"], "| start to READY (s) |"),
        (["latency", "--notes", "20"], "| key to audio"),
        (["synth", "--seconds", "0.5"], "| FluidSynth, "),
    ],
)
def test_bench_commands_print_their_figures(args, row, chorale_card):
    # Benchmarks report, they never pass or fail on speed: check they measure something.
    result = run_cli("bench", *args)
    assert result.returncode == 0, result.stdout + result.stderr
    line = next(x for x in result.stdout.splitlines() if x.startswith(row))
    figures = [c.strip() for c in line.strip("|").split("|")[1:]]
    assert all(float(f) > 0 for f in figures), line


def test_generate_plays_the_chords_it_is_given(tmp_path):
    """--chords: the bass plays the given roots (F# and Db, far from the tune's own C major)."""
    import collections

    import mido

    from deepkeys.device.chords import Chord

    result = run_cli(
        "generate", str(REPO / "device" / "melodies" / "ode_to_joy.mid"), "--genre", "rock",
        "--out", str(tmp_path), "--no-wav", "--chords", "F#m | Db",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    mid = mido.MidiFile(tmp_path / "ode_to_joy-rock.mid")
    bass = next(t for t in mid.tracks if t.name == "bass")
    pitch_classes = collections.Counter(
        m.note % 12 for m in bass if m.type == "note_on" and m.velocity
    )
    assert pitch_classes and sum(pitch_classes[pc] for pc in (6, 1)) > 0.6 * sum(
        pitch_classes.values()
    )
    # The chords are marker events of the conductor track, one a bar here, as DAWs show them.
    tick, markers = 0, []
    for msg in mid.tracks[0]:
        tick += msg.time
        if msg.type == "marker":
            markers.append((tick // (4 * mid.ticks_per_beat), msg.text))
    names = [Chord.parse(name).name for name in ("F#m", "Db")]  # as the chords print: C#
    assert markers == [(bar, names[bar % 2]) for bar in range(8)]  # ode to joy's 8 bars


def test_a_bad_chord_name_is_one_line_and_status_2(tmp_path):
    result = run_cli(
        "generate", str(REPO / "device" / "melodies" / "ode_to_joy.mid"), "--genre", "rock",
        "--out", str(tmp_path), "--chords", "C | H7",
    )  # fmt: skip
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "H7" in result.stderr
    assert not list(tmp_path.iterdir())
