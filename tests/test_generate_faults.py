"""Faults of the offline ``deepkeys generate`` (issues 11.5, 11.6, 11.7, 11.14, 11.16 and
10): a full disk, bad flags, a tempo map, silent notes, huge inputs, given chords."""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
import wave
from collections.abc import Iterator
from pathlib import Path

import mido
import pytest

from deepkeys.device.cli.compose import DEFAULT_MAX_BARS
from deepkeys.device.config import TEMPO_MAX, TEMPO_MIN
from deepkeys.device.errors import UserError
from deepkeys.device.generation.arrange import compose
from deepkeys.device.generation.files import write_files
from deepkeys.device.generation.generator import Generator
from deepkeys.device.generation.midifile import read_melody
from deepkeys.device.generation.render import RELEASE_TAIL_S, wav_bytes

from conftest import MELODIES, MODELS, run_cli, write_midi

pytestmark = pytest.mark.usefixtures("chorale_card")


@contextlib.contextmanager
def tiny_disk(kib: int) -> Iterator[Path]:
    """A real filesystem of ``kib`` KiB (a tmpfs), so writes hit ENOSPC for real."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (the tests run as root in CI)")
    folder = Path(tempfile.mkdtemp(prefix="deepkeys-tiny-"))
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        folder.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)
        folder.rmdir()


def stderr_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one ``deepkeys: ...`` line a user error prints; fails on anything else."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stdout + result.stderr
    assert len(lines) == 1 and lines[0].startswith("deepkeys: "), result.stderr
    return lines[0]


# --- issue 11.5: a full disk leaves nothing behind -------------------------------------
def test_full_disk_leaves_no_partial_files() -> None:
    melody = read_melody(MELODIES / "twinkle.mid")
    comp = compose(melody, Generator.from_card(MODELS / "chorale.json"), seed=0)
    # 8 KiB (two pages) holds the .mid (under 1 KiB) but not the PNG (about 9 KiB): the
    # write itself fails (with a WAV, the check for its room says so before rendering).
    with tiny_disk(8) as disk:
        out = disk / "out"
        with pytest.raises(UserError) as raised:
            write_files(comp, out, "twinkle-chorale", wav=False)
        message = str(raised.value)
        assert "\n" not in message and "nothing was written" in message
        assert sorted(p.name for p in out.iterdir()) == []  # no .mid, no staging folder


def test_generate_on_a_full_disk_is_one_line_and_leaves_nothing() -> None:
    with tiny_disk(200) as disk:
        out = disk / "out"
        result = run_cli("generate", MELODIES / "twinkle.mid", "--genre", "chorale", "--out", out)
        line = stderr_line(result)
        assert str(out) in line
        assert not out.exists() or sorted(out.iterdir()) == []


# --- issue 11.6: bad flags are one line, exit 2, never a traceback ------------------------
def bad_flags(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder\n")
    return {
        "temperature nan": (["--temperature", "nan"], "--temperature nan"),
        "temperature inf": (["--temperature", "inf"], "--temperature inf"),
        "temperature negative": (["--temperature", "-0.5"], "--temperature -0.5"),
        "temperature a word": (["--temperature", "hot"], "--temperature hot"),
        "seed below -1": (["--seed", "-2"], "--seed -2"),
        "seed a word": (["--seed", "lucky"], "--seed lucky"),
        "models missing": (["--models", str(tmp_path / "gone")], "no such folder"),
        "models a file": (["--models", str(a_file)], "not a folder"),
        "out a file": (["--out", str(a_file)], "is a file, not a folder"),
        "tempo nan": (["--tempo", "nan"], "--tempo nan"),
        "max-bars 0": (["--max-bars", "0"], "--max-bars 0"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "temperature nan",
        "temperature inf",
        "temperature negative",
        "temperature a word",
        "seed below -1",
        "seed a word",
        "models missing",
        "models a file",
        "out a file",
        "tempo nan",
        "max-bars 0",
    ],
)
def test_a_bad_flag_is_one_line(tmp_path: Path, case: str) -> None:
    flags, message = bad_flags(tmp_path)[case]
    out = tmp_path / "out"
    if "--out" not in flags:
        flags = [*flags, "--out", str(out)]
    result = run_cli("generate", MELODIES / "twinkle.mid", "--genre", "chorale", *flags)
    assert message in stderr_line(result)
    assert not out.exists()
    assert (tmp_path / "a-file").read_text() == "not a folder\n"  # --out a file: untouched


def test_seed_minus_one_is_from_the_clock_and_printed_so_it_can_be_replayed(
    tmp_path: Path,
) -> None:
    def run(out: Path, seed: str) -> dict[str, str]:
        result = run_cli(
            "generate", MELODIES / "twinkle.mid", "--genre", "chorale", "--out", out,
            "--no-wav", "--seed", seed,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        return dict(line.split("=", 1) for line in result.stdout.splitlines())

    clocked = run(tmp_path / "a", "-1")
    assert list(clocked) == ["seed", "mid", "png"]
    assert 0 <= int(clocked["seed"]) < 1_000_000
    replayed = run(tmp_path / "b", clocked["seed"])
    assert list(replayed) == ["mid", "png"]  # a seed given is not printed: stdout is the paths
    assert Path(clocked["mid"]).read_bytes() == Path(replayed["mid"]).read_bytes()


# --- issue 11.7: the input's tempo map is kept in every output ---------------------------
def speeding_up(path: Path) -> Path:
    """Eight bars of quarter notes, 90 BPM, then 160 BPM from bar 3 (the probe's file)."""
    tpb = 480
    track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(90))])
    for beat in range(32):
        if beat == 8:
            track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(160)))
        track.append(mido.Message("note_on", note=60 + beat % 8, velocity=90))
        track.append(mido.Message("note_off", note=60 + beat % 8, time=tpb))
    mido.MidiFile(type=0, ticks_per_beat=tpb, tracks=[track]).save(path)
    return path


