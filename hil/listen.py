"""Does the recording hold the saved composition? Per track, as the genre's card describes it.

The card (``device/generation/card.py``) says which tracks a genre has. A melodic track (the
chorale's alto, tenor and bass; a rock bass) is checked note by note: the note's
fundamental must stand out of its neighbourhood in the captured audio while the
.mid says it sounds. A drum track (card ``is_drum``, or MIDI channel 9) is checked
hit by hit: broadband (high-frequency) onset energy at each hit's time.

A check that only says "there is energy" would pass for any notes. So every
melodic track is also checked with its notes moved a semitone: the same audio must
then *fail*, which shows the notes heard are exactly the file's.

    >>> report = listen(audio, rate, loop_start, read_notes(mid), load_card(card))  # doctest: +SKIP
    >>> report["bass"].present                                                     # doctest: +SKIP
    0.93
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepkeys.device.gm import DRUM_CHANNEL

from .analysis import MidiNote, high_flux, match_delay, midi_hz, pitch_energy

MIN_NOTE_S = 0.15  # shorter notes give too few cycles of a low fundamental
SETTLE_S = 0.03
PARTIALS = (0, 12, 19, 24, 28, 31)  # semitones from a fundamental to its first 6 partials


@dataclass(frozen=True)
class TrackReport:
    """What one track's check found: the share of its notes (or hits) heard."""

    name: str
    kind: str  # "melodic" or "drums"
    checked: int
    present: float  # share heard at the file's pitches (hits: with broadband onsets)
    shifted: float | None  # the same share with every pitch a semitone up (melodic only)


def drum_track(name: str, card_tracks: list) -> bool:
    """True for a drum part: the card says ``is_drum`` or puts it on channel 9."""
    for t in card_tracks:
        if t.name == name:
            return bool(t.is_drum) or t.channel == DRUM_CHANNEL
    return False


def partial_of(pitch: int, sounding: set[int]) -> bool:
    """True when ``pitch`` is one of the first 6 partials of a sounding note.

    >>> partial_of(79, {60}), partial_of(61, {60})     # a twelfth above; a semitone
    (True, False)
    """
    return any(pitch - s in PARTIALS for s in sounding)


def _present(
    audio: np.ndarray, rate: int, start: int, note: MidiNote, sounding: set[int], shift: int = 0
) -> bool:
    """Does ``note.pitch + shift`` stand out of its neighbourhood in the audio?"""
    a = start + int((note.start + SETTLE_S) * rate)
    b = start + int(min(note.end, note.start + 0.5) * rate)
    if b - a < int(0.1 * rate) or b > len(audio):
        raise ValueError("note outside the recording")
    energy = pitch_energy(audio[a:b], rate)  # MIDI 21..108
    pitch = note.pitch + shift
    # Neighbours: within 5 semitones, and not where a sounding note puts a partial.
    others = [
        p
        for p in range(pitch - 5, pitch + 6)
        if p != pitch and 21 <= p <= 108 and not partial_of(p, sounding)
    ]
    if not others:
        return False
    e = energy[pitch - 21]
    # A peak at this very semitone (a semitone either side, unless sounding, is weaker)...
    beside = [p for p in (pitch - 1, pitch + 1) if p in others]
    if any(energy[p - 21] >= e for p in beside):
        return False
    # ...that stands well out of the neighbourhood.
    return bool(e > 4.0 * np.median([energy[p - 21] for p in others]))


