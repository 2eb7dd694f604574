"""A song folder in POP909's own layout, written by the tests (they never read ../shared)."""

from __future__ import annotations

from pathlib import Path

import mido

TPB = 480
BPM = 100
OFFSET = 240  # the first beat is at tick 240, as POP909's grids start from an offset
ARPEGGIO = (72, 76, 79, 84)  # the melody of every bar, a note a beat
CHORDS = ["C:maj", "C:maj", "A:min7", "A:min7", "F:maj/3", "F:maj/3", "G:sus4(b7)", "N"]


def write_song(folder: Path, bars: int = 8) -> Path:
    """A song: melody C-E-G-C on every bar's beats, piano chord per bar, 4/4 throughout."""
    folder.mkdir(parents=True)
    seconds_per_beat = 60 / BPM
    first = mido.tick2second(OFFSET, TPB, mido.bpm2tempo(BPM))
    beats = [first + k * seconds_per_beat for k in range(bars * 4)]
    (folder / "beat_midi.txt").write_text(
        "".join(f"{t} {float(k % 2 == 0)} {float(k % 4 == 0)}\n" for k, t in enumerate(beats))
    )
    (folder / "chord_midi.txt").write_text(
        "".join(
            f"{beats[b * 4]}\t{beats[b * 4] + 4 * seconds_per_beat}\t{CHORDS[b % len(CHORDS)]}\n"
            for b in range(bars)
        )
    )
    mid = mido.MidiFile(ticks_per_beat=TPB)
    tempo = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(BPM))])
    mid.tracks.append(tempo)
    for name, notes in (
        (
            "MELODY",
            [(p, b * 4 + i, 1) for b in range(bars) for i, p in enumerate((72, 76, 79, 84))],
        ),
        ("BRIDGE", []),
        ("PIANO", [(p, b * 4, 4) for b in range(bars) for p in (48, 55, 64)]),
    ):
        track = mido.MidiTrack([mido.MetaMessage("track_name", name=name)])
        events = []
        for pitch, start, length in notes:
            events.append((OFFSET + start * TPB, 1, "note_on", pitch))
            events.append((OFFSET + (start + length) * TPB, 0, "note_off", pitch))
        now = 0
        for tick, _, kind, pitch in sorted(events):
            track.append(mido.Message(kind, note=pitch, velocity=80, time=tick - now))
            now = tick
        mid.tracks.append(track)
    mid.save(folder / f"{folder.name}.mid")
    return folder