def tempo_map_of(path: Path) -> list[tuple[float, float]]:
    """(beat, BPM) of every set_tempo in a file."""
    mid = mido.MidiFile(path)
    found = []
    for track in mid.tracks:
        tick = 0
        for msg in track:
            tick += msg.time
            if msg.type == "set_tempo":
                found.append((tick / mid.ticks_per_beat, round(mido.tempo2bpm(msg.tempo), 2)))
    return sorted(found)


def test_a_tempo_change_is_kept_in_the_midi_and_the_wav(tmp_path: Path) -> None:
    src = speeding_up(tmp_path / "faster.mid")
    result = run_cli("generate", src, "--genre", "chorale", "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    paths = dict(line.split("=", 1) for line in result.stdout.splitlines())
    assert tempo_map_of(Path(paths["mid"])) == [(0.0, 90.0), (8.0, 160.0)]
    assert mido.MidiFile(paths["mid"]).length == pytest.approx(8 * 60 / 90 + 24 * 60 / 160)
    with wave.open(paths["wav"]) as wav:
        seconds = wav.getnframes() / wav.getframerate()
    # 14.33 s of music (21.3 s were it all at 90 BPM) and the renderer's release tail.
    assert seconds == pytest.approx(14.333 + RELEASE_TAIL_S, abs=0.05)
    again = read_melody(paths["mid"])
    assert (again.tempo_bpm, again.tempo_changes) == (90.0, [(32, 160.0)])


def test_a_given_tempo_moves_the_whole_map(tmp_path: Path) -> None:
    src = speeding_up(tmp_path / "faster.mid")
    result = run_cli(
        "generate", src, "--genre", "chorale", "--out", tmp_path, "--no-wav", "--tempo", "120"
    )
    assert result.returncode == 0, result.stderr
    mid = Path(result.stdout.splitlines()[0].split("=", 1)[1])
    assert tempo_map_of(mid) == [(0.0, 120.0), (8.0, round(160 * 120 / 90, 2))]


# --- issue 11.14: velocity-0 notes, and one tempo range ----------------------------------
def test_a_file_of_velocity_0_notes_says_so(tmp_path: Path) -> None:
    track = mido.MidiTrack()
    for pitch in (60, 62, 64):
        track.append(mido.Message("note_on", note=pitch, velocity=0))
        track.append(mido.Message("note_on", note=pitch, velocity=0, time=480))
    path = tmp_path / "silent.mid"
    mido.MidiFile(type=0, tracks=[track]).save(path)
    line = stderr_line(run_cli("generate", path, "--genre", "chorale", "--out", tmp_path / "o"))
    assert "velocity 0" in line and "drums" not in line


@pytest.mark.parametrize("bpm", [TEMPO_MIN - 1, TEMPO_MAX + 1])
def test_generate_takes_the_panels_tempo_range(tmp_path: Path, bpm: int) -> None:
    given = run_cli(
        "generate", MELODIES / "twinkle.mid", "--genre", "chorale", "--out", tmp_path / "a",
        "--tempo", str(bpm),
    )  # fmt: skip
    assert f"{TEMPO_MIN}..{TEMPO_MAX} BPM" in stderr_line(given)
    src = write_midi(tmp_path / "odd.mid", [(67, i, 1) for i in range(8)], bpm=bpm)
    in_file = run_cli("generate", src, "--genre", "chorale", "--out", tmp_path / "b")
    line = stderr_line(in_file)
    assert f"{TEMPO_MIN}..{TEMPO_MAX} BPM" in line and "--tempo" in line
    fixed = run_cli(
        "generate", src, "--genre", "chorale", "--out", tmp_path / "b", "--no-wav",
        "--tempo", "100",
    )  # fmt: skip
    assert fixed.returncode == 0, fixed.stderr


# --- issue 11.16: a cap on the input's length, and room for the WAV before rendering -----
def test_an_input_longer_than_max_bars_is_one_line(tmp_path: Path) -> None:
    long = write_midi(tmp_path / "long.mid", [(60 + i % 12, i, 1) for i in range(4 * 70)])
    line = stderr_line(run_cli("generate", long, "--genre", "chorale", "--out", tmp_path / "o"))
    assert "70 bars" in line and f"--max-bars {DEFAULT_MAX_BARS}" in line
    assert not (tmp_path / "o").exists()
    allowed = run_cli(
        "generate", long, "--genre", "chorale", "--out", tmp_path / "o", "--no-wav",
        "--max-bars", "70",
    )  # fmt: skip
    assert allowed.returncode == 0, allowed.stderr


def test_no_room_for_the_wav_is_said_before_rendering() -> None:
    melody = read_melody(MELODIES / "twinkle.mid")
    comp = compose(melody, Generator.from_card(MODELS / "chorale.json"), seed=0)
    kib = wav_bytes(comp) // 2048  # half of what the WAV needs
    with tiny_disk(kib) as disk:
        args = ("generate", MELODIES / "twinkle.mid", "--genre", "chorale", "--out", disk)
        line = stderr_line(run_cli(*args))
        assert "MB free" in line and "nothing was written" in line and "--no-wav" in line
        assert sorted(p.name for p in disk.iterdir()) == []
        without_wav = run_cli(*args, "--no-wav")
        assert without_wav.returncode == 0, without_wav.stderr
        assert sorted(p.suffix for p in disk.iterdir()) == [".mid", ".png"]


# --- issue 12: never a silent 4/4 --------------------------------------------------------
def with_meters(path: Path, *meters: tuple[int, int, int]) -> Path:
    """``path`` with (beat, numerator, denominator) time signatures added to its track."""
    mid = mido.MidiFile(path)
    tpb, track = mid.ticks_per_beat, mid.tracks[0]
    events, tick = [], 0
    for msg in track:
        tick += msg.time
        events.append((tick, 1, msg))
    for beat, num, den in meters:
        events.append(
            (
                round(beat * tpb),
                0,
                mido.MetaMessage("time_signature", numerator=num, denominator=den),
            )
        )
    events.sort(key=lambda e: (e[0], e[1]))
    now, out = 0, mido.MidiTrack()
    for at, _, msg in events:
        out.append(msg.copy(time=at - now))
        now = at
    mid.tracks[0] = out
    mid.save(path)
    return path


@pytest.mark.parametrize(
    ("meters", "named"),
    [([(0, 3, 4)], "in 3/4;"), ([(0, 6, 8)], "in 6/8;"), ([(0, 4, 4), (8, 3, 4)], "in 3/4;")],
)
def test_a_melody_not_in_4_4_is_refused_in_one_line_not_converted(
    tmp_path: Path, meters: list[tuple[int, int, int]], named: str
) -> None:
    src = with_meters(write_midi(tmp_path / "waltz.mid", [(67, i, 1) for i in range(12)]), *meters)
    assert read_melody(src).meters == [(n, d) for _, n, d in meters]
    line = stderr_line(run_cli("generate", src, "--genre", "chorale", "--out", tmp_path / "o"))
    assert named in line and "4/4 only" in line
    assert not (tmp_path / "o").exists()


def test_a_stated_4_4_and_no_time_signature_are_both_4_4(tmp_path: Path) -> None:
    plain = write_midi(tmp_path / "plain.mid", [(67, i, 1) for i in range(8)])
    assert read_melody(plain).meters == [(4, 4)]
    stated = with_meters(write_midi(tmp_path / "s.mid", [(67, i, 1) for i in range(8)]), (0, 4, 4))
    assert read_melody(stated).meters == [(4, 4)]
    done = run_cli("generate", stated, "--genre", "chorale", "--out", tmp_path / "o", "--no-wav")
    assert done.returncode == 0, done.stderr
