"""``deepkeys sim``: the appliance on a desktop, played from the computer keyboard.

The real :class:`~deepkeys.device.appliance.daemon.Daemon` runs with mock GPIO pins and the
sim MIDI backend; a terminal UI (curses) turns key presses into MIDI notes and
panel buttons and shows the LEDs and the daemon's status. Sound goes to an ALSA
device (the default one, or a WAV file through ALSA's ``file`` plugin).

The parts that decide things are plain and testable without a terminal:

- :class:`SimKeys` maps a key to actions: ``("note_on", 60)``, ``("button", "record")``...
- :class:`SimController` carries them out on a daemon and releases notes later
  (a terminal reports no key-up, so a note sounds :data:`NOTE_HOLD_S` after its
  last key press; holding a key down keeps it sounding through auto-repeat);
- :func:`render_screen` builds the screen's lines from a status dict, and
  :func:`notice_of` turns the daemon's log lines into what the screen says about a
  press that did nothing ("GENERATE: nothing recorded yet...") or a file saved.

q, Ctrl-C, SIGTERM and a closed terminal (SIGHUP) all stop the daemon as ``deepkeys
run`` stops: the WAV gets its header, the control socket goes, sim.log says
``event=stopping``. What C libraries print on stderr (ALSA, FluidSynth) goes to
sim.log too, not over the screen.

    >>> keys = SimKeys()
    >>> keys.handle("a"), keys.handle("2"), keys.handle(" ")
    ([('note_on', 60)], [('button', 'record')], [('button', 'play')])
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import queue
import re
import signal
import threading
import time
from collections import deque
from pathlib import Path
from types import FrameType
from typing import Any

from deepkeys.device.adapters.panel import COUNT_STEP_S, count_pattern, genre_slot
from deepkeys.device.appliance.daemon import Daemon
from deepkeys.device.config import Config, PathsConfig
from deepkeys.device.errors import UserError
from deepkeys.device.events import Button
from deepkeys.device.generation.library import genres_in
from deepkeys.device.quiet import stderr_into

NOTE_HOLD_S = 0.3  # how long a key's note sounds after its last press (or auto-repeat)
VELOCITY = 100
REFRESH_S = 0.1  # screen refresh
BASE_NOTE = 60  # "a" is C4 at octave shift 0

# A piano layout on two rows: the home row plays the white keys, the row above the black.
PIANO_KEYS = "awsedftgyhujkolp;'"
OCTAVE_KEYS = {"z": -1, "x": +1}
BUTTON_KEYS = {
    "1": ("genre", "press"),
    "!": ("genre", "long"),  # shift+1: GENRE backwards, as a long press
    "2": ("record", "press"),
    "3": ("generate", "press"),
    " ": ("play", "press"),
    "-": ("tempo_down", "press"),
    "_": ("tempo_down", "press"),
    "+": ("tempo_up", "press"),
    "=": ("tempo_up", "press"),
}
QUIT_KEYS = ("q", "Q", "\x1b")  # q or Escape
HELP = (
    "keys: a w s e d f t g y h u j k o l p ; ' = piano (C..F)   z/x = octave -/+",
    "      1 = GENRE (! = backwards)  2 = RECORD  3 = GENERATE  space = PLAY/STOP  "
    "-/+ = tempo  q = quit",
)


class SimKeys:
    """Key -> actions, nothing else. ``octave`` shifts the piano keys by 12 semitones."""

    def __init__(self, base: int = BASE_NOTE) -> None:
        self.base = base
        self.octave = 0

    def note_for(self, key: str) -> int | None:
        """The MIDI note a piano key plays now, or None.

        >>> SimKeys().note_for("k"), SimKeys().note_for("'"), SimKeys().note_for("1")
        (72, 77, None)
        """
        i = PIANO_KEYS.find(key) if len(key) == 1 else -1
        if i < 0:
            return None
        return self.base + 12 * self.octave + i

    def handle(self, key: str) -> list[tuple[str, Any]]:
        """What one key press does, as ``(kind, value)`` pairs:
        ``("note_on", note)``, ``("button", name)`` or ``("button", (name, kind))`` for
        a long press, ``("octave", n)``, ``("quit", None)``; ``[]`` for other keys."""
        if key in QUIT_KEYS:
            return [("quit", None)]
        note = self.note_for(key.lower() if key.isalpha() else key)
        if note is not None:
            return [("note_on", note)]
        if key in BUTTON_KEYS:
            name, kind = BUTTON_KEYS[key]
            return [("button", name if kind == "press" else (name, kind))]
        if key in OCTAVE_KEYS:
            lowest = self.base + 12 * (self.octave + OCTAVE_KEYS[key])
            if lowest >= 0 and lowest + len(PIANO_KEYS) - 1 <= 127:
                self.octave += OCTAVE_KEYS[key]
            return [("octave", self.octave)]
        return []


class SimController:
    """Carries out :class:`SimKeys`' actions on a running daemon.

    Notes go in through the daemon's sim MIDI port, buttons onto its event queue,
    just as the keyboard and the panel would send them. Call :meth:`tick` often
    (the UI does, every few tens of ms): it sends the note-offs that are due.
    """

    def __init__(
        self, daemon: Daemon, keys: SimKeys | None = None, hold_s: float = NOTE_HOLD_S
    ) -> None:
        self.daemon = daemon
        self.keys = keys or SimKeys()
        self.hold_s = hold_s
        self.held: dict[int, float] = {}  # note -> when its note-off is due
        self.quit = False
        self.last = ""  # what the last key did, for the screen

    def press(self, key: str, now: float | None = None) -> list[tuple[str, Any]]:
        now = time.monotonic() if now is None else now
        actions = self.keys.handle(key)
        for kind, value in actions:
            if kind == "note_on":
                if value not in self.held:  # a repeat of a held key only keeps it sounding
                    self._midi("note_on", value, VELOCITY)
                self.held[value] = now + self.hold_s
                self.last = f"note {value}"
            elif kind == "button":
                name, how = value if isinstance(value, tuple) else (value, "press")
                self._button(name, how, now)
                self.last = f"button {name}" + ("" if how == "press" else f" ({how})")
            elif kind == "octave":
                self.release_all()
                self.last = f"octave {value:+d}"
            elif kind == "quit":
                self.quit = True
        self.tick(now)
        return actions

    def tick(self, now: float | None = None) -> list[int]:
        """Send the note-offs that are due; returns their notes."""
        now = time.monotonic() if now is None else now
        due = [n for n, t in self.held.items() if t <= now]
        for note in due:
            del self.held[note]
            self._midi("note_off", note, 0)
        return due

    def release_all(self) -> None:
        for note in list(self.held):
            del self.held[note]
            self._midi("note_off", note, 0)

    def _midi(self, kind: str, note: int, velocity: int) -> None:
        import mido

        if self.daemon.midi is not None:
            self.daemon.midi.send(mido.Message(kind, note=note, velocity=velocity))

    def _button(self, name: str, kind: str, now: float) -> None:
        try:
            self.daemon.events.put_nowait(Button(name, kind, t=now))
        except queue.Full:
            self.last = "busy: event queue full"


# --------------------------------------------------------------------------- the screen
def _led(state: str | None, now: float, count: int = 0) -> str:
    """One LED as text; a genre slot blinking a ``count`` flashes as the panel does."""
    if state == "on":
        return "(#)"
    if state == "blink":
        if count:
            pattern = count_pattern(count)
            lit = pattern[int(now / COUNT_STEP_S) % len(pattern)]
        else:
            lit = int(now * 4) % 2 == 0
        return "(#)" if lit else "( )"
    return "( )"


def _times(count: int) -> str:
    return {1: "once", 2: "twice"}.get(count, f"{count} times")


def _genre_lines(status: dict[str, Any], leds: dict[str, str], now: float) -> list[str]:
    """The genre slot LEDs, each labelled with every genre it shows, and for a genre past
    the LEDs how its slot shows it."""
    slots = sorted((int(k[5:]), v) for k, v in leds.items() if re.fullmatch(r"genre\d+", k))
    if not slots:
        return []
    genres, genre = status.get("genres") or [], status.get("genre")
    n = len(slots)
    current = genres.index(genre) if genre in genres else None
    shown, count = genre_slot(current, n) if current is not None else (-1, 0)
    parts = []
    for i, state in slots:
        label = "|".join(genres[i::n]) or f"slot {i + 1}"
        parts.append(f"{_led(state, now, count if i == shown else 0)} {label}")
    lines = ["genre: " + "   ".join(parts)]
    if count and current is not None:
        lines.append(
            f"       {genre} is genre {current + 1} of {len(genres)}: slot {shown + 1} blinks "
            f"{_times(count)} (genres past the {n} LEDs blink their slot)"
        )
    return lines


def render_screen(
    status: dict[str, Any],
    *,
    octave: int = 0,
    last: str = "",
    log_lines: list[str] | tuple[str, ...] = (),
    now: float | None = None,
    wav: str | None = None,
    notice: str = "",
    state_dir: Path | None = None,
) -> list[str]:
    """The sim's screen as plain text lines, from a daemon status snapshot.

    >>> lines = render_screen({"state": "idle", "genre": "chorale", "genres": ["chorale"],
    ...                        "tempo_bpm": 100, "leds": {"rec": "on", "busy": "off"}})
    >>> lines[1]
    'state: idle    genre: chorale    tempo: 100 BPM'
    >>> lines[2]
    'LEDs:  REC (#)   BUSY ( )   PLAY ( )'
    """
    now = time.monotonic() if now is None else now
    leds = status.get("leds") or {}
    lines = [
        "deepkeys sim" + (f"  (recording audio to {wav})" if wav else ""),
        f"state: {status.get('state', '?')}    genre: {status.get('genre') or '-'}    "
        f"tempo: {status.get('tempo_bpm', '?')} BPM",
        "LEDs:  "
        + "   ".join(
            f"{name.upper()} {_led(leds.get(name), now)}" for name in ("rec", "busy", "play")
        ),
        *_genre_lines(status, leds, now),
    ]
    seq = status.get("sequencer") or {}
    audio = status.get("audio") or {}
    playing = status.get("recording_notes")
    if playing is not None:  # the take being played: its notes so far
        take = f"take: recording, {playing} note{'' if playing == 1 else 's'} so far"
    else:
        take = f"take: {status.get('take_bars', 0)} bars, {status.get('take_notes', 0)} notes"
    lines.append(
        f"{take}    composition: {'yes' if status.get('has_composition') else 'no'}"
        f"    loop: {seq.get('state', '-')}    voices: {status.get('voices', 0)}"
    )
    latency = status.get("latency_ms") or {}
    lines.append(
        f"audio: {audio.get('device', '-')}    underruns: {audio.get('underruns', 0)}"
        + (f"    key-to-sound p50 {latency['p50']} ms" if latency else "")
    )
    lines.append(f"octave: {octave:+d}    last: {last or '-'}")
    if notice:
        lines.append(f"notice: {notice}")
    if state_dir is not None:
        lines.append(
            f"files: takes in {state_dir / 'takes'}, compositions in {state_dir / 'compositions'}"
        )
    lines += ["", *HELP]
    if log_lines:
        lines += ["", *log_lines]
    return lines


# What a press that did nothing says on the screen, by the state machine's log fields
# (``generate=ignored reason=no_take``: see state.py).
NOTICES = {
    ("generate", "no_take"): "GENERATE: nothing recorded yet: press 2 (RECORD), play, then 3",
    ("generate", "count_in"): "GENERATE: wait for the count-in to end",
    ("generate", "busy"): "GENERATE: one is running already",
    ("generate", "no_genre_installed"): "GENERATE: no genre installed (no models found)",
    ("genre", "no_genre_installed"): "GENRE: no genre installed (no models found)",
    ("play", "nothing_to_play"): "PLAY: nothing to play yet: record a take (2), then GENERATE (3)",
    ("play", "generating"): "PLAY: the loop starts when the generation is done",
    ("record", "busy"): "RECORD: wait for the generation to finish",
    ("tempo", "count_in"): "TEMPO: fixed while a take is recorded",
    ("tempo", "recording"): "TEMPO: fixed while a take is recorded",
    ("autoplay", "stop"): "STOP: the generation will not start playing by itself",
}
_FIELD = re.compile(r"""(\w+)=("(?:[^"\\]|\\.)*"|'[^']*'|\S*)""")


