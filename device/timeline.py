"""A composition as one timeline of channel events in beats: what every player of it reads.

The MIDI writer turns beats into ticks, the offline renderer into samples and the
sequencer into samples at a live tempo; all three read :func:`composition_events`,
so the file, the WAV and the loop always agree, swing included. Events are plain
tuples, ``(beat, status, channel, data1, data2)``, with the status bytes of
:mod:`deepkeys.device.gm`; mido appears only where files are read and written.

>>> from deepkeys.device.encoding import Composition, Note, Track
>>> comp = Composition([Track("melody", 0, [Note(69, 0, 4), Note(71, 6, 8)])], 16, 120.0)
>>> [(beat, hex(status), note) for beat, status, _, note, _ in composition_events(comp)]
[(0.0, '0xc0', 0), (0.0, '0x90', 69), (1.0, '0x80', 69), (1.5, '0x90', 71), (2.0, '0x80', 71)]
"""

from __future__ import annotations

from deepkeys.device.encoding import Composition, step_to_beats
from deepkeys.device.gm import DRUM_CHANNEL, NOTE_OFF, NOTE_ON, PROGRAM

# (beat, status, channel, data1, data2)
TimedEvent = tuple[float, int, int, int, int]

# At equal times: release notes first (so a re-attack is heard as one), then set
# programs, then start notes.
_ORDER = {NOTE_OFF: 0, PROGRAM: 1, NOTE_ON: 2}


def composition_events(comp: Composition) -> list[TimedEvent]:
    """Every channel event of the composition, sorted by beat.

    Steps become beats through :func:`~deepkeys.device.encoding.step_to_beats`, so
    swing is applied here and nowhere else. At equal beats note-offs come before
    program changes and those before note-ons.
    """
    events = [event for index in range(len(comp.tracks)) for event in track_events(comp, index)]
    return sort_events(events)


def track_events(comp: Composition, index: int) -> list[TimedEvent]:
    """The events of one track, sorted by beat.

    Drum tracks play on channel 10 (9 from 0) and get no program change. Raises
    ``ValueError`` for a note that MIDI cannot carry (pitch outside 0..127).
    """
    track = comp.tracks[index]
    channel = track_channel(comp, index)
    events: list[TimedEvent] = []
    if not track.is_drum:
        events.append((0.0, PROGRAM, channel, track.program, 0))
    for note in track.notes:
        if note.end <= note.start:
            continue  # nothing to hear
        if not 0 <= note.pitch <= 127:
            raise ValueError(f"note pitch {note.pitch} is outside MIDI's 0..127")
        velocity = min(max(int(note.velocity), 1), 127)  # 0 would turn the note-on into a note-off
        events.append(
            (step_to_beats(note.start, comp.swing), NOTE_ON, channel, note.pitch, velocity)
        )
        events.append((step_to_beats(note.end, comp.swing), NOTE_OFF, channel, note.pitch, 0))
    return sort_events(events)


def sort_events(events: list[TimedEvent]) -> list[TimedEvent]:
    """``events`` sorted in place by beat, note-offs before programs before note-ons at
    equal beats (the order every player of a timeline relies on); returns them."""
    events.sort(key=_sort_key)
    return events


def track_channel(comp: Composition, index: int) -> int:
    """The MIDI channel (from 0) a track plays on: drums always on 9."""
    track = comp.tracks[index]
    return DRUM_CHANNEL if track.is_drum else track.channel


def _sort_key(event: TimedEvent) -> tuple[float, int]:
    return event[0], _ORDER[event[1]]
