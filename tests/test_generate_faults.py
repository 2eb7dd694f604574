"""Faults of the offline ``deepkeys generate`` (issues 11.5, 11.6, 11.7, 11.14, 11.16 and
10): a full disk, bad flags, a tempo map, silent notes, huge inputs, given chords."""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from deepkeys.device.errors import UserError
from deepkeys.device.generation.arrange import compose
from deepkeys.device.generation.files import write_files
from deepkeys.device.generation.generator import Generator
from deepkeys.device.generation.midifile import read_melody

from conftest import MELODIES, MODELS, run_cli

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
    # 200 KiB holds the .mid (a few KiB) but not the WAV (several MB).
    with tiny_disk(200) as disk:
        out = disk / "out"
        with pytest.raises(UserError) as raised:
            write_files(comp, out, "twinkle-chorale")
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
