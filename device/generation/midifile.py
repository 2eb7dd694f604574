"""MIDI files in and out: a melody is read from any MIDI file, a composition is written back.

Reading turns whatever a user hands us (one track or many, any resolution, sloppy
note-offs) into a clean monophonic melody on the 16th grid. Writing turns a
:class:`~deepkeys.device.encoding.Composition` into a type-1 file, one track per
part. :func:`composition_events` is the one place where grid steps become time,
so the MIDI file and the rendered WAV always agree, swing included.

>>> from deepkeys.device.encoding import Composition, Note, Track
>>> comp = Composition([Track("melody", 0, [Note(69, 0, 4), Note(71, 6, 8)])], 16, 120.0)
>>> [(t, m.type, m.note) for t, m in composition_events(comp) if m.type != "program_change"]
[(0.0, 'note_on', 69), (0.5, 'note_off', 69), (0.75, 'note_on', 71), (1.0, 'note_off', 71)]
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import mido

from deepkeys.device.atomic import atomic_open
from deepkeys.device.encoding import (
    STEPS_PER_BAR,
    STEPS_PER_BEAT,
    Composition,
    Note,
    notes_to_voice,
    step_to_beats,
    voice_to_notes,
)
from deepkeys.device.errors import UserError

DRUM_CHANNEL = 9  # MIDI channel 10, counted from 0
DEFAULT_TEMPO_BPM = 120.0

# At equal times: release notes first (so a re-attack is heard as one), then set
# programs, then start notes.
_ORDER = {"note_off": 0, "program_change": 1, "note_on": 2}


@dataclass
class Melody:
    """A monophonic melody on the 16th grid, as read from a file.

    ``n_steps`` is a whole number of bars that holds every note; ``source`` is the
    name of the file it came from.
    """

    notes: list[Note]
    n_steps: int
    tempo_bpm: float
    source: str


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

    tempo_bpm: float | None = None
    tempo_tick = math.inf
    raw: list[tuple[int, int, int, int]] = []  # (pitch, start tick, end tick, velocity)
    for track in mid.tracks:
        tick = 0
        sounding: dict[tuple[int, int], tuple[int, int]] = {}  # (channel, pitch) -> (start, velocity)
        for msg in track:
            tick += msg.time
            if msg.type == "set_tempo" and tick < tempo_tick:
                # The earliest tempo in any track; later changes are ignored.
                tempo_bpm, tempo_tick = mido.tempo2bpm(msg.tempo), tick
            elif msg.type in ("note_on", "note_off") and msg.channel != DRUM_CHANNEL:
                key = (msg.channel, msg.note)
                if key in sounding:
                    # A note-off, or a re-attack of a key that is still down, ends the note.
                    start, velocity = sounding.pop(key)
                    raw.append((msg.note, start, tick, velocity))
                if msg.type == "note_on" and msg.velocity > 0:
                    sounding[key] = (tick, msg.velocity)
                # A note-off with no note-on before it is simply ignored.
        for (_, pitch), (start, velocity) in sounding.items():
            raw.append((pitch, start, tick, velocity))  # never released: ends with its track

    if not raw:
        raise UserError(f"{path}: no pitched notes in the file (drums on channel 10 are ignored)")

    notes = [_quantize(pitch, start, end, velocity, tpb) for pitch, start, end, velocity in raw]
    first_bar = min(n.start for n in notes) // STEPS_PER_BAR
    shift = first_bar * STEPS_PER_BAR
    notes = [Note(n.pitch, n.start - shift, n.end - shift, n.velocity) for n in notes]
    n_steps = _whole_bars(max(n.end for n in notes))
    tempo = DEFAULT_TEMPO_BPM if tempo_bpm is None else round(tempo_bpm, 3)
    return Melody(_top_line(notes, n_steps), n_steps, tempo, path.name)


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
    except Exception as exc:  # noqa: BLE001
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


def _top_line(notes: list[Note], n_steps: int) -> list[Note]:
    """The highest sounding note at each step, re-attacks kept, velocities kept.

    >>> _top_line([Note(60, 0, 8, 50), Note(67, 4, 6, 90), Note(67, 6, 8, 70)], 16)
    [Note(pitch=60, start=0, end=4, velocity=50), Note(pitch=67, start=4, end=6, velocity=90), \
Note(pitch=67, start=6, end=8, velocity=70)]
    """
    pitch, onset = notes_to_voice(notes, n_steps)
    by_pitch: dict[int, list[Note]] = {}
    for note in notes:
        by_pitch.setdefault(note.pitch, []).append(note)
    line = voice_to_notes(pitch, onset)
    return [Note(n.pitch, n.start, n.end, _velocity_at(by_pitch[n.pitch], n)) for n in line]


def _velocity_at(same_pitch: list[Note], top: Note) -> int:
    """The velocity of the source note (of the same pitch) that this top-line note came from."""
    covering = [n for n in same_pitch if n.start <= top.start < n.end]
    # The note struck at this very step if there is one, else the latest one still held.
    return max(covering, key=lambda n: (n.start == top.start, n.start, n.velocity)).velocity


# --------------------------------------------------------------------------- writing


def composition_events(comp: Composition) -> list[tuple[float, mido.Message]]:
    """Every channel message of the composition, as ``(seconds, message)`` sorted by time.

    Steps become time through :func:`step_to_beats`, so swing is applied here and
    nowhere else. At equal times note-offs come before program changes and those
    before note-ons.
    """
    events = [event for index in range(len(comp.tracks)) for event in track_events(comp, index)]
    events.sort(key=lambda e: (e[0], _ORDER[e[1].type]))
    return events


def track_events(comp: Composition, index: int) -> list[tuple[float, mido.Message]]:
    """The messages of one track of the composition, as ``(seconds, message)`` sorted by time.

    Drum tracks play on channel 10 (9 from 0) and get no program change. Raises
    ``ValueError`` for a note that MIDI cannot carry (pitch outside 0..127).
    """
    track = comp.tracks[index]
    channel = track_channel(comp, index)
    seconds_per_beat = 60.0 / comp.tempo_bpm
    events: list[tuple[float, mido.Message]] = []
    if not track.is_drum:
        events.append((0.0, mido.Message("program_change", channel=channel, program=track.program)))
    for note in track.notes:
        if note.end <= note.start:
            continue  # nothing to hear
        velocity = min(max(int(note.velocity), 1), 127)  # 0 would turn the note-on into a note-off
        on = step_to_beats(note.start, comp.swing) * seconds_per_beat
        off = step_to_beats(note.end, comp.swing) * seconds_per_beat
        events.append((on, mido.Message("note_on", channel=channel, note=note.pitch, velocity=velocity)))
        events.append((off, mido.Message("note_off", channel=channel, note=note.pitch, velocity=0)))
    events.sort(key=lambda e: (e[0], _ORDER[e[1].type]))
    return events


def track_channel(comp: Composition, index: int) -> int:
    """The MIDI channel (from 0) a track plays on: drums always on 9."""
    track = comp.tracks[index]
    return DRUM_CHANNEL if track.is_drum else track.channel


def write_composition(
    comp: Composition, path: str | os.PathLike[str], ticks_per_beat: int = 480
) -> None:
    """Write the composition as a type-1 MIDI file, atomically.

    Track 0 is the conductor (tempo, 4/4); then one track per part, in order, the
    melody first. The file lasts exactly ``comp.n_steps``.
    """
    ticks_per_second = comp.tempo_bpm / 60.0 * ticks_per_beat
    end_tick = round(step_to_beats(comp.n_steps, comp.swing) * ticks_per_beat)

    conductor = mido.MidiTrack(
        [
            mido.MetaMessage("track_name", name="deepkeys", time=0),
            mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(comp.tempo_bpm), time=0),
            mido.MetaMessage("time_signature", numerator=4, denominator=4, time=0),
            mido.MetaMessage("end_of_track", time=end_tick),
        ]
    )
    mid = mido.MidiFile(type=1, ticks_per_beat=ticks_per_beat, tracks=[conductor])
    for index, part in enumerate(comp.tracks):
        track = mido.MidiTrack([mido.MetaMessage("track_name", name=part.name, time=0)])
        last = 0
        for seconds, msg in track_events(comp, index):
            # Back from seconds to ticks: the same numbers the renderer plays, so no drift.
            tick = round(seconds * ticks_per_second)
            track.append(msg.copy(time=tick - last))
            last = tick
        track.append(mido.MetaMessage("end_of_track", time=max(end_tick - last, 0)))
        mid.tracks.append(track)

    with atomic_open(path) as f:
        mid.save(file=f)
