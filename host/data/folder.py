"""A genre from the user's own MIDI files: ``deepkeys train --genre NAME --data FOLDER``.

Every ``.mid``/``.midi`` file under the folder is read; a file is used when it is
in 4/4 throughout, has a melody and an accompaniment, and holds at least one
phrase (``bars`` bars) with melody in it. The melody is the track named by
``--melody-track`` or, by default, the highest mostly-monophonic pitched track; the
other tracks map onto bass, comp, pad and drums by General MIDI program family
(:mod:`deepkeys.host.data.multitrack`, then :mod:`deepkeys.host.data.band`), as for
MMA's renders. Every file that cannot be used is listed
with its reason (logged, and returned by :func:`scan_folder`), never silently dropped.

The split is by file, so no file's phrases are in two sets, and balanced by windows:
a long file is thinned to at most ``max(CAP_MIN, CAP_MEDIANS x the median file's)``
windows, evenly over its length, and files go to the test and validation sets
until each holds about its tenth of the windows (:func:`balanced_split`). Each
set's files, windows and the share of its windows in which each part plays are
logged (``split set=train files=20 windows=1126 bass=97% comp=100% pad=12%
drums=100%``).

The capping and the split need only each file's window count (:func:`split_files`), so
a folder prepared once into shards (:mod:`deepkeys.host.data.prepare`,
:mod:`deepkeys.host.data.shards`) is split exactly as it is here.
"""

from __future__ import annotations

import logging
import zlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepkeys.device.encoding import STEPS_PER_BAR, STEPS_PER_BEAT
from deepkeys.device.errors import UserError, first_line
from deepkeys.host.data.band import BAND, BandPiece, band_windows
from deepkeys.host.data.multitrack import MidiNote, bars_of, grid_parts, line, read_notes, role_of
from deepkeys.host.data.windows import Windows

log = logging.getLogger(__name__)

MIDI_SUFFIXES = (".mid", ".midi")
MONOPHONIC = 0.9  # share of a melody track's sounding steps with a single pitch
SHARES = {"train": 0.8, "validation": 0.1, "test": 0.1}  # of the windows
CAP_MIN = 32  # windows a file may always give (eight 4-bar phrases, a hop of one bar)
CAP_MEDIANS = 4  # ...or this many times the median file's, whichever is more


@dataclass
class Scan:
    """What a folder holds: the usable pieces, and every other file with its reason."""

    pieces: list[BandPiece]
    skipped: list[tuple[Path, str]]  # (file, reason)