def _fields(message: str) -> dict[str, str]:
    """``key=value`` fields of a log line, values quoted by ``log.kv`` (JSON) or by the
    state machine (shell quotes) unquoted."""
    out = {}
    for key, value in _FIELD.findall(message):
        if value.startswith('"'):
            try:
                value = json.loads(value)
            except ValueError:
                value = value[1:-1]
        elif value.startswith("'"):
            value = value[1:-1]
        out[key] = value
    return out


def notice_of(message: str) -> str | None:
    """What the screen says about one of the daemon's log lines, or None for the others.

    >>> notice_of("record=refused reason=busy")
    'RECORD: wait for the generation to finish'
    """
    fields = _fields(message)
    if fields.get("event") == "saved" and fields.get("mid"):
        kind = "take" if Path(fields["mid"]).parent.name == "takes" else "composition"
        return f"saved {kind}: {fields['mid']}"
    if fields.get("event") == "generated":
        return f"generated: {fields.get('genre')}, seed {fields.get('seed')}"
    if fields.get("take") == "empty":
        kept = "; the previous take is kept" if fields.get("kept") == "previous" else ""
        return f"RECORD: nothing was played in that take{kept}"
    if fields.get("generation") == "failed":
        return f"GENERATE failed: {fields.get('error', '?')}"
    for (key, reason), text in NOTICES.items():
        if key in fields and fields.get("reason") == reason:
            return text
    return None


