"""MIDI files in and out: a melody is read from any MIDI file, a composition is written back.

Reading turns whatever a user hands us (one track or many, any resolution, sloppy
note-offs) into a clean monophonic :class:`~deepkeys.device.encoding.Melody` on
the 16th grid. Writing turns a :class:`~deepkeys.device.encoding.Composition`
into a type-1 file, one track per part, from the same
:func:`~deepkeys.device.timeline.composition_events` that the renderer and the
sequencer play, so the MIDI file and the WAV always agree, swing included.
This is the only module of generation that speaks mido.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import mido

from deepkeys.device.atomic import atomic_open
from deepkeys.device.encoding import (
    CHORD_STEPS,
    STEPS_PER_BAR,
    STEPS_PER_BEAT,
    Composition,
    Melody,
    Note,
    TempoChange,
    step_to_beats,
    top_line,
)
from deepkeys.device.errors import UserError
from deepkeys.device.gm import DRUM_CHANNEL, NOTE_ON, PROGRAM
from deepkeys.device.timeline import TimedEvent, track_events

DEFAULT_TEMPO_BPM = 120.0


# --------------------------------------------------------------------------- reading


def read_melody(path: str | os.PathLike[str]) -> Melody:
    """Read the top line of a MIDI file as a :class:`Melody`.

    All non-drum channels are merged; where notes overlap the highest one wins.
    Leading empty bars are dropped, so the melody starts in bar 0. Any problem
    with the file raises :class:`UserError` with one line that names it.
    """
    path = Path(path)
    mid = _load(path)
    tpb = mid.ticks_per_beat
    if tpb <= 0:
        # The header's sign bit marks SMPTE (frames per second) timing, which has no beats.
        raise UserError(f"{path}: SMPTE-timed MIDI files are not supported (no beat grid)")

    tempos: list[tuple[int, int, float]] = []  # (tick, track, bpm): every tempo, any track
    meters: list[tuple[int, int, int]] = []  # (tick, numerator, denominator)
    raw: list[tuple[int, int, int, int]] = []  # (pitch, start tick, end tick, velocity)
    silent_ons = 0
    for track_index, track in enumerate(mid.tracks):
        tick = 0
        sounding: dict[
            tuple[int, int], tuple[int, int]
        ] = {}  # (channel, pitch) -> (start, velocity)
        for msg in track:
            tick += msg.time
            if msg.type == "set_tempo":
                tempos.append((tick, track_index, mido.tempo2bpm(msg.tempo)))
            elif msg.type == "time_signature":
                meters.append((tick, msg.numerator, msg.denominator))
            elif msg.type in ("note_on", "note_off") and msg.channel != DRUM_CHANNEL:
                key = (msg.channel, msg.note)
                if key in sounding:
                    # A note-off, or a re-attack of a key that is still down, ends the note.
                    start, velocity = sounding.pop(key)
                    raw.append((msg.note, start, tick, velocity))
                if msg.type == "note_on" and msg.velocity > 0:
                    sounding[key] = (tick, msg.velocity)
                elif msg.type == "note_on":
                    silent_ons += 1  # velocity 0: MIDI's other spelling of a note-off
                # A note-off with no note-on before it is simply ignored.
        for (_, pitch), (start, velocity) in sounding.items():
            raw.append((pitch, start, tick, velocity))  # never released: ends with its track

    if not raw and silent_ons:
        raise UserError(
            f"{path}: every note-on has velocity 0, which MIDI reads as a note-off: no note sounds"
        )
    if not raw:
        raise UserError(f"{path}: no pitched notes in the file (drums on channel 10 are ignored)")

    notes = [_quantize(pitch, start, end, velocity, tpb) for pitch, start, end, velocity in raw]
    first_bar = min(n.start for n in notes) // STEPS_PER_BAR
    shift = first_bar * STEPS_PER_BAR
    notes = [Note(n.pitch, n.start - shift, n.end - shift, n.velocity) for n in notes]
    n_steps = _whole_bars(max(n.end for n in notes))
    tempo, changes = _tempo_map(tempos, tpb, shift, n_steps)
    stated = [(a, b) for _, a, b in sorted(meters)]
    return Melody(
        top_line(notes, n_steps),
        n_steps,
        tempo,
        path.name,
        tempo_changes=changes,
        meters=[m for i, m in enumerate(stated) if i == 0 or m != stated[i - 1]] or [(4, 4)],
    )


def _tempo_map(
    tempos: list[tuple[int, int, float]], tpb: int, shift: int, n_steps: int
) -> tuple[float, list[TempoChange]]:
    """The opening tempo and the later changes, on the grid of the kept bars.

    The first tempo holds from the start even when it comes a little late (as many
    files put it); a change inside the dropped leading bars becomes the opening
    tempo; a change that repeats the tempo, or lies past the end, is left out.

    >>> _tempo_map([(0, 0, 90.0), (3840, 0, 160.0), (9999, 1, 160.0)], 480, 0, 64)
    (90.0, [(32, 160.0)])
    """
    if not tempos:
        return DEFAULT_TEMPO_BPM, []
    tempos.sort()  # by tick; at one tick the later track wins, as players read them
    at_step: dict[int, float] = {}  # the tempo from each step on; the last at a step wins
    for tick, _, bpm in tempos:
        step = 0 if tick == tempos[0][0] else max(_nearest_step(tick, tpb) - shift, 0)
        if step < n_steps:
            at_step[step] = round(bpm, 3)
    opening = at_step.pop(0)
    changes: list[TempoChange] = []
    for step, bpm in sorted(at_step.items()):
        if bpm != (changes[-1][1] if changes else opening):
            changes.append((step, bpm))
    return opening, changes


def _load(path: Path) -> mido.MidiFile:
    """Open a MIDI file, turning every way it can fail into one UserError line."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
            if not head:
                raise UserError(f"{path}: empty file, not a MIDI file")
            if head != b"MThd":
                raise UserError(f"{path}: not a MIDI file")
            f.seek(0)
            return mido.MidiFile(file=f)
    except UserError:
        raise
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a folder, not a MIDI file") from None
    except PermissionError:
        raise UserError(f"{path}: permission denied") from None
    except EOFError:
        raise UserError(f"{path}: truncated MIDI file (it ends too early)") from None
    except Exception as exc:
        # mido reports damage as OSError, ValueError, KeyError, IndexError, struct.error...
        # A user only needs to know the file is broken, and which one.
        detail = " ".join(str(exc).split())[:120] or type(exc).__name__
        raise UserError(f"{path}: corrupt MIDI file ({detail})") from None


