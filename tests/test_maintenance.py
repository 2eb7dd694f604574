"""The maintainer's commands on the device: tone (the real audio path into ALSA's file
PCM), buttons (gpiozero's MockFactory), logs (journalctl) and plain ``deepkeys bench``."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from deepkeys.device.config import hardware_free_config

from conftest import run_cli

CHORD_HZ = [440 * 2 ** ((n - 69) / 12) for n in (60, 64, 67, 72)]


def hardware_free(tmp_path: Path) -> Path:
    config = tmp_path / "config.toml"
    config.write_text(
        hardware_free_config(tmp_path / "state", tmp_path / "ctl.sock", panel="genre_leds = [23]")
    )
    return config


def test_tone_plays_a_c_major_chord_through_alsa(tmp_path, soundfont):
    wav = tmp_path / "tone.wav"
    result = run_cli(
        "tone",
        "--config",
        hardware_free(tmp_path),
        "--seconds",
        "1",
        "--device",
        f"file:FILE={wav},FORMAT=wav",
    )
    assert result.returncode == 0, result.stderr
    assert "errors=0" in result.stdout and "periods_written=" in result.stdout
    with wave.open(str(wav)) as w:
        assert (w.getframerate(), w.getnchannels()) == (48000, 2)
        audio = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    left = audio[0::2].astype(np.float64)
    assert len(left) >= 1.4 * 48000  # the chord held 1 s, then its release
    held = left[4800:48000]  # 0.1 s .. 1 s: the chord is sounding
    assert np.sqrt(np.mean(held**2)) > 300
    spectrum = np.abs(np.fft.rfft(held * np.hanning(len(held))))
    freqs = np.fft.rfftfreq(len(held), 1 / 48000)
    band = (freqs > 200) & (freqs < 1200)
    peak = freqs[band][np.argmax(spectrum[band])]
    # The strongest partial in the band is one of the chord's notes (or an octave of one).
    assert min(abs(peak / f - round(peak / f)) for f in CHORD_HZ) < 0.03, peak


def test_buttons_lights_each_led_then_shows_each_press(tmp_path):
    from gpiozero.pins.mock import MockFactory

    from deepkeys.device.adapters.panel import Panel
    from deepkeys.device.config import load_config
    from deepkeys.device.events import BUTTONS
    from deepkeys.device.maintenance.buttons import panel_test

    from conftest import wait_for

    cfg = load_config(hardware_free(tmp_path))
    factory = MockFactory()
    lines: list[str] = []
    led_states: dict[int, list[bool]] = {}

    def press(panel: Panel, name: str) -> None:
        """Press and release button ``name``, each time until the panel sees it; a function of
        its own so that the waits bind this ``name``, not the caller's loop variable."""
        pin = factory.pin(getattr(cfg.panel.buttons, name))
        pin.drive_low()  # buttons pull to ground
        wait_for(lambda: panel.pressed[name], what=f"{name} down")
        pin.drive_high()
        wait_for(lambda: not panel.pressed[name], what=f"{name} up")

    def press_all(panel: Panel) -> None:
        for pin in (17, 27, 22, 23):  # the LED phase is over: what did each LED do?
            led_states[pin] = [s.state for s in factory.pin(pin).states]
        for name in BUTTONS:
            press(panel, name)

    try:
        seen = panel_test(
            cfg, timeout=30, led_s=0.01, pin_factory=factory, out=lines.append, on_ready=press_all
        )
    finally:
        factory.close()
    assert seen == set(BUTTONS)
    assert lines[:4] == [
        "led rec on (GPIO 17)",
        "led busy on (GPIO 27)",
        "led play on (GPIO 22)",
        "led genre0 on (GPIO 23)",
    ]
    assert [line.split()[1] for line in lines if line.startswith("button ")] == list(BUTTONS)
    for pin, states in led_states.items():  # each LED went on, then off again
        assert True in states and states[-1] is False, (pin, states)


def test_buttons_says_which_were_not_pressed(tmp_path):
    result = run_cli("buttons", "--config", hardware_free(tmp_path), "--timeout", "0.2")
    assert result.returncode == 1
    assert "led rec on (GPIO 17)" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == (
        "buttons: not pressed within 0.2 s: genre, record, generate, play, tempo_down, tempo_up"
    )


def test_buttons_refuses_while_the_daemon_holds_the_pins(tmp_path):
    from deepkeys.device.adapters.control import ControlServer

    with ControlServer(tmp_path / "ctl.sock", {"status": lambda req: {"state": "idle"}}):
        result = run_cli("buttons", "--config", hardware_free(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "deepkeys: the daemon holds the panel's pins: stop it "
        "first (sudo systemctl stop deepkeys), then run this again"
    )


def test_logs_reads_the_journal_or_says_why_not_in_one_line():
    from deepkeys.device.maintenance.logs import JOURNAL_DIRS

    result = run_cli("logs", "--since", "1 hour ago", "--lines", "5")
    if any(d.is_dir() for d in JOURNAL_DIRS):
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode == 2
        assert result.stderr.strip() == (
            "deepkeys: journald is not running here (no /run/systemd/journal): run the daemon "
            "under systemd, or read its stdout"
        )


def test_plain_bench_runs_every_benchmark(chorale_card):
    result = run_cli("bench", "--quick")
    assert result.returncode == 0, result.stdout + result.stderr
    for heading in ("bench generate:", "bench latency:", "bench synth:", "bench startup:"):
        assert heading in result.stdout, heading
