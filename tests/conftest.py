"""Shared test helpers: run the real CLI, write small MIDI files."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import mido
import pytest

REPO = Path(__file__).resolve().parent.parent
MODELS = REPO / "models"
MELODIES = REPO / "device" / "melodies"


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``deepkeys ARGS`` in a fresh interpreter, as a user would run it."""
    return subprocess.run([sys.executable, "-m", "deepkeys.device.cli", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=300)


def wait_for(check: Callable[[], object], timeout: float = 10.0, what: str = "") -> object:
    """Poll ``check`` until it returns something truthy, or fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what or check}")
        time.sleep(0.02)


def write_midi(path: Path, notes: list[tuple[int, float, float]], bpm: float = 120,
               channel: int = 0) -> Path:
    """A type-0 MIDI file from (pitch, start beat, length in beats) tuples."""
    tpb = 480
    events = []
    for pitch, start, length in notes:
        events.append((round(start * tpb), 1, mido.Message("note_on", note=pitch, velocity=90,
                                                          channel=channel)))
        events.append((round((start + length) * tpb), 0, mido.Message("note_off", note=pitch,
                                                                     channel=channel)))
    events.sort(key=lambda e: (e[0], e[1]))
    track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm))])
    now = 0
    for tick, _, msg in events:
        track.append(msg.copy(time=tick - now))
        now = tick
    mido.MidiFile(type=0, ticks_per_beat=tpb, tracks=[track]).save(path)
    return path


@pytest.fixture(scope="session")
def soundfont() -> Path:
    """The GM SoundFont; `make test` installs it, so its absence is a failure, not a skip."""
    from deepkeys.device.errors import UserError
    from deepkeys.device.render import default_soundfont

    try:
        return default_soundfont()
    except UserError as exc:
        pytest.fail(str(exc))


@pytest.fixture
def chorale_card() -> Path:
    card = MODELS / "chorale.json"
    if not card.exists():
        pytest.fail("models/chorale.json is missing: the chorale model must ship with the repo")
    return card