def wav_device(path: str | os.PathLike[str]) -> str:
    """The ALSA PCM that writes a WAV file.

    >>> wav_device("/tmp/take.wav")
    'file:FILE=/tmp/take.wav,FORMAT=wav'
    """
    text = str(Path(path).expanduser().absolute())
    if not re.fullmatch(r"[A-Za-z0-9_./+@%-]+", text):
        text = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"file:FILE={text},FORMAT=wav"


def sim_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "deepkeys-sim"


def sim_config(cfg: Config, wav: str | os.PathLike[str] | None = None) -> Config:
    """``cfg`` made to run on a desktop: sim MIDI, mock pins, one genre LED per genre,
    and, where the paths are the Pi's defaults, a state folder of the user's own."""
    if cfg.paths == PathsConfig():
        folder = sim_dir()
        cfg = dataclasses.replace(
            cfg, paths=PathsConfig(state_dir=folder, socket=folder / "control.sock")
        )
    panel = cfg.panel
    if not panel.genre_leds:  # mock pins cost nothing: show the genre on LEDs too
        used = {
            *dataclasses.asdict(panel.buttons).values(),
            *dataclasses.asdict(panel.leds).values(),
        }
        free = [p for p in range(28) if p not in used]
        n = min(len(genres_in(cfg.paths.models)), 8)
        panel = dataclasses.replace(panel, genre_leds=tuple(free[:n]))
    cfg = dataclasses.replace(
        cfg,
        midi=dataclasses.replace(cfg.midi, api="sim"),
        panel=dataclasses.replace(panel, pin_factory="mock"),
    )
    if wav is not None:
        cfg = dataclasses.replace(cfg, audio=dataclasses.replace(cfg.audio, device=wav_device(wav)))
    return cfg


