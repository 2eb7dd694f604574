"""``deepkeys sim``: the key map, and the controller driving a real daemon headless
(null ALSA PCM or a WAV file, sim MIDI, mock pins) with the screen built from its status."""

from __future__ import annotations

import fcntl
import logging
import os
import pty
import select
import signal
import struct
import sys
import termios
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
    SimLog,
    notice_of,
    render_screen,
    sim_config,
    wav_device,
)
from deepkeys.device.config import Config, load_config
from deepkeys.device.events import BUTTONS

from conftest import MODELS, SHIPPED_GENRES, run_cli, wait_for


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
    shipped = len(SHIPPED_GENRES)
    assert len(cfg.panel.genre_leds) == min(shipped, 8)  # one per installed genre, 8 at most
    assert cfg.paths.socket == tmp_path / "ctl.sock"  # the config's paths are kept
    defaults = sim_config(Config())
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


# --------------------------------------------------------------------------- in a terminal
class Terminal:
    """``deepkeys sim`` on a pseudo-terminal of its own, as a user's terminal runs it."""

    def __init__(self, *args: str | os.PathLike[str]) -> None:
        env = dict(os.environ, TERM="xterm", COLUMNS="120", LINES="40")
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: become the CLI
            try:
                os.execve(
                    sys.executable,
                    [sys.executable, "-m", "deepkeys.device.cli", "sim", *map(str, args)],
                    env,
                )
            finally:
                os._exit(127)
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        self.output = b""
        self.status: int | None = None

    def read(self, timeout: float = 0.1) -> bool:
        """Read what the sim drew; False once the terminal has nothing more to give."""
        if self.fd < 0:
            return False
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return True
        try:
            data = os.read(self.fd, 65536)
        except OSError:  # EIO: the child closed its side
            return False
        self.output += data
        return bool(data)

    def wait_for_text(self, text: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while text.encode() not in self.output:
            if not self.read() or time.monotonic() > deadline:
                pytest.fail(f"no {text!r} on the sim's screen: {self.text()[-1500:]}")

    def close_terminal(self) -> None:
        """The user closes the terminal window: the kernel hangs up the sim."""
        os.close(self.fd)
        self.fd = -1

    def wait(self, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while self.status is None:
            self.read(0.05)
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
            elif time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
                pytest.fail(f"the sim did not end: {self.text()[-1500:]}")
        while self.read(0.05):
            pass
        return self.status

    def text(self) -> str:
        return self.output.decode(errors="replace")


@pytest.mark.parametrize("how", ["SIGTERM", "SIGHUP", "terminal closed"])
def test_a_signal_or_a_closed_terminal_stops_the_sim_cleanly(config_file, tmp_path, how):
    wav = tmp_path / "sim.wav"
    term = Terminal("--config", config_file, "--wav", wav)
    try:
        term.wait_for_text("state: idle")
        time.sleep(0.5)  # some audio into the WAV
        if how == "terminal closed":
            term.close_terminal()
        else:
            os.kill(term.pid, getattr(signal, how))
        status = term.wait()
    finally:
        if term.status is None:
            os.kill(term.pid, signal.SIGKILL)
            os.waitpid(term.pid, 0)
    assert status == 0, term.text()[-1500:]
    sim_log = (tmp_path / "state" / "sim.log").read_text()
    assert "event=stopping" in sim_log and "event=stopped" in sim_log
    assert not (tmp_path / "ctl.sock").exists()  # the control socket is gone with it
    with wave.open(str(wav)) as w:  # the header was written at close: its length is right
        frames = w.getnframes()
        assert frames > 0.3 * w.getframerate()
        assert wav.stat().st_size == 44 + frames * w.getnchannels() * w.getsampwidth()
    if how != "terminal closed":
        assert f"wav={wav}" in term.text() and "Traceback" not in term.text()


def test_without_a_sound_card_the_sim_says_to_use_wav(config_file):
    text = config_file.read_text().replace('device = "null"', 'device = "hw:77"')
    config_file.write_text(text)
    term = Terminal("--config", config_file)
    status = term.wait()
    lines = [line for line in term.text().replace("\r", "").splitlines() if line.strip()]
    assert status == 2, term.text()
    assert len(lines) == 1 and lines[0].startswith("deepkeys: "), lines
    assert "--wav FILE" in lines[0] and "hw:77" in lines[0]


# --------------------------------------------------------------------------- what the screen says
def test_a_genre_past_the_leds_is_shown_on_its_slot_blinking_a_count():
    genres = [f"g{i}" for i in range(9)]
    leds = {f"genre{i}": "off" for i in range(8)} | {"genre0": "blink"}
    status = {"state": "idle", "genre": "g8", "genres": genres, "leds": leds}
    lit = "\n".join(render_screen(status, now=0.0))  # the first flash of the count
    assert "(#) g0|g8   ( ) g1" in lit
    assert "g8 is genre 9 of 9: slot 1 blinks once (genres past the 8 LEDs blink their slot)" in lit
    assert "( ) g0|g8" in "\n".join(render_screen(status, now=0.3))  # between flashes
    steady = dict(status, genre="g1", leds=dict(leds, genre0="off", genre1="on"))
    assert "( ) g0|g8   (#) g1" in "\n".join(render_screen(steady, now=0.3))


def test_notices_say_why_a_press_did_nothing_and_where_a_file_went():
    assert "press 2 (RECORD)" in (notice_of("generate=ignored reason=no_take") or "")
    assert "nothing to play" in (notice_of("play=ignored reason=nothing_to_play") or "")
    assert notice_of("event=saved mid=/s/takes/take-1.mid json=/s/takes/take-1.json") == (
        "saved take: /s/takes/take-1.mid"
    )
    saved = 'event=saved mid="/s s/compositions/c.mid" json="/s s/compositions/c.json"'
    assert notice_of(saved) == "saved composition: /s s/compositions/c.mid"
    assert notice_of("event=midi_connected port=x") is None
    assert notice_of('unparseable "quote') is None


def test_the_screen_says_where_files_are_saved_and_counts_a_take_being_played(tmp_path):
    status = {"state": "recording", "recording_notes": 3, "take_notes": 0}
    text = "\n".join(render_screen(status, state_dir=tmp_path, notice="RECORD: note"))
    assert f"files: takes in {tmp_path / 'takes'}, compositions in {tmp_path / 'compositions'}" in (
        text
    )
    assert "take: recording, 3 notes so far" in text and "notice: RECORD: note" in text


def test_presses_that_do_nothing_say_why_and_saved_takes_say_where(config_file, tmp_path):
    cfg = sim_config(load_config(config_file))
    simlog = SimLog()
    root = logging.getLogger()
    level = root.level
    root.addHandler(simlog)
    root.setLevel(logging.INFO)
    daemon, loop = _run(cfg)
    sim = SimController(daemon, hold_s=0.2)
    status = lambda: daemon.snapshot  # noqa: E731
    try:
        wait_for(lambda: status()["state"] == "idle", what="idle")
        sim.press("3")
        wait_for(lambda: "press 2 (RECORD)" in simlog.notice, what="GENERATE's notice")
        sim.press(" ")
        wait_for(lambda: "nothing to play" in simlog.notice, what="PLAY's notice")
        sim.press("2")
        wait_for(lambda: status()["state"] == "recording", what="recording")
        sim.press("a")
        wait_for(lambda: status()["recording_notes"] == 1, what="the note counted")
        screen = "\n".join(render_screen(status(), state_dir=cfg.paths.state_dir))
        assert "take: recording, 1 note so far" in screen
        sim.press(" ")
        wait_for(lambda: simlog.notice.startswith("saved take: "), what="the take saved")
        path = Path(simlog.notice.removeprefix("saved take: "))
        assert path.parent == cfg.paths.state_dir / "takes" and path.exists()
    finally:
        daemon.request_stop()
        loop.join(timeout=15)
        root.removeHandler(simlog)
        root.setLevel(level)
