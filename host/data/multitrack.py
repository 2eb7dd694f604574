"""Multitrack MIDI -> the model's parts on the 16th grid, by General MIDI program family.

One mapping serves both MMA's renders and a user's own files (as LPD-5 maps the Lakh
MIDI set): channel 10 is drums; programs 32-39 are bass; pianos, chromatic
percussion, organs and guitars (0-31) comp; strings, ensembles, brass, reeds, pipes,
synth leads and pads (40-103) are the pad; ethnic and percussive programs (104-119)
comp; sound effects (120-127) are dropped.

A part on the grid is a :class:`GridPart`: which pitches sound at each step and which
start there. Drums keep only onsets, folded into :data:`DRUM_CLASSES`.

>>> role_of(program=33, channel=0), role_of(program=0, channel=9), role_of(48, 2)
('bass', 'drums', 'pad')
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import mido
import numpy as np

from deepkeys.device.encoding import (
    DRUM_CLASSES,
    REST,
    STEPS_PER_BAR,
    STEPS_PER_BEAT,
    drum_class_of,
)
from deepkeys.device.gm import DRUM_CHANNEL

ROLES = ("drums", "bass", "comp", "pad")


def role_of(program: int, channel: int) -> str | None:
    """The part a MIDI channel's notes belong to; ``None`` for sound effects."""
    if channel == DRUM_CHANNEL:
        return "drums"
    if 32 <= program <= 39:
        return "bass"
    if program <= 31 or 104 <= program <= 119:
        return "comp"
    if program <= 103:
        return "pad"
    return None


@dataclass
class GridPart:
    """A part on the step grid. Pitched: (T, 128) rolls; drums: (T, classes) onsets."""

    sounding: np.ndarray
    onset: np.ndarray


@dataclass
class MidiNote:
    pitch: int
    start: float  # in beats
    end: float
    channel: int
    program: int
    track: str


def read_notes(path: str | Path, data: bytes | None = None) -> tuple[list[MidiNote], mido.MidiFile]:
    """Every note of a MIDI file with its channel's program at the time it starts; from
    ``data``, the file's bytes, when given (mido parses both alike).

    Raises ``ValueError``/``OSError``/``EOFError`` for files mido cannot read.
    """
    mid = mido.MidiFile(str(path)) if data is None else mido.MidiFile(file=io.BytesIO(data))
    tpb = mid.ticks_per_beat
    notes: list[MidiNote] = []
    for track in mid.tracks:
        now = 0
        programs = [0] * 16
        open_notes: dict[tuple[int, int], tuple[int, int]] = {}
        for msg in track:
            now += msg.time
            if msg.type == "program_change":
                programs[msg.channel] = msg.program
            elif msg.type in ("note_on", "note_off"):
                key = (msg.channel, msg.note)
                if msg.type == "note_on" and msg.velocity:
                    if key in open_notes:  # re-attack without a note-off
                        _close(notes, open_notes.pop(key), key, now, tpb, track.name)
                    open_notes[key] = (now, programs[msg.channel])
                elif key in open_notes:
                    _close(notes, open_notes.pop(key), key, now, tpb, track.name)
        for key, began in open_notes.items():  # never released: ends with the track
            _close(notes, began, key, now, tpb, track.name)
    notes.sort(key=lambda n: (n.start, n.pitch))
    return notes, mid


def _close(
    notes: list[MidiNote],
    began: tuple[int, int],
    key: tuple[int, int],
    now: int,
    tpb: int,
    track: str,
) -> None:
    start, program = began
    notes.append(MidiNote(key[1], start / tpb, max(now, start) / tpb, key[0], program, track))


def unswing(beats: float) -> float:
    """Undo a 2:1 (triplet) swing: the off-beat 8th at 2/3 of a beat goes back to 1/2.

    >>> unswing(2 + 2 / 3), unswing(1.0), unswing(0.3333)
    (2.5, 1.0, 0.25)
    """
    beat = np.floor(beats)
    f = beats - beat
    f = f * 0.75 if f < 2 / 3 else 0.5 + (f - 2 / 3) * 1.5
    return float(beat + round(f, 4))


def to_step(beats: float, swing: bool = False) -> int:
    """The nearest 16th step of a time in beats, first unswung if the music swings.

    >>> to_step(1.5), to_step(2 / 3, swing=True)
    (6, 2)
    """
    return round((unswing(beats) if swing else beats) * STEPS_PER_BEAT)


def grid_parts(
    notes: Iterable[MidiNote],
    n_steps: int,
    swing: bool = False,
    roles: Mapping[str, str | None] | None = None,
) -> dict[str, GridPart]:
    """Notes -> one :class:`GridPart` per role (all of :data:`ROLES`, empty if unused).

    ``roles`` may name a role per track name, overriding the program family (a user's
    file may call its piano track "bass"); ``None`` drops the track.
    """
    parts = {
        r: GridPart(
            np.zeros((n_steps, len(DRUM_CLASSES) if r == "drums" else 128), bool),
            np.zeros((n_steps, len(DRUM_CLASSES) if r == "drums" else 128), bool),
        )
        for r in ROLES
    }
    for n in notes:
        role = roles[n.track] if roles and n.track in roles else role_of(n.program, n.channel)
        if role is None:
            continue
        start = to_step(n.start, swing)
        if not 0 <= start < n_steps:
            continue
        part = parts[role]
        if role == "drums":
            cls = drum_class_of(n.pitch)
            if cls is not None:
                part.onset[start, cls] = part.sounding[start, cls] = True
            continue
        end = min(max(to_step(n.end, swing), start + 1), n_steps)
        part.sounding[start:end, n.pitch] = True
        part.onset[start, n.pitch] = True
    return parts


def line(part: GridPart, top: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A pitched part as one monophonic voice: its lowest (bass) or highest (melody)
    sounding pitch at each step; a change of pitch starts a note."""
    sounding = np.any(part.sounding, axis=1)
    rolls = part.sounding[:, ::-1] if top else part.sounding
    index = rolls.argmax(axis=1)
    pitch = np.where(sounding, 127 - index if top else index, REST).astype(np.int16)
    onset = np.zeros(len(pitch), bool)
    onset[sounding] = part.onset[np.flatnonzero(sounding), pitch[sounding]]
    onset[1:] |= sounding[1:] & (pitch[1:] != pitch[:-1])
    onset[0] = sounding[0]
    return pitch, onset


def bars_of(n_steps: int) -> int:
    """How many bars ``n_steps`` steps span, a partial last bar counting as one.

    >>> bars_of(16), bars_of(17)
    (1, 2)
    """
    return -(-n_steps // STEPS_PER_BAR)
