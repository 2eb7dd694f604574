"""The appliance as a state machine: events in, actions out, no I/O and no threads.

The daemon's main loop owns one :class:`Appliance`. It hands every event
(:mod:`~deepkeys.device.events`) to :meth:`Appliance.handle` and carries out the actions it gets
back, in order. Nothing here touches hardware, clocks or files, so every path
through the panel is a plain unit test.

>>> from deepkeys.device.events import Button, NoteOn, NoteOff, Tick
>>> box = Appliance(["chorale", "jazz"], tempo_bpm=100)
>>> [a.name for a in box.handle(Button("record", t=0.0))]
['set_led', 'start_metronome']
>>> box.state
'count_in'
>>> box.handle(Tick(2.4)), box.state        # one bar of 100 BPM later: bar 0 begins
([Action(name='set_led', args={'led': 'rec', 'state': 'on'})], 'recording')
>>> _ = box.handle(NoteOn(60, 90, t=2.4)), box.handle(NoteOff(60, t=3.0))
>>> [a.name for a in box.handle(Button("generate", t=4.0))]
['stop_metronome', 'set_led', 'save_take', 'set_led', 'start_generation']
>>> box.state
'generating'

States (:attr:`Appliance.state`):

- ``idle``: nothing runs. There may be a take and a composition from before.
- ``count_in``: RECORD was pressed; the metronome counts one bar in (REC blinks).
- ``recording``: the keys are being recorded (REC on), until RECORD (or
  PLAY/STOP, or GENERATE) or until ``max_bars`` are full.
- ``generating``: a generation runs on the worker (BUSY on); when it is done the
  new composition starts playing, unless STOP was pressed meanwhile.
- ``playing``: the composition loops (PLAY on).
- ``playing+generating``: the loop keeps playing while a new one (GENRE or
  GENERATE pressed while playing) is generated; it is then queued to take over at
  the next loop boundary.

Buttons act the same whether they come from the panel (:class:`Button`) or as
the keyboard's transport CCs (:class:`ControlChange` 105 play, 106 stop, 107
record, pressed at a value of 64 or more: MIDI's "switch on"). The panel's
PLAY/STOP toggles; the keyboard has a play and a stop of its own. Any button that
ends a take (RECORD, PLAY/STOP, the play or stop CC) keeps what was recorded;
during the count-in they cancel it.

Only one generation is ever in flight. GENERATE and RECORD while one runs are
refused with a log line (GENERATE refusals are counted). GENRE while one runs
changes the selection only; a result for a genre no longer selected is thrown
away and the selected genre generated instead, so what plays always matches the
genre LEDs.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from typing import Any

from deepkeys.device.appliance.take import Take, TakeRecorder
from deepkeys.device.config import TEMPO_MAX, TEMPO_MIN, Config
from deepkeys.device.encoding import STEPS_PER_BAR, Composition
from deepkeys.device.events import (
    Action,
    Button,
    ControlChange,
    GenerationDone,
    NoteOff,
    NoteOn,
    Tick,
    action,
)

IDLE = "idle"
COUNT_IN = "count_in"
RECORDING = "recording"
GENERATING = "generating"
PLAYING = "playing"
PLAYING_GENERATING = "playing+generating"
STATES = (IDLE, COUNT_IN, RECORDING, GENERATING, PLAYING, PLAYING_GENERATING)

TEMPO_BUTTONS = {"tempo_down": -1, "tempo_up": +1}


class Appliance:
    """The panel's logic. Make it with the installed genres, call :meth:`start` once,
    then :meth:`handle` for every event.

    ``first_seed`` starts the seed counter: each generation takes the next seed,
    so a session is reproducible, and "generate again" is always a new variation.
    """

    def __init__(
        self,
        genres: Sequence[str] = (),
        *,
        tempo_bpm: int = 100,
        rhythm_assist: bool = True,
        metronome: bool = True,
        max_bars: int = 8,
        count_in_bars: int = 1,
        default_genre: str = "",
        split_note: int = 0,
        cc_play: int = 105,
        cc_stop: int = 106,
        cc_record: int = 107,
        first_seed: int = 0,
    ) -> None:
        self.genres: list[str] = list(genres)
        self.genre = default_genre if default_genre in self.genres else self._first_genre()
        self.tempo_bpm = _clamp_tempo(tempo_bpm)
        self.rhythm_assist = rhythm_assist  # may be flipped at run time; applies from the next take
        self.metronome = metronome
        self.max_bars = max_bars
        self.count_in_bars = count_in_bars
        self.split_note = split_note  # keys below it are chord hints while recording
        self.cc = {cc_play: "play", cc_stop: "stop", cc_record: "record"}
        self.next_seed = first_seed
        self.refused_generates = 0

        self.take: Take | None = None  # the last take that had notes
        self.composition: Composition | None = None  # the last finished generation
        self.recorder: TakeRecorder | None = None  # during count_in and recording
        self.generating: tuple[str, int] | None = None  # (genre, seed) in flight
        self.autoplay = False  # play the generation when it arrives (STOP clears it)
        self._mode = IDLE  # idle | count_in | recording | playing; `state` adds generating
        self.now = float("-inf")  # the latest event time seen

    @staticmethod
    def default_genre_problem(default_genre: str, genres: Sequence[str]) -> str | None:
        """Why ``player.default_genre`` cannot be the starting genre, or None when it can.

        >>> Appliance.default_genre_problem("nope", ["chorale", "rock"])
        "player.default_genre = 'nope' is not installed (installed: chorale, rock)"
        >>> Appliance.default_genre_problem("", ["chorale"]) is None
        True
        """
        if not default_genre or default_genre in genres:
            return None
        installed = ", ".join(genres) or "none"
        return f"player.default_genre = {default_genre!r} is not installed (installed: {installed})"

    @classmethod
    def from_config(cls, config: Config, genres: Sequence[str], first_seed: int = 0) -> Appliance:
        p, k = config.player, config.keyboard
        return cls(
            genres,
            tempo_bpm=p.tempo_bpm,
            rhythm_assist=p.rhythm_assist,
            metronome=p.metronome,
            max_bars=p.max_bars,
            count_in_bars=p.count_in_bars,
            default_genre=p.default_genre,
            split_note=p.split_note,
            cc_play=k.cc_play,
            cc_stop=k.cc_stop,
            cc_record=k.cc_record,
            first_seed=first_seed,
        )

    # --- what the outside sees --------------------------------------------------------
    @property
    def state(self) -> str:
        if self.generating is None:
            return self._mode
        return PLAYING_GENERATING if self._mode == PLAYING else GENERATING

    def status(self) -> dict[str, Any]:
        """A plain summary for ``deepkeys status`` and the control socket."""
        return {
            "state": self.state,
            "genre": self.genre,
            "genres": list(self.genres),
            "tempo_bpm": self.tempo_bpm,
            "rhythm_assist": self.rhythm_assist,
            "take_bars": self.take.n_steps // STEPS_PER_BAR if self.take else 0,
            "take_notes": len(self.take.notes) if self.take else 0,
            # the take being played now (None when not recording): the sim shows it grow
            "recording_notes": self.recorder.played if self.recorder else None,
            "has_composition": self.composition is not None,
            "generating": list(self.generating) if self.generating else None,
            "next_seed": self.next_seed,
            "refused_generates": self.refused_generates,
        }

    def start(self) -> list[Action]:
        """The actions that put the panel and the player in their initial state."""
        return [
            _led("rec", "off"),
            _led("busy", "off"),
            _led("play", "off"),
            self._show_genre(),
            action("set_tempo", bpm=self.tempo_bpm),
        ]

    def set_genres(self, genres: Sequence[str]) -> list[Action]:
        """The installed genres changed (a model was deployed or removed)."""
        self.genres = list(genres)
        if self.genre not in self.genres:
            self.genre = self._first_genre()
        return [self._show_genre()]

    # --- events -----------------------------------------------------------------------
    def handle(self, event: Any) -> list[Action]:
        """One event in, the actions to carry out (in order) back.

        Every event's time moves the recording clock first, so a RECORD pressed just
        after the count-in ended ends a take even if no Tick came in between.
        """
        t = getattr(event, "t", None)
        if t is None:
            return []
        # Times only go forward: an unstamped event (t=0.0, say a press from the control
        # socket) happens "now", never in the past. Notes keep their own time for the take.
        self.now = max(self.now, t)
        actions = self._tick(self.now)
        if isinstance(event, Tick):
            return actions
        return actions + self._event(event, self.now)

    def _event(self, event: Any, t: float) -> list[Action]:
        match event:
            case NoteOn() | NoteOff():
                if self.recorder is not None:
                    self.recorder.feed(event)
                return []
            case Button(name=name, kind=kind):
                return self._button(name, kind, t)
            case ControlChange(control=control, value=value):
                command = self.cc.get(control)
                if command is None or value < 64:  # a switch CC: 64..127 pressed, 0..63 released
                    return []
                return {"play": self._play, "stop": self._stop, "record": self._record}[command](t)
            case GenerationDone():
                return self._done(event)
        return []

    def _button(self, name: str, kind: str, t: float) -> list[Action]:
        if kind not in ("press", "long", "repeat"):
            return [_log(button=name, kind=kind, result="ignored", reason="unknown_kind")]
        if name in TEMPO_BUTTONS:
            return self._tempo(TEMPO_BUTTONS[name], kind)
        if kind == "repeat":
            return []  # auto-repeat is for the tempo buttons; a held GENRE must not spin
        # "long" is what a slow press sends: it does what a press does, except on GENRE.
        if name == "genre":
            return self._genre(-1 if kind == "long" else +1)
        if name == "record":
            return self._record(t)
        if name == "generate":
            return self._generate(t)
        if name == "play":
            if self._mode != IDLE:
                return self._stop(t)
            if self.composition is None and self.generating is None:
                # Nothing to play: PLAY/STOP is STOP, the panic button for stuck notes.
                return self._play(t) + [action("stop_playback")]
            return self._play(t)
        return [_log(button=name, result="ignored", reason="unknown_button")]

    def _tick(self, t: float) -> list[Action]:
        actions: list[Action] = []
        recorder = self.recorder
        if recorder is None:  # neither counting in nor recording
            return actions
        if self._mode == COUNT_IN and recorder.phase(t) != "count_in":
            self._mode = RECORDING
            actions.append(_led("rec", "on"))
        if self._mode == RECORDING and recorder.phase(t) == "full":
            # End exactly at the last bar line, not at this (slightly late) tick.
            actions += self._finish_take(recorder.end_t)
        return actions

    # --- RECORD -----------------------------------------------------------------------
    def _record(self, t: float) -> list[Action]:
        if self.generating is not None:
            return [_log(record="refused", reason="busy")]
        if self._mode == COUNT_IN:
            return self._cancel_count_in()
        if self._mode == RECORDING:
            return self._finish_take(t)
        actions = self._stop_loop() if self._mode == PLAYING else []
        self.recorder = TakeRecorder(
            self.tempo_bpm,
            t,
            self.count_in_bars,
            self.max_bars,
            self.rhythm_assist,
            split_note=self.split_note,
        )
        if self.count_in_bars:
            self._mode = COUNT_IN
            actions.append(_led("rec", "blink"))
        else:
            self._mode = RECORDING
            actions.append(_led("rec", "on"))
        # Always sent, even with nothing to click: it also starts the bar clock from t0.
        actions.append(
            action(
                "start_metronome",
                bpm=self.tempo_bpm,
                t0=t,
                count_in_bars=self.count_in_bars,
                through_recording=self.metronome,
            )
        )
        return actions

    def _cancel_count_in(self) -> list[Action]:
        self.recorder = None
        self._mode = IDLE
        return [action("stop_metronome"), _led("rec", "off")]

    def _finish_take(self, t: float) -> list[Action]:
        take = self.recorder.stop(t) if self.recorder is not None else None
        self.recorder = None
        self._mode = IDLE
        actions = [action("stop_metronome"), _led("rec", "off")]
        if take is None:
            # An accidental double press must not wipe a good take.
            return actions + [_log(take="empty", kept="previous" if self.take else "none")]
        self.take = take
        actions.append(action("save_take", take=take))
        if take.dropped or take.orphan_offs:
            actions.append(
                _log(
                    take="recorded",
                    notes=len(take.notes),
                    dropped=take.dropped,
                    orphan_offs=take.orphan_offs,
                )
            )
        return actions

    # --- GENERATE and GENRE -----------------------------------------------------------
    def _generate(self, t: float) -> list[Action]:
        if self._mode == COUNT_IN:
            return [_log(generate="ignored", reason="count_in")]
        if self._mode == RECORDING:
            # The natural flow: play the melody, press GENERATE.
            return self._finish_take(t) + self._generate(t)
        if self.generating is not None:
            # Never two at once: a second would only queue behind the first on the one worker.
            self.refused_generates += 1
            return [_log(generate="refused", reason="busy", refused=self.refused_generates)]
        if self.take is None:
            return [_log(generate="ignored", reason="no_take")]
        if not self.genre:
            return [_log(generate="ignored", reason="no_genre_installed")]
        self.autoplay = True
        return [_led("busy", "on"), self._start_generation()]

    def _start_generation(self) -> Action:
        seed = self.next_seed
        self.next_seed += 1
        self.generating = (self.genre, seed)
        return action(
            "start_generation", genre=self.genre, seed=seed, take=self.take, bpm=self.tempo_bpm
        )

    def _genre(self, direction: int) -> list[Action]:
        if not self.genres:
            return [_log(genre="ignored", reason="no_genre_installed")]
        index = self.genres.index(self.genre) if self.genre in self.genres else -direction
        genre = self.genres[(index + direction) % len(self.genres)]
        if genre == self.genre:
            return []  # only one genre installed
        self.genre = genre
        actions = [self._show_genre()]
        if self._mode == PLAYING and self.generating is None and self.take is not None:
            # GENRE while playing: regenerate; the loop changes at its next boundary.
            self.autoplay = True
            actions += [_led("busy", "on"), self._start_generation()]
        return actions

    def _done(self, done: GenerationDone) -> list[Action]:
        if self.generating != (done.genre, done.seed):
            return [_log(generation="stale", genre=done.genre, seed=done.seed)]
        self.generating = None
        if done.genre != self.genre and self.genre and self.take is not None:
            # GENRE was pressed meanwhile: this result is for a genre no longer shown.
            return [
                _log(
                    generation="discarded", genre=done.genre, seed=done.seed, reason="genre_changed"
                ),
                self._start_generation(),
            ]
        if done.error or done.composition is None:
            # Keep whatever was playing (or not); the old composition stays.
            return [
                _led("busy", "off"),
                _log(
                    generation="failed",
                    genre=done.genre,
                    seed=done.seed,
                    error=done.error or "no composition",
                ),
            ]
        self.composition = done.composition
        actions = [_led("busy", "off")]
        if self._mode == PLAYING:
            actions.append(action("queue_switch", composition=done.composition))
        elif self._mode == IDLE and self.autoplay:
            actions += self._start_loop()
        # Saving is slow (files, publish); it comes after the music has started.
        actions.append(
            action(
                "save_composition", composition=done.composition, genre=done.genre, seed=done.seed
            )
        )
        return actions

    # --- PLAY/STOP --------------------------------------------------------------------
    def _play(self, t: float) -> list[Action]:
        if self._mode in (COUNT_IN, RECORDING):
            return self._stop(t)  # a transport button ends the take
        if self._mode == PLAYING:
            return []
        if self.composition is not None:
            return self._start_loop()
        if self.generating is not None:
            self.autoplay = True
            return [_log(play="waiting", reason="generating")]
        return [_log(play="ignored", reason="nothing_to_play")]

    def _stop(self, t: float) -> list[Action]:
        if self._mode == COUNT_IN:
            return self._cancel_count_in()
        if self._mode == RECORDING:
            return self._finish_take(t)
        was_waiting = self.generating is not None and self.autoplay
        self.autoplay = False  # STOP is the latest word: a generation in flight will not start
        if self._mode == PLAYING:
            return self._stop_loop()
        # Already stopped: stop anyway, as a panic button for stuck notes.
        actions = [action("stop_playback")]
        if was_waiting:
            actions.append(_log(autoplay="off", reason="stop"))
        return actions

    def _start_loop(self) -> list[Action]:
        self._mode = PLAYING
        return [
            action("start_playback", composition=self.composition, bpm=self.tempo_bpm),
            _led("play", "on"),
        ]

    def _stop_loop(self) -> list[Action]:
        self._mode = IDLE
        self.autoplay = False
        return [action("stop_playback"), _led("play", "off")]

    # --- TEMPO ------------------------------------------------------------------------
    def _tempo(self, delta: int, kind: str) -> list[Action]:
        if self._mode in (COUNT_IN, RECORDING):
            # The take's grid is fixed when RECORD is pressed. One line per press, not per repeat.
            return [] if kind == "repeat" else [_log(tempo="ignored", reason=self._mode)]
        bpm = _clamp_tempo(self.tempo_bpm + delta)
        if bpm == self.tempo_bpm:
            return []  # at the limit
        self.tempo_bpm = bpm
        return [action("set_tempo", bpm=bpm)]

    # --- helpers ----------------------------------------------------------------------
    def _first_genre(self) -> str:
        return self.genres[0] if self.genres else ""

    def _show_genre(self) -> Action:
        index = self.genres.index(self.genre) if self.genre in self.genres else None
        return action("show_genre", genre=self.genre, index=index)


def _clamp_tempo(bpm: float) -> int:
    return int(min(max(round(bpm), TEMPO_MIN), TEMPO_MAX))


def _led(led: str, state: str) -> Action:
    return action("set_led", led=led, state=state)


def _log(**fields: Any) -> Action:
    """A ``log`` action: one ``key=value`` line, values quoted where they need it.

    >>> _log(generate="refused", refused=2).args["message"]
    'generate=refused refused=2'
    """
    text = " ".join(f"{k}={v if _plain(v) else shlex.quote(str(v))}" for k, v in fields.items())
    return action("log", message=text)


def _plain(value: Any) -> bool:
    text = str(value)
    return bool(text) and not any(c.isspace() or c in "\"'=" for c in text)
