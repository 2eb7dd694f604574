"""`deepkeys bench e2e` runs the rig and writes a well-formed table (figures are not judged)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from deepkeys.hil.jackd import JackServer

ROW = re.compile(
    r"^\| 128 \(2\.67 ms\) \| (\d+)/8 \| [\d.]+ \| [\d.]+ \| [\d.]+ "
    r"\| ((?:\d+: \d+(?:, )?)+) \| 7\.33 \| (yes|no) \|$"
)


def test_bench_e2e_writes_a_markdown_table(hil_jack: JackServer, tmp_path: Path) -> None:
    out = tmp_path / "e2e.md"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "deepkeys.device.cli",
            "bench",
            "e2e",
            "--period",
            "128",
            "--notes",
            "8",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = out.read_text().splitlines()
    assert lines[1].startswith("| JACK period (frames) | notes heard | p50 ms | p99 ms |")
    assert lines[2] == "|---|---|---|---|---|---|---|---|"
    row = ROW.match(lines[3])
    assert row, lines[3]
    heard, spread = int(row[1]), row[2]
    assert heard >= 1
    assert sum(int(part.split(": ")[1]) for part in spread.split(", ")) == heard
    assert lines[3] in done.stdout


def test_match_delay_times_a_note_to_the_sample_under_another_notes_sound() -> None:
    """The bench's instrument: the daemon's own piano note, 20,000 samples into a
    recording where another note is still ringing, is found at sample 20,000."""
    import numpy as np

    from deepkeys.device.adapters.synth import Synth
    from deepkeys.hil.analysis import match_delay

    def note(key: int, frames: int) -> np.ndarray:
        with Synth() as synth:
            synth.noteon(key, 100)
            return synth.render(frames).astype(np.float64).mean(axis=1) / 32768

    audio = note(55, 48000)  # one second of G3, still sounding
    audio[20000:] += note(72, 28000)  # C5 struck at sample 20,000
    template = note(72, 1200)
    found = match_delay(audio, 19000, template, 3840)
    assert found is not None and found[0] == 20000
    assert match_delay(audio, 0, note(84, 1200), 3840) is None  # a key never struck


@pytest.mark.hil_rig  # the rig is checked for before the arguments
def test_bench_e2e_rejects_bad_input() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "deepkeys.device.cli", "bench", "e2e", "--notes", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (
        done.returncode == 2
        and done.stderr.strip() == "deepkeys: --notes must be at least 1, got 0"
    )


@pytest.mark.parametrize("name", ["analysis", "listen", "target", "rig"])
def test_docstring_examples(name: str) -> None:
    """The rig's own docstring examples run (no JACK needed)."""
    import doctest
    import importlib

    module = importlib.import_module(f"deepkeys.hil.{name}")
    failures, attempted = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert attempted > 0 and failures == 0
