"""``deepkeys sim``: the key map, and the controller driving a real daemon headless
(null ALSA PCM or a WAV file, sim MIDI, mock pins) with the screen built from its status."""

from __future__ import annotations

import threading
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from deepkeys.device.appliance.daemon import Daemon
from deepkeys.device.appliance.sim import (
    BUTTON_KEYS,
    PIANO_KEYS,
    SimController,
    SimKeys,
    render_screen,
    sim_config,
    wav_device,
)
from deepkeys.device.config import load_config
from deepkeys.device.events import BUTTONS

from conftest import MODELS, run_cli, wait_for


# --------------------------------------------------------------------------- the key map
def test_every_piano_key_plays_its_chromatic_note_from_c4():
    keys = SimKeys()
    names = [
        "C",
        "C#",
        "D",
        "D#",
        "E",
        "F",
        "F#",
        "G",
        "G#",
        "A",
        "A#",
        "B",
        "C",
        "C#",
        "D",
        "D#",
        "E",
        "F",
    ]
    expected = dict(zip("awsedftgyhujkolp;'", range(60, 78)))
    assert len(PIANO_KEYS) == len(names) == 18
    for key, note in expected.items():
        assert keys.handle(key) == [("note_on", note)], key
        assert keys.handle(key.upper()) == [("note_on", note)] if key.isalpha() else True
    # white keys on the home row, black keys above: a piano's layout
    assert [names[expected[k] - 60] for k in "asdfghjkl;'"] == [
        "C",
        "D",
        "E",
        "F",
        "G",
        "A",
        "B",
        "C",
        "D",
        "E",
        "F",
    ]
    assert all("#" in names[expected[k] - 60] for k in "wetyuop")


def test_octave_keys_shift_the_piano_and_stop_at_the_midi_range():
    keys = SimKeys()
    assert keys.handle("x") == [("octave", 1)] and keys.handle("a") == [("note_on", 72)]
    keys.handle("z"), keys.handle("z")
    assert keys.handle("a") == [("note_on", 48)]
    for _ in range(10):
        keys.handle("z")
    assert keys.note_for("a") == 0
    for _ in range(20):
        keys.handle("x")
    top = keys.note_for("'")
    assert top is not None and top <= 127 and top + 12 > 127


def test_digits_and_the_others_press_the_right_buttons():
    keys = SimKeys()
    assert keys.handle("1") == [("button", "genre")]
    assert keys.handle("!") == [("button", ("genre", "long"))]
    assert keys.handle("2") == [("button", "record")]
    assert keys.handle("3") == [("button", "generate")]
    assert keys.handle(" ") == [("button", "play")]
    assert keys.handle("-") == [("button", "tempo_down")]
    assert keys.handle("+") == [("button", "tempo_up")]
    assert keys.handle("q") == [("quit", None)]
    assert keys.handle("9") == [] and keys.handle("v") == []
    assert {name for name, _ in BUTTON_KEYS.values()} == set(BUTTONS)


def test_the_screen_shows_state_genre_tempo_and_leds():
    status = {
        "state": "recording",
        "genre": "chorale",
        "genres": ["chorale", "jazz"],
        "tempo_bpm": 120,
        "take_notes": 3,
        "leds": {"rec": "on", "busy": "off", "play": "blink", "genre0": "off", "genre1": "on"},
    }
    lines = render_screen(status, octave=-1, last="note 60", now=0.0)
    text = "\n".join(lines)
    assert "state: recording" in text and "genre: chorale" in text and "tempo: 120 BPM" in text
    assert "REC (#)" in text and "BUSY ( )" in text and "PLAY (#)" in text
    assert "( ) chorale   (#) jazz" in text
    assert "octave: -1" in text and "last: note 60" in text
    assert "PLAY ( )" in "\n".join(render_screen(status, now=0.25))  # blinking
    assert render_screen({})[1].startswith("state: ?")  # before the first snapshot


def test_wav_device_strings():
    assert wav_device("/tmp/x.wav") == "file:FILE=/tmp/x.wav,FORMAT=wav"
    assert wav_device("/tmp/a b.wav") == 'file:FILE="/tmp/a b.wav",FORMAT=wav'


# --------------------------------------------------------------------------- against a daemon
@pytest.fixture
def config_file(tmp_path: Path, soundfont: Path) -> Path:
    """Deliberately not sim-ready (alsa MIDI, auto pins): sim_config must fix that."""
    path = tmp_path / "config.toml"
    path.write_text(f"""
[audio]
device = "null"
[player]
tempo_bpm = 240
default_genre = "chorale"
[paths]
state_dir = "{tmp_path / "state"}"
socket = "{tmp_path / "ctl.sock"}"
models = ["{MODELS}"]
""")
    return path