def _quantize(pitch: int, start: int, end: int, velocity: int, tpb: int) -> Note:
    """Snap a note in ticks to the nearest 16th steps, keeping it at least one step long."""
    s = _nearest_step(start, tpb)
    e = max(_nearest_step(end, tpb), s + 1)
    return Note(pitch, s, e, velocity)


def _nearest_step(tick: int, tpb: int) -> int:
    # Round half up: Python's round() would send ties to the even step.
    return math.floor(tick * STEPS_PER_BEAT / tpb + 0.5)


def _whole_bars(steps: int) -> int:
    return max(1, -(-steps // STEPS_PER_BAR)) * STEPS_PER_BAR


# --------------------------------------------------------------------------- writing


def write_composition(
    comp: Composition, path: str | os.PathLike[str], ticks_per_beat: int = 480
) -> None:
    """Write the composition as a type-1 MIDI file, atomically.

    Track 0 is the conductor (tempo, 4/4); then one track per part, in order, the
    melody first. The file lasts exactly ``comp.n_steps``.
    """
    parts = [(track.name, track_events(comp, i)) for i, track in enumerate(comp.tracks)]
    write_timeline(
        parts,
        comp.tempo_bpm,
        step_to_beats(comp.n_steps, comp.swing),
        path,
        ticks_per_beat,
        tempo_changes=comp.tempo_map()[1:],
        markers=chord_markers(comp),
    )


def chord_markers(comp: Composition) -> list[tuple[float, str]]:
    """``(beat, chord name)`` where the chord the parts play changes: the saved file's
    marker events, which DAWs show above the bars (``N`` where no chord is played).

    >>> from deepkeys.device.chords import Chord
    >>> comp = Composition([], 32, 120.0, chords=[Chord.parse(n) for n in "C C G7 Am".split()])
    >>> chord_markers(comp)
    [(0.0, 'C'), (4.0, 'G7'), (6.0, 'Am')]
    """
    markers: list[tuple[float, str]] = []
    for cell, chord in enumerate(comp.chords):
        step = cell * CHORD_STEPS
        if step < comp.n_steps and (not markers or markers[-1][1] != chord.name):
            markers.append((step_to_beats(step, comp.swing), chord.name))
    return markers


def write_timeline(
    parts: Sequence[tuple[str, Sequence[TimedEvent]]],
    tempo_bpm: float,
    length_beats: float,
    path: str | os.PathLike[str],
    ticks_per_beat: int = 480,
    *,
    tempo_changes: Sequence[tuple[float, float]] = (),
    markers: Sequence[tuple[float, str]] = (),
) -> None:
    """Write named tracks of timeline events as a type-1 MIDI file, atomically.

    Track 0 is the conductor: tempo, 4/4, each ``(beat, bpm)`` of ``tempo_changes``
    and each ``(beat, text)`` of ``markers`` (marker meta events); the file lasts
    ``length_beats``. Each part's events must be sorted by beat, as
    :mod:`~deepkeys.device.timeline` gives them.
    """
    end_tick = round(length_beats * ticks_per_beat)
    conductor = mido.MidiTrack(
        [
            mido.MetaMessage("track_name", name="deepkeys", time=0),
            mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(tempo_bpm), time=0),
            mido.MetaMessage("time_signature", numerator=4, denominator=4, time=0),
        ]
    )
    meta = [(beat, 0, "set_tempo", {"tempo": mido.bpm2tempo(bpm)}) for beat, bpm in tempo_changes]
    meta += [(beat, 1, "marker", {"text": text}) for beat, text in markers]
    last = 0
    for beat, _, kind, fields in sorted(meta, key=lambda m: (m[0], m[1])):
        tick = min(round(beat * ticks_per_beat), end_tick)
        conductor.append(mido.MetaMessage(kind, time=tick - last, **fields))
        last = tick
    conductor.append(mido.MetaMessage("end_of_track", time=end_tick - last))
    mid = mido.MidiFile(type=1, ticks_per_beat=ticks_per_beat, tracks=[conductor])
    for name, events in parts:
        track = mido.MidiTrack([mido.MetaMessage("track_name", name=name, time=0)])
        last = 0
        for beat, status, channel, data1, data2 in events:
            tick = round(beat * ticks_per_beat)
            track.append(_message(status, channel, data1, data2, tick - last))
            last = tick
        track.append(mido.MetaMessage("end_of_track", time=max(end_tick - last, 0)))
        mid.tracks.append(track)

    with atomic_open(path) as f:
        mid.save(file=f)


def _message(status: int, channel: int, data1: int, data2: int, delta: int) -> mido.Message:
    """A timeline event as the mido message a file holds, ``delta`` ticks after the last."""
    if status == PROGRAM:
        return mido.Message("program_change", channel=channel, program=data1, time=delta)
    kind = "note_on" if status == NOTE_ON else "note_off"
    return mido.Message(kind, channel=channel, note=data1, velocity=data2, time=delta)
