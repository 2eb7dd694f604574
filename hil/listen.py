"""Does the recording hold the saved composition? Per track, as the genre's card describes it.

The card (``device/generation/card.py``) says which tracks a genre has. A melodic track (the
chorale's alto, tenor and bass; a rock bass) is checked note by note: the note's
fundamental must stand out of its neighbourhood in the captured audio while the
.mid says it sounds. A drum track (card ``is_drum``, or MIDI channel 9) is checked
hit by hit: broadband (high-frequency) onset energy at each hit's time.

The rig's own JACK server xruns when the machine is loaded (CI once: 192 xruns in a
6 s loop, hits heard up to 35 ms early by the end). The recording then loses time
against the daemon's stream, which stays exact. So the file's times are placed in the
recording by :class:`Placement`: the loop's start, found to the sample, and every half
bar re-found (within 60 ms) by matching that half bar rendered offline.

A check that only says "there is energy" would pass for any notes. So every
melodic track is also checked with its notes moved a semitone: the same audio must
then *fail*, which shows the notes heard are exactly the file's.

    >>> at = Placement.follow(audio, rate, loop_start, mid, seconds=6.0)  # doctest: +SKIP
    >>> report = listen(audio, at, read_notes(mid), load_card(card).tracks)  # doctest: +SKIP
    >>> report["bass"].present                                                     # doctest: +SKIP
    0.93
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deepkeys.device.gm import DRUM_CHANNEL

from .analysis import MidiNote, high_flux, match_delay, midi_hz, pitch_energy

MIN_NOTE_S = 0.15  # shorter notes give too few cycles of a low fundamental
SETTLE_S = 0.03
PARTIALS = (0, 12, 19, 24, 28, 31)  # semitones from a fundamental to its first 6 partials
DRIFT_S = 0.06  # how far a half bar may have moved from where the loop's start puts it


@dataclass(frozen=True)
class TrackReport:
    """What one track's check found: the share of its notes (or hits) heard."""

    name: str
    kind: str  # "melodic" or "drums"
    checked: int
    present: float  # share heard at the file's pitches (hits: with broadband onsets)
    shifted: float | None  # the same share with every pitch a semitone up (melodic only)


@dataclass
class Placement:
    """Where a time in the file (seconds from its start) lies in the recording (a sample).

    ``start`` is the file's first sample; ``moves`` are (file time, samples moved) from
    there on, sorted: what the rig's xruns have taken out of the recording by then.

    >>> at = Placement(48000, 1000, [(3.0, -480)])
    >>> at(1.0), at(3.5)
    (49000, 168520)
    """

    rate: int
    start: int
    moves: list[tuple[float, int]] = field(default_factory=list)

    def __call__(self, t: float) -> int:
        i = bisect_right(self.moves, (t, float("inf")))
        moved = self.moves[i - 1][1] if i else 0
        return self.start + int(t * self.rate) + moved

    @property
    def drift_s(self) -> float:
        """The largest move, in seconds."""
        return max((abs(m) for _, m in self.moves), default=0) / self.rate

    @classmethod
    def follow(
        cls,
        audio: np.ndarray,
        rate: int,
        start: int,
        mid: str | Path,
        seconds: float,
        step_s: float = 0.75,
    ) -> Placement:
        """Re-find each ``step_s`` of the file in ``audio``; one not found keeps the last move."""
        reference = render_opening(mid, rate, seconds)
        at = cls(rate, start)
        reach, moved = int(DRIFT_S * rate), 0
        for k in range(1, int(seconds / step_s)):
            t = k * step_s
            template = reference[int(t * rate) : int((t + step_s) * rate)]
            expected = start + int(t * rate)
            if np.dot(template, template) < 1e-6 or expected + reach + len(template) > len(audio):
                continue
            found = match_delay(audio, max(0, expected - reach), template, 2 * reach, 0.3)
            if found is not None:
                moved = found[0] - expected
            at.moves.append((t, moved))
        return at


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
    audio: np.ndarray, at: Placement, note: MidiNote, sounding: set[int], shift: int = 0
) -> bool:
    """Does ``note.pitch + shift`` stand out of its neighbourhood in the audio?"""
    rate = at.rate
    a = at(note.start + SETTLE_S)
    b = a + int((min(note.end, note.start + 0.5) - note.start - SETTLE_S) * rate)
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
    audio: np.ndarray, at: Placement, notes: list[MidiNote], everything: list[MidiNote], name: str
) -> TrackReport:
    long_enough = [
        n
        for n in notes
        if n.end - n.start >= MIN_NOTE_S and at(min(n.end, n.start + 0.5)) <= len(audio)
    ]
    heard = shifted = fair = 0
    for note in long_enough:
        mid = note.start + SETTLE_S
        sounding = {o.pitch for o in everything if o.start <= mid < o.end}
        heard += _present(audio, at, note, sounding)
        # As if the file said a semitone higher: this note no longer hides its own pitch.
        moved = (sounding - {note.pitch}) | {note.pitch + 1}
        if not partial_of(note.pitch + 1, sounding - {note.pitch}):  # else it really sounds
            fair += 1
            shifted += _present(audio, at, note, moved, shift=1)
    n = len(long_enough)
    return TrackReport(
        name, "melodic", n, heard / n if n else 0.0, shifted / fair if fair else None
    )


def check_drums(audio: np.ndarray, at: Placement, notes: list[MidiNote], name: str) -> TrackReport:
    hop_s = 0.005
    flux = high_flux(audio, at.rate, hop_s)
    floor = float(np.median(flux)) + 1e-9
    hits = sorted({round(n.start, 3) for n in notes})
    heard = checked = 0
    for t in hits:
        i = int(at(t) / at.rate / hop_s)
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
    audio: np.ndarray, at: Placement, tracks: dict[str, list[MidiNote]], card_tracks: list
) -> dict[str, TrackReport]:
    """Check every track of a composition against audio where ``at`` places its times."""
    everything = [n for notes in tracks.values() for n in notes]
    out = {}
    for name, notes in tracks.items():
        if drum_track(name, card_tracks) or any(n.channel == DRUM_CHANNEL for n in notes):
            out[name] = check_drums(audio, at, notes, name)
        else:
            out[name] = check_melodic(audio, at, notes, everything, name)
    return out


def low_share(audio: np.ndarray, rate: int, below_pitch: int) -> float:
    """Share of energy below ``below_pitch``'s fundamental: the low register's weight."""
    from .analysis import band_energy

    return band_energy(audio, rate, 20.0, midi_hz(below_pitch))
