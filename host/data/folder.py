"""A genre from the user's own MIDI files: ``deepkeys train --genre NAME --data FOLDER``.

Every ``.mid``/``.midi`` file under the folder is read; a file is used when it is
in 4/4 throughout, has a melody and an accompaniment, and holds at least one
phrase (``bars`` bars) with melody in it. The melody is the track named by
``--melody-track`` or, by default, the highest mostly-monophonic pitched track; the
other tracks map onto bass, comp, pad and drums by General MIDI program family
(:mod:`deepkeys.host.data.multitrack`, then :mod:`deepkeys.host.data.band`), as for
MMA's renders. Every file that cannot be used is listed
with its reason (logged, and returned by :func:`scan_folder`), never silently dropped.

The split is by file, so no file's phrases are in two sets.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepkeys.device.encoding import STEPS_PER_BAR, STEPS_PER_BEAT
from deepkeys.device.errors import UserError, first_line
from deepkeys.host.data.band import BandPiece, band_windows
from deepkeys.host.data.multitrack import MidiNote, bars_of, grid_parts, line, read_notes, role_of
from deepkeys.host.data.windows import Windows

log = logging.getLogger(__name__)

MIDI_SUFFIXES = (".mid", ".midi")
MONOPHONIC = 0.9  # share of a melody track's sounding steps with a single pitch


@dataclass
class Scan:
    """What a folder holds: the usable pieces, and every other file with its reason."""

    pieces: list[BandPiece]
    skipped: list[tuple[Path, str]]  # (file, reason)


def scan_folder(folder: str | Path, melody_track: str | None = None, bars: int = 4) -> Scan:
    """Read every MIDI file under ``folder`` into pieces; list the unusable ones."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: not a folder of MIDI files")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in MIDI_SUFFIXES)
    if not files:
        raise UserError(f"{folder}: no .mid or .midi files in it")
    pieces, skipped = [], []
    for path in files:
        try:
            pieces.append(read_piece(path, melody_track, bars))
        except SkipFile as exc:
            skipped.append((path, str(exc)))
            log.warning("skipped file=%s reason=%s", path, exc)
    log.info("data folder=%s usable=%d skipped=%d", folder, len(pieces), len(skipped))
    return Scan(pieces, skipped)


class SkipFile(Exception):
    """A file that cannot be used; the message says why."""


def read_piece(path: Path, melody_track: str | None, bars: int) -> BandPiece:
    """One file as a piece: its melody track's top line over its other tracks.

    Raises :class:`SkipFile` with the reason when the file cannot be used.
    """
    try:
        notes, mid = read_notes(path)
    except (OSError, EOFError, ValueError, KeyError, IndexError) as exc:
        raise SkipFile(f"not a readable MIDI file ({first_line(exc)})") from None
    metres = {
        (m.numerator, m.denominator) for t in mid.tracks for m in t if m.type == "time_signature"
    }
    if metres - {(4, 4)}:
        raise SkipFile("not in 4/4 (" + ", ".join(f"{a}/{b}" for a, b in sorted(metres)) + ")")
    if not notes:
        raise SkipFile("no notes")
    steps = bars_of(int(np.ceil(max(n.end for n in notes) * STEPS_PER_BEAT))) * STEPS_PER_BAR
    melody_name = _melody_track(notes, steps, melody_track)
    accomp = [n for n in notes if n.track != melody_name]
    if not any(role_of(n.program, n.channel) for n in accomp):
        raise SkipFile("no accompaniment tracks besides the melody")
    if steps < bars * STEPS_PER_BAR:
        raise SkipFile(f"shorter than one {bars}-bar phrase")
    melody = grid_parts(
        [n for n in notes if n.track == melody_name], steps, roles={melody_name: "comp"}
    )["comp"]
    pitch, onset = line(melody, top=True)
    return BandPiece(path.name, "", pitch, onset, grid_parts(accomp, steps))


def _melody_track(notes: list[MidiNote], steps: int, wanted: str | None) -> str:
    """The track named ``wanted`` (any case), else the highest mostly-monophonic one that is
    neither drums nor bass nor sound effects."""
    names = sorted({n.track for n in notes})
    if wanted is not None:
        match = [t for t in names if t.strip().lower() == wanted.strip().lower()]
        if not match:
            raise SkipFile(f"no track named {wanted!r} (tracks: {', '.join(map(repr, names))})")
        return match[0]
    best, best_mean = None, -1.0
    for name in names:
        mine = [n for n in notes if n.track == name]
        if any(role_of(n.program, n.channel) in ("drums", "bass", None) for n in mine):
            continue
        part = grid_parts(mine, steps, roles={name: "comp"})["comp"].sounding
        sounding = part.any(axis=1)
        if not sounding.any() or (part.sum(axis=1)[sounding] == 1).mean() < MONOPHONIC:
            continue
        mean = float(np.mean([n.pitch for n in mine]))
        if mean > best_mean:
            best, best_mean = name, mean
    if best is None:
        raise SkipFile("no monophonic melody track (name one with --melody-track)")
    return best


def split_of(name: str) -> str:
    """A file's set, fixed by its name: about 80 % train, 10 % validation, 10 % test."""
    bucket = zlib.crc32(name.encode()) % 10
    return "test" if bucket == 0 else "validation" if bucket == 1 else "train"


def load_folder(
    folder: str | Path, melody_track: str | None = None, bars: int = 4
) -> dict[str, Windows]:
    """Train/validation/test windows of a folder's usable files, split by file."""
    scan = scan_folder(folder, melody_track, bars)
    if len(scan.pieces) < 3:
        raise UserError(
            f"{folder}: {len(scan.pieces)} usable MIDI files, need at least 3 "
            f"(train, validation, test)"
        )
    names = sorted(p.name for p in scan.pieces)
    parts = {p.name: split_of(p.name) for p in scan.pieces}
    # Small folders: make sure validation and test each get a file.
    for needed, pick in (("test", names[0]), ("validation", names[-1])):
        if needed not in parts.values():
            parts[pick] = needed
    chosen = {
        part: [p for p in scan.pieces if parts[p.name] == part]
        for part in ("train", "validation", "test")
    }
    if not all(chosen.values()):
        raise UserError(f"{folder}: too little music for train, validation and test phrases")
    return {part: band_windows(pieces, bars) for part, pieces in chosen.items()}