def check_melodic(
    audio: np.ndarray,
    rate: int,
    start: int,
    notes: list[MidiNote],
    everything: list[MidiNote],
    name: str,
) -> TrackReport:
    long_enough = [
        n
        for n in notes
        if n.end - n.start >= MIN_NOTE_S
        and start + int(min(n.end, n.start + 0.5) * rate) <= len(audio)
    ]
    heard = shifted = fair = 0
    for note in long_enough:
        mid = note.start + SETTLE_S
        sounding = {o.pitch for o in everything if o.start <= mid < o.end}
        heard += _present(audio, rate, start, note, sounding)
        # As if the file said a semitone higher: this note no longer hides its own pitch.
        moved = (sounding - {note.pitch}) | {note.pitch + 1}
        if not partial_of(note.pitch + 1, sounding - {note.pitch}):  # else it really sounds
            fair += 1
            shifted += _present(audio, rate, start, note, moved, shift=1)
    n = len(long_enough)
    return TrackReport(
        name, "melodic", n, heard / n if n else 0.0, shifted / fair if fair else None
    )


def check_drums(
    audio: np.ndarray, rate: int, start: int, notes: list[MidiNote], name: str
) -> TrackReport:
    hop_s = 0.005
    flux = high_flux(audio, rate, hop_s)
    floor = float(np.median(flux)) + 1e-9
    hits = sorted({round(n.start, 3) for n in notes})
    heard = checked = 0
    for t in hits:
        i = int((start / rate + t) / hop_s)
        if i + 6 >= len(flux):
            continue
        checked += 1
        heard += bool(flux[max(0, i - 2) : i + 6].max() > 4.0 * floor)
    return TrackReport(name, "drums", checked, heard / checked if checked else 0.0, None)


def render_opening(mid: str | Path, rate: int, seconds: float) -> np.ndarray:
    """The first ``seconds`` of a .mid as the daemon's synth plays it, offline, mono."""
    import mido

    from deepkeys.device.adapters.synth import CONTROL, NOTE_OFF, NOTE_ON, PROGRAM, Synth

    frames = int(seconds * rate)
    events, t = [], 0.0
    for msg in mido.MidiFile(str(mid)):  # in play order, .time in seconds (tempo applied)
        t += msg.time
        offset = round(t * rate)
        if offset >= frames:
            break
        if msg.type == "note_on":
            events.append((offset, NOTE_ON, msg.channel, msg.note, msg.velocity))
        elif msg.type == "note_off":
            events.append((offset, NOTE_OFF, msg.channel, msg.note, 0))
        elif msg.type == "program_change":
            events.append((offset, PROGRAM, msg.channel, msg.program, 0))
        elif msg.type == "control_change":
            events.append((offset, CONTROL, msg.channel, msg.control, msg.value))
    with Synth(rate=rate) as synth:
        return synth.render(frames, events).astype(np.float64).mean(axis=1) / 32768


def loop_start(
    audio: np.ndarray, rate: int, mid: str | Path, within_s: float = 2.0, template_s: float = 0.5
) -> int | None:
    """Where the composition saved in ``mid`` begins in ``audio`` (within ``within_s``).

    Found by matching its opening, rendered offline, against the recording: exact to
    the sample, where a level threshold lags by however slowly the first note rises,
    and a hit checked 10 ms early or late is a hit missed.
    """
    found = match_delay(audio, 0, render_opening(mid, rate, template_s), int(within_s * rate))
    return None if found is None else found[0]


def listen(
    audio: np.ndarray, rate: int, start: int, tracks: dict[str, list[MidiNote]], card_tracks: list
) -> dict[str, TrackReport]:
    """Check every track of a composition against audio whose loop begins at ``start``."""
    everything = [n for notes in tracks.values() for n in notes]
    out = {}
    for name, notes in tracks.items():
        if drum_track(name, card_tracks) or any(n.channel == DRUM_CHANNEL for n in notes):
            out[name] = check_drums(audio, rate, start, notes, name)
        else:
            out[name] = check_melodic(audio, rate, start, notes, everything, name)
    return out


def low_share(audio: np.ndarray, rate: int, below_pitch: int) -> float:
    """Share of energy below ``below_pitch``'s fundamental: the low register's weight."""
    from .analysis import band_energy

    return band_energy(audio, rate, 20.0, midi_hz(below_pitch))