class SimLog(logging.Handler):
    """What the screen shows of the log (stderr belongs to curses): the last few warnings
    and errors, and a notice: the last press that did nothing and why, or the last file
    saved (:func:`notice_of`)."""

    def __init__(self, n: int = 4) -> None:
        super().__init__(logging.INFO)
        self.lines: deque[str] = deque(maxlen=n)
        self.notice = ""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.levelno >= logging.WARNING:
                self.lines.append(f"{record.levelname.lower()}: {message}")
            elif record.name == "deepkeys.daemon" and (text := notice_of(message)):
                self.notice = text
        except Exception:
            pass


def _no_sound_card(exc: UserError, wav: str | None) -> UserError:
    """The daemon's start failed: where it is the sound card, say how to do without."""
    if wav is None and str(exc).startswith("audio device "):
        return UserError(f"{exc}; without a sound card, play into a file: deepkeys sim --wav FILE")
    return exc


def _say(line: str) -> None:
    """Print, unless the terminal is gone (closed window): then say nothing, ever."""
    try:
        print(line, flush=True)
    except OSError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        for fd in (1, 2):  # so the interpreter's own last flush cannot fail either
            os.dup2(devnull, fd)
        os.close(devnull)


def run_sim(cfg: Config, wav: str | None = None) -> int:
    """Start the daemon, run the terminal UI until q, Ctrl-C, SIGTERM or a hang-up, then
    stop the daemon as ``deepkeys run`` stops."""
    import curses

    cfg = sim_config(cfg, wav)
    state_dir = cfg.paths.state_dir
    state_dir.mkdir(parents=True, exist_ok=True)
    cfg.paths.socket.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    simlog = SimLog()
    saved = root.handlers[:]
    file_handler = logging.FileHandler(state_dir / "sim.log")
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root.handlers = [file_handler, simlog]

    daemon = Daemon(cfg)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()
        daemon.request_stop()

    # Set before curses starts: ncurses installs its own SIGTERM handler (exit 1, the
    # daemon never stopped) only where none is set. SIGHUP: the terminal was closed.
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        with open(state_dir / "sim.log", "ab", buffering=0) as c_lines, stderr_into(c_lines):
            try:
                daemon.start()
            except UserError as exc:
                raise _no_sound_card(exc, wav) from None
            loop = threading.Thread(target=daemon.run, name="deepkeys-sim-loop", daemon=True)
            loop.start()
            controller = SimController(daemon)
            try:
                if not stop.is_set():
                    curses.wrapper(_ui, daemon, controller, simlog, wav, stop, state_dir)
            except curses.error:
                if not stop.is_set():
                    raise
                # A closed terminal fails curses' own clean-up: there is no screen to restore.
            finally:
                controller.release_all()
                daemon.request_stop()
                loop.join(timeout=15)
    finally:
        daemon.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        root.handlers = saved
        file_handler.close()
    if wav:
        _say(f"wav={Path(wav).absolute()}")
    _say(f"log={state_dir / 'sim.log'}")
    return 0


def _ui(
    stdscr: Any,
    daemon: Daemon,
    controller: SimController,
    simlog: SimLog,
    wav: str | None,
    stop: threading.Event,
    state_dir: Path,
) -> None:
    import curses

    curses.curs_set(0)
    stdscr.timeout(20)
    drawn = 0.0
    while not controller.quit and not stop.is_set():
        try:
            key = stdscr.get_wch()
        except curses.error:
            key = None
        except KeyboardInterrupt:
            break
        now = time.monotonic()
        if isinstance(key, str):
            controller.press(key, now)
        controller.tick(now)
        if now - drawn >= REFRESH_S or key is not None:
            drawn = now
            lines = render_screen(
                daemon.snapshot,
                octave=controller.keys.octave,
                last=controller.last,
                log_lines=list(simlog.lines),
                now=now,
                wav=wav,
                notice=simlog.notice,
                state_dir=state_dir,
            )
            try:
                stdscr.erase()
                height, width = stdscr.getmaxyx()
                for y, line in enumerate(lines[: height - 1]):
                    try:
                        stdscr.addstr(y, 0, line[: width - 1])
                    except curses.error:
                        pass
                stdscr.refresh()
            except curses.error:  # the terminal went away: SIGHUP is on its way
                pass