def midi_files(folder: str | Path) -> list[Path]:
    """Every ``.mid``/``.midi`` file under ``folder``, sorted; a one-line error if none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: not a folder of MIDI files")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in MIDI_SUFFIXES)
    if not files:
        raise UserError(f"{folder}: no .mid or .midi files in it")
    return files


def scan_folder(folder: str | Path, melody_track: str | None = None, bars: int = 4) -> Scan:
    """Read every MIDI file under ``folder`` into pieces; list the unusable ones."""
    folder = Path(folder)
    pieces, skipped = [], []
    for path in midi_files(folder):
        try:
            piece = read_piece(path, melody_track, bars)
            # By its path in the folder: two songs called intro.mid are two pieces.
            piece.name = path.relative_to(folder).as_posix()
            pieces.append(piece)
        except SkipFile as exc:
            skipped.append((path, str(exc)))
            log.warning("skipped file=%s reason=%s", path, exc)
    log.info("data folder=%s usable=%d skipped=%d", folder, len(pieces), len(skipped))
    return Scan(pieces, skipped)


class SkipFile(Exception):
    """A file that cannot be used; the message says why."""


def read_piece(
    path: Path, melody_track: str | None, bars: int, data: bytes | None = None
) -> BandPiece:
    """One file as a piece: its melody track's top line over its other tracks; ``data``,
    when given, is the file's content, already read.

    Raises :class:`SkipFile` with the reason when the file cannot be used.
    """
    try:
        notes, mid = read_notes(path, data)
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


def balanced_split(counts: dict[str, int]) -> dict[str, str]:
    """Each file's set from its window count: files taken in a fixed pseudo-random order
    (a CRC of the name) go to test, then validation, while that set is short of its
    share of all windows and the file does not take it past one and a half shares;
    the rest train. Test and validation get the smallest training file if still empty.

    >>> balanced_split({"a.mid": 8, "b.mid": 1, "c.mid": 1})
    {'a.mid': 'train', 'b.mid': 'test', 'c.mid': 'validation'}
    """
    total = sum(counts.values())
    order = sorted(counts, key=lambda n: (zlib.crc32(n.encode()), n))
    got = dict.fromkeys(SHARES, 0)
    assigned: dict[str, str] = {}
    for name in order:
        n = counts[name]
        part = next(
            (
                p
                for p in ("test", "validation")
                if got[p] < SHARES[p] * total and got[p] + n <= 1.5 * SHARES[p] * total
            ),
            "train",
        )
        assigned[name] = part
        got[part] += n
    for part in ("test", "validation"):
        training = [n for n in order if assigned[n] == "train"]
        if part not in assigned.values() and len(training) > 1:
            assigned[min(training, key=lambda n: counts[n])] = part
    return {name: assigned[name] for name in sorted(counts)}


def capped(counts: dict[str, int]) -> dict[str, np.ndarray]:
    """Each file's kept window indices (into its own windows), from its window count: all
    of them, or a long file's thinned evenly to the cap.

    >>> {n: len(i) for n, i in capped({"a.mid": 5, "b.mid": 5, "long.mid": 100}).items()}
    {'a.mid': 5, 'b.mid': 5, 'long.mid': 32}
    """
    cap = max(CAP_MIN, CAP_MEDIANS * int(np.median(list(counts.values()))))
    out = {}
    for name, n in counts.items():
        idx = np.arange(n)
        if n > cap:
            idx = np.linspace(0, n - 1, cap).round().astype(int)
            log.info("capped file=%r windows=%d kept=%d", name, n, cap)
        out[name] = idx
    return out


def split_files(
    counts: dict[str, int], usable: int, folder: str | Path
) -> dict[str, dict[str, np.ndarray]]:
    """Each set's files, by name in sorted order, with the indices of the windows each
    keeps (:func:`capped`, then :func:`balanced_split`), from the files' window counts.

    ``usable`` counts the usable files, those without windows included. Raises a one-line
    :class:`UserError` when there are too few files or windows for three sets.
    """
    if usable < 3:
        raise UserError(
            f"{folder}: {usable} usable MIDI files, need at least 3 (train, validation, test)"
        )
    kept = capped({name: n for name, n in counts.items() if n})
    sets = balanced_split({name: len(idx) for name, idx in kept.items()}) if kept else {}
    out = {}
    for part in ("train", "validation", "test"):
        out[part] = {name: kept[name] for name in sorted(kept) if sets[name] == part}
        if not out[part]:
            raise UserError(f"{folder}: too little music for train, validation and test phrases")
    return out


def report_set(part: str, chunks: Iterable[Windows]) -> None:
    """One line per set: its files, windows, and in how many of them each part plays;
    from the set's windows in one or more chunks (a prepared set is read file by file)."""
    files: set[str] = set()
    total = 0
    plays: Counter[str] = Counter()
    for windows in chunks:
        files.update(windows.names)
        total += len(windows)
        if windows.mono_pitch.shape[1]:
            plays["bass"] += int((windows.mono_pitch[:, 0] >= 0).any(axis=1).sum())
        for v, name in enumerate(BAND["poly"][: windows.poly.shape[1]]):
            plays[name] += int(windows.poly[:, v].any(axis=(1, 2)).sum())
        for v, name in enumerate(BAND["drums"][: windows.drums.shape[1]]):
            plays[name] += int(windows.drums[:, v].any(axis=(1, 2)).sum())
    n = max(total, 1)
    log.info(
        "split set=%s files=%d windows=%d %s",
        part,
        len(files),
        total,
        " ".join(f"{name}={round(100 * v / n)}%" for name, v in plays.items()),
    )


def load_folder(
    folder: str | Path, melody_track: str | None = None, bars: int = 4
) -> dict[str, Windows]:
    """Train/validation/test windows of a folder's usable files, split by file and
    balanced by windows (see the module docstring)."""
    scan = scan_folder(folder, melody_track, bars)
    try:
        windows = band_windows(scan.pieces, bars)
    except ValueError:  # no piece, or not one window with melody in it
        windows = None
    names = [] if windows is None else windows.names
    sets = split_files(Counter(names), len(scan.pieces), folder)
    assert windows is not None  # split_files found windows
    first: dict[str, int] = {}  # each file's first window: a piece's windows are contiguous
    for i, name in enumerate(names):
        first.setdefault(name, i)
    out = {}
    for part, files in sets.items():
        out[part] = windows.take(np.concatenate([first[n] + idx for n, idx in files.items()]))
        report_set(part, [out[part]])
    return out
