"""The daemon's vocabulary: small plain messages between its threads.

MIDI and GPIO callbacks only turn what happened into one of these *events* and
put it on the main loop's queue. The state machine (``state.py``) reads events and
answers with *actions*, which the daemon carries out. Neither side does I/O
itself, so the whole appliance logic is testable without hardware.

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
