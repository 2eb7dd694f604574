"""The daemon's vocabulary: small plain messages between its threads.

MIDI and GPIO callbacks only turn what happened into one of these *events* and put
it on the main loop's queue. The state machine
(:mod:`~deepkeys.device.appliance.state`) reads events and answers with *actions*,
which the daemon carries out. Neither side does I/O itself, so the whole appliance
logic is testable without hardware.

Times are ``time.monotonic()`` seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

BUTTONS = ("genre", "record", "generate", "play", "tempo_down", "tempo_up")


# --- events: into the main loop ------------------------------------------------------
@dataclass(frozen=True, slots=True)
class NoteOn:
    note: int
    velocity: int
    t: float = 0.0


@dataclass(frozen=True, slots=True)
class NoteOff:
    note: int
    t: float = 0.0


@dataclass(frozen=True, slots=True)
class ControlChange:
    control: int
    value: int
    t: float = 0.0


@dataclass(frozen=True, slots=True)
class PitchBend:
    value: int  # -8192 .. 8191
    t: float = 0.0


@dataclass(frozen=True, slots=True)
class Button:
    """A panel button (or a keyboard's transport CC) was pressed.

    ``kind`` is "press" (a short press, on release), "long" (held past the long
    press time) or "repeat" (still held: auto-repeat, for the tempo buttons).
    """

    name: str
    kind: str = "press"
    t: float = 0.0


@dataclass(frozen=True, slots=True)
class Tick:
    """The main loop's clock: sent every few milliseconds and at bar boundaries."""

    t: float


@dataclass(frozen=True, slots=True)
class GenerationDone:
    genre: str
    seed: int
    composition: Any = None  # encoding.Composition, or None when it failed
    error: str = ""
    t: float = 0.0


# --- actions: out of the state machine -----------------------------------------------
@dataclass(frozen=True, slots=True)
class Action:
    name: str
    args: dict[str, Any] = field(default_factory=dict)


# Every action name, with the args it carries. The daemon carries them out in order.
ACTIONS: dict[str, tuple[str, ...]] = {
    "set_led": ("led", "state"),  # led "rec" | "busy" | "play"; state "on" | "off" | "blink"
    "show_genre": ("genre", "index"),  # light genre LED `index` alone; None (genre "") = none
    "set_tempo": ("bpm",),  # live: a playing loop follows at once
    # RECORD: from t0, click `count_in_bars` bars (beat 1 accented), then go on clicking
    # through the recording if `through_recording`; until stop_metronome.
    "start_metronome": ("bpm", "t0", "count_in_bars", "through_recording"),
    "stop_metronome": (),
    "save_take": ("take",),  # a recorder.Take
    "start_generation": ("genre", "seed", "take", "bpm"),  # worker; answers GenerationDone
    "start_playback": ("composition", "bpm"),  # loop it from the top
    "queue_switch": ("composition",),  # loop this instead, from the next loop boundary
    "stop_playback": (),  # stop the loop, all notes off, forget a queued switch
    "save_composition": ("composition", "genre", "seed"),  # .mid + .json, then publish
    "log": ("message",),  # one key=value line
}


def action(name: str, **args: Any) -> Action:
    """An :class:`Action`, checked against :data:`ACTIONS`.

    >>> action("set_tempo", bpm=101)
    Action(name='set_tempo', args={'bpm': 101})
    """
    if name not in ACTIONS or set(args) != set(ACTIONS[name]):
        raise ValueError(f"action {name}({', '.join(args)}) is not in the vocabulary")
    return Action(name, args)