def test_sim_config_makes_a_desktop_daemon(config_file, tmp_path):
    cfg = sim_config(load_config(config_file), wav=tmp_path / "out.wav")
    assert cfg.midi.api == "sim" and cfg.panel.pin_factory == "mock"
    assert cfg.audio.device == f"file:FILE={tmp_path / 'out.wav'},FORMAT=wav"
    shipped = len(list(MODELS.glob("*.json")))
    assert len(cfg.panel.genre_leds) == min(shipped, 8)  # one per installed genre, 8 at most
    assert cfg.paths.socket == tmp_path / "ctl.sock"  # the config's paths are kept
    defaults = sim_config(load_config(tmp_path / "missing.toml"))
    assert defaults.paths.state_dir.name == "deepkeys-sim"  # not /var/lib/deepkeys


def _run(cfg):
    daemon = Daemon(cfg)
    daemon.start()
    loop = threading.Thread(target=daemon.run, name="test-sim-loop")
    loop.start()
    return daemon, loop


def test_keys_play_the_synth_and_press_the_panel(config_file):
    daemon, loop = _run(sim_config(load_config(config_file)))
    sim = SimController(daemon, hold_s=0.3)
    status = lambda: daemon.snapshot  # noqa: E731
    try:
        wait_for(lambda: status()["state"] == "idle", what="idle")
        screen = "\n".join(render_screen(status()))
        assert "state: idle" in screen and "genre: chorale" in screen
        assert "(#) chorale" in screen  # the genre LED, lit

        # A piano key: note-on reaches the synth, the note-off follows by itself.
        sim.press("a")
        wait_for(lambda: status()["voices"] > 0, what="a voice")
        wait_for(lambda: status()["midi"]["counts"].get("note_on", 0) >= 1, what="note_on")
        assert sim.held == {60: pytest.approx(time.monotonic() + 0.3, abs=0.3)}
        time.sleep(0.35)
        assert sim.tick() == [60] and sim.held == {}
        wait_for(lambda: status()["midi"]["counts"].get("note_off", 0) >= 1, what="note_off")

        # The next key releases nothing early, but a repeat of a held key does not retrigger.
        sim.press("s"), sim.press("s")
        wait_for(lambda: status()["midi"]["counts"].get("note_on", 0) >= 2, what="2nd note")
        time.sleep(0.1)
        assert status()["midi"]["counts"]["note_on"] == 2
        sim.release_all()

        # Tempo, then RECORD: count-in (REC blinking), then recording (REC on).
        sim.press("+")
        wait_for(lambda: status()["tempo_bpm"] == 240, what="tempo at its value")  # 240 = max
        sim.press("-")
        wait_for(lambda: status()["tempo_bpm"] == 239, what="tempo down")
        sim.press("2")
        wait_for(lambda: status()["state"] in ("count_in", "recording"), what="count-in")
        wait_for(lambda: status()["leds"]["rec"] in ("blink", "on"), what="REC LED")
        screen = "\n".join(render_screen(status(), last=sim.last, now=0.0))
        assert "REC (#)" in screen and "last: button record" in screen
        assert "state: count_in" in screen or "state: recording" in screen
        wait_for(lambda: status()["state"] == "recording", what="recording")
        assert "state: recording" in "\n".join(render_screen(status()))

        sim.press(" ")  # PLAY/STOP ends the take
        wait_for(lambda: status()["state"] == "idle", what="idle again")
        sim.press("q")
        assert sim.quit
    finally:
        daemon.request_stop()
        loop.join(timeout=15)
    assert not loop.is_alive()


def test_wav_gets_the_notes_played(config_file, tmp_path):
    wav = tmp_path / "sim out.wav"  # a space: the device string quotes it
    daemon, loop = _run(sim_config(load_config(config_file), wav=wav))
    sim = SimController(daemon, hold_s=0.2)
    try:
        wait_for(lambda: daemon.snapshot["state"] == "idle", what="idle")
        t0 = time.monotonic()
        for key in "adg":
            sim.press(key)
        while time.monotonic() - t0 < 0.6:
            sim.tick()
            time.sleep(0.02)
    finally:
        daemon.request_stop()
        loop.join(timeout=15)
    with wave.open(str(wav)) as w:
        assert (w.getnchannels(), w.getframerate()) == (2, 48000)
        seconds = w.getnframes() / w.getframerate()
        samples = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    assert 0.3 < seconds < 5.0  # paced like a sound card, not written at CPU speed
    assert np.abs(samples).max() > 500  # the notes are in it


def test_sim_needs_a_terminal():
    result = run_cli("sim")
    assert result.returncode == 2
    assert result.stderr.strip() == "deepkeys: 'deepkeys sim' needs a terminal"
