"""Generated band songs: small multitrack MIDI files for the tests and the benchmarks.

:func:`band_song` writes one song (a lead over bass, piano chords and drums, in General
MIDI programs a user's file would have); :func:`write_band_folder` writes a folder of
them, some broken in each of the ways :func:`~deepkeys.host.data.folder.read_piece`
refuses a file (not MIDI, not 4/4, no accompaniment, too short, no melody, no notes).
"""

from __future__ import annotations

from pathlib import Path

import mido
import numpy as np

TPB = 96
SCALE = [60, 62, 64, 65, 67, 69, 71, 72]
ROOTS = [48, 53, 55, 45]  # C F G A
# The ways a generated file is broken, in turn, with the skip reason each one gets.
BROKEN = {
    "garbage": "not a readable MIDI file",
    "waltz": "not in 4/4 (3/4)",
    "solo": "no accompaniment tracks besides the melody",
    "short": "shorter than one 4-bar phrase",
    "chords only": "no monophonic melody track",
    "empty": "no notes",
}


def track(
    name: str, channel: int, program: int | None, notes: list[tuple[int, float, float]]
) -> mido.MidiTrack:
    """A named track from (pitch, start beat, beats) notes."""
    t = mido.MidiTrack([mido.MetaMessage("track_name", name=name)])
    if program is not None:
        t.append(mido.Message("program_change", channel=channel, program=program))
    events = []
    for pitch, start, length in notes:
        events.append((round(start * TPB), 1, "note_on", pitch))
        events.append((round((start + length) * TPB), 0, "note_off", pitch))
    now = 0
    for tick, _, kind, pitch in sorted(events):
        t.append(
            mido.Message(
                kind,
                channel=channel,
                note=pitch,
                velocity=80 if kind == "note_on" else 0,
                time=tick - now,
            )
        )
        now = tick
    return t


def band_song(
    path: str | Path,
    seed: int,
    bars: int = 8,
    metre: tuple[int, int] = (4, 4),
    parts: tuple[str, ...] = ("lead", "bass", "piano", "drums"),
) -> None:
    """A song of ``bars`` bars: a random lead in eighths over C F G A roots (bass in
    quarters, piano triads in half notes) and a kick-snare-hat groove."""
    rng = np.random.default_rng(seed)
    meta = mido.MidiTrack(
        [
            mido.MetaMessage("time_signature", numerator=metre[0], denominator=metre[1]),
            mido.MetaMessage("set_tempo", tempo=500000),
        ]
    )
    make = {
        "lead": lambda: track(
            "lead", 0, 73, [(int(rng.choice(SCALE)) + 12, b * 0.5, 0.5) for b in range(bars * 8)]
        ),
        "bass": lambda: track(
            "bass", 1, 33, [(ROOTS[(b // 4) % 4], b, 1.0) for b in range(bars * 4)]
        ),
        "piano": lambda: track(
            "piano",
            2,
            0,
            [
                (ROOTS[(b // 2) % 4] + 12 + i, b * 2, 2.0)
                for b in range(bars * 2)
                for i in (0, 4, 7)
            ],
        ),
        "drums": lambda: track(
            "drums",
            9,
            None,
            [
                (36 if b % 4 == 0 else 38 if b % 4 == 2 else 42, b * 0.5, 0.25)
                for b in range(bars * 8)
            ],
        ),
    }
    mido.MidiFile(ticks_per_beat=TPB, tracks=[meta] + [make[p]() for p in parts]).save(path)


def broken_song(path: str | Path, kind: str, seed: int) -> None:
    """A file that :func:`~deepkeys.host.data.folder.read_piece` refuses, one of
    :data:`BROKEN`'s kinds."""
    if kind == "garbage":
        Path(path).write_bytes(b"MThd\x00\x00\x00\x06this is not midi %d" % seed)
    elif kind == "waltz":
        band_song(path, seed, metre=(3, 4))
    elif kind == "solo":
        band_song(path, seed, parts=("lead",))
    elif kind == "short":
        band_song(path, seed, bars=2)
    elif kind == "chords only":
        band_song(path, seed, parts=("piano", "drums"))
    elif kind == "empty":
        mido.MidiFile(tracks=[mido.MidiTrack()]).save(path)
    else:
        raise ValueError(f"unknown kind of broken file {kind!r} (kinds: {', '.join(BROKEN)})")


def write_band_folder(
    folder: str | Path,
    n_files: int,
    seed: int = 0,
    broken: int = 0,
    bars: tuple[int, int] = (6, 10),
) -> list[Path]:
    """Write ``n_files`` songs under ``folder`` (created), ``broken`` of them spread among
    the rest and broken in each of :data:`BROKEN`'s ways in turn; return their paths, sorted.

    A song has ``bars[0]`` to ``bars[1]`` bars, and every 50th is ten times as long (a
    file the split thins to its cap). A third are in subfolders, some names have spaces.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     paths = write_band_folder(tmp, 7, seed=0, broken=1)
    ...     [p.relative_to(tmp).as_posix() for p in paths][:3]
    ['broken 0003 garbage.mid', 'set 1/song 0001.mid', 'set 1/song 0004.mid']
    """
    if not 0 <= broken <= n_files:
        raise ValueError(f"broken={broken} must lie in 0..n_files ({n_files})")
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    kinds = list(BROKEN)
    # Broken files at evenly spread positions (distinct, as they are at least one apart),
    # so any large part of the folder has some.
    where = {int((j + 0.5) * n_files / broken): kinds[j % len(kinds)] for j in range(broken)}
    paths = []
    for i in range(n_files):
        song_seed = int(rng.integers(2**31))
        length = int(rng.integers(bars[0], bars[1] + 1)) * (10 if i % 50 == 49 else 1)
        if i in where:
            path = root / f"broken {i:04d} {where[i]}.mid"
            broken_song(path, where[i], song_seed)
        else:
            sub = root / f"set {i % 3}" if i % 3 else root
            sub.mkdir(exist_ok=True)
            path = sub / (f"song {i:04d}.mid" if i % 7 else f"song {i:04d} (take two).MID")
            band_song(path, song_seed, bars=length)
        paths.append(path)
    return sorted(paths)
