"""The in-process variant: the same daemon, its panel pressed through gpiozero's mock pins."""

from __future__ import annotations

import threading
import time
import wave
from pathlib import Path

import numpy as np

from deepkeys.device.appliance.daemon import Daemon
from deepkeys.device.config import load_config
from deepkeys.hil.analysis import detect_pitch, onset_after
from deepkeys.hil.capture import VirtualKeyboard
from deepkeys.hil.jackd import JackServer

PINS = {"record": 6, "generate": 13}  # the config's defaults (BCM)


def test_mock_pins_record_and_generate(hil_jack: JackServer, tmp_path: Path) -> None:
    wav = tmp_path / "out.wav"
    (tmp_path / "config.toml").write_text(f"""
[midi]
api = "jack"
input_ports = ["pins-kbd"]
[audio]
device = "file:FILE={wav},FORMAT=wav"
[panel]
pin_factory = "mock"
[player]
tempo_bpm = 240
max_bars = 1
metronome = false
[paths]
state_dir = "{tmp_path / "state"}"
socket = "{tmp_path / "ctl.sock"}"
""")
    with hil_jack.environment():
        kb = VirtualKeyboard("pins-kbd")
        daemon = Daemon(load_config(tmp_path / "config.toml"))
        daemon.start()
    box, panel = daemon.box, daemon.panel
    assert box is not None and panel is not None
    loop = threading.Thread(target=daemon.run, daemon=True)
    loop.start()

    def press(name: str) -> None:
        pin = panel.pin_factory.pin(PINS[name])
        pin.drive_low()  # buttons pull up: pressed is low
        time.sleep(0.08)  # past the 20 ms debounce
        pin.drive_high()

    try:
        press("record")
        time.sleep(1.0)  # the count-in: one bar at 240 BPM
        for note in (67, 69, 71, 72):
            kb.note_on(note, 100)
            time.sleep(0.2)
            kb.note_off(note)
            time.sleep(0.05)
        deadline = time.monotonic() + 5
        while box.take is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert box.take is not None and [n.pitch for n in box.take.notes] == [67, 69, 71, 72]
        press("generate")
        # The state changes first and the PLAY LED follows in the same dispatch, on the
        # daemon's thread: wait for both, or this thread can read between the two.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (
            box.state == "playing" and panel.leds["play"] == "on"
        ):
            time.sleep(0.02)
        assert box.state == "playing"
        assert panel.leds["play"] == "on"
        time.sleep(1.0)
    finally:
        daemon.request_stop()
        loop.join(timeout=15)
        kb.close()
    assert list((tmp_path / "state" / "compositions").glob("*.mid"))
    with wave.open(str(wav)) as w:
        audio = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2)
    mono = audio.mean(axis=1) / 32768
    clicks = onset_after(mono, 0, 48000, within_s=len(mono) / 48000)
    assert clicks is not None  # the count-in clicked: four beats, one second
    onset = onset_after(mono, clicks + int(0.95 * 48000), 48000)
    assert onset is not None  # then the first key sounded
    assert round(detect_pitch(mono[onset + 480 : onset + 480 + 7200], 48000)) == 67
