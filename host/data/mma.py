"""Style-genre training data: chorale melodies accompanied by MMA's style templates.

The melodies and their harmony are real music: the Bach chorales (music21 corpus).
Their four voices are reduced to one or two chords a bar (:func:`chord_progression`),
and Debian's ``mma`` (Musical MIDI Accompaniment, run as a program, never vendored)
renders that progression in a genre's grooves. Its MIDI output is mapped onto the
band's parts by General MIDI program family (:mod:`deepkeys.host.data.multitrack`,
then :mod:`deepkeys.host.data.band`): drums, bass, comping and pad. So the accompaniment
is style-template data, and each model card says so.

One MMA run renders every chorale for one groove, back to back, a ``Groove`` command
restarting the pattern at each chorale; that keeps MMA's start-up cost to a few runs
per genre. Keys: the melody and the pitched parts are transposed together at
training time, so every progression is heard in every key.

    python -m deepkeys.host.data.mma rock     # build (or load) the cached dataset
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
from numpy.lib.npyio import NpzFile

from deepkeys.device.atomic import atomic_open
from deepkeys.device.chords import Chord
from deepkeys.device.encoding import BEATS_PER_BAR, REST, STEPS_PER_BAR, STEPS_PER_BEAT
from deepkeys.device.errors import UserError
from deepkeys.host.data import chorales, pop909
from deepkeys.host.data.band import BandPiece, band_windows
from deepkeys.host.data.multitrack import MidiNote, bars_of, grid_parts, read_notes
from deepkeys.host.data.windows import Windows, chord_of_voices

log = logging.getLogger(__name__)

CACHE_VERSION = 5  # bump whenever rendering or mapping changes what the arrays hold
STEPS_PER_CHORD = STEPS_PER_BAR // 2  # at most two chords a bar
POP909_SONGS = 130  # POP909 songs rendered per genre, over all three sets
POP909_BARS = 32  # at most this much of each run of 4/4 bars


@dataclass(frozen=True)
class Style:
    """How one genre is rendered: MMA grooves, tempo, and whether MMA swings its 8ths."""

    grooves: tuple[str, ...]
    tempo_bpm: float
    swing: bool = False


# Three grooves (and their variations) per genre; all are in Debian's mma 21.09.
STYLES: dict[str, Style] = {
    "rock": Style(("BasicRock", "BasicRock4", "60sRock"), 120),
    "pop": Style(("PopBallad", "8Beat", "SoftRock"), 96),
    "jazz": Style(("Swing", "SwingWalk", "JazzCombo"), 132, swing=True),
    "bossa": Style(("BossaNova", "BossaNovaSus", "BossaNova1Sus"), 128),
    "blues": Style(("Blues", "Blues1", "BluesTriple"), 92, swing=True),
    "funk": Style(("BVFunk", "Strut", "Strut2"), 104),
    "country": Style(("CountrySwing", "CountrySwing1", "SlowCountry"), 112),
}


def chord_of(pitch: np.ndarray) -> str | None:
    """The chord symbol MMA is given for a slice of voices (V, T), bass last; None for
    silence. :func:`~deepkeys.host.data.windows.chord_of_voices` without the slash.

    >>> chord_of(np.array([[67] * 4, [64] * 4, [60] * 4, [48] * 4]))
    'C'
    >>> chord_of(np.array([[69] * 4, [64] * 4, [60] * 4, [45] * 4]))
    'Am'
    """
    chord = chord_of_voices(pitch)
    return None if chord.root is None else Chord(chord.root, chord.quality).name


def chord_progression(pitch: np.ndarray) -> list[list[str]]:
    """One chorale's voices (4, T) -> per bar, one chord per half bar (silence repeats)."""
    n_bars = bars_of(pitch.shape[1])
    chords: list[str | None] = [
        chord_of(pitch[:, s : s + STEPS_PER_CHORD])
        for s in range(0, n_bars * STEPS_PER_BAR, STEPS_PER_CHORD)
    ]
    known = [c for c in chords if c]
    last = known[0] if known else "C"
    filled = []
    for c in chords:  # a silent half bar (the pickup's bar) keeps the chord around it
        last = c or last
        filled.append(last)
    return [filled[i : i + 2] for i in range(0, len(filled), 2)]


def mma_line(bar: list[str]) -> str:
    """``['C', 'G']`` -> ``'C / G /'``: MMA places one chord per beat token.

    A diminished triad is ``dim3`` to MMA, whose ``dim`` is the diminished seventh.

    >>> mma_line(["Bdim", "C/E"])
    'Bdim3 / C/E /'
    """
    first, second = (mma_chord(name) for name in bar)
    return f"{first} / / /" if first == second else f"{first} / {second} /"


def mma_chord(name: str) -> str:
    chord, slash, bass = name.partition("/")
    return (chord + "3" if chord.endswith("dim") else chord) + slash + bass


def mma_version() -> str:
    """The installed MMA's version line: renders differ between versions."""
    try:
        out = subprocess.run(["mma", "-v"], capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise UserError("mma is not installed (apt-get install mma)") from None
    return out.stdout.strip().splitlines()[-1] if out.stdout.strip() else "unknown"


def mma_roles(notes: list[MidiNote]) -> dict[str, str]:
    """MMA names its bass tracks Bass* and Walk*, whatever instrument plays them: the
    bossa nova's bass is a guitar (program 26). Other tracks go by program family."""
    return {n.track: "bass" for n in notes if n.track.split("-")[0] in ("Bass", "Walk")}


def render(
    progressions: list[list[list[str]]], groove: str, tempo_bpm: float, out_mid: Path
) -> None:
    """Render every progression back to back in one groove into ``out_mid``."""
    lines = [f"Tempo {tempo_bpm:g}"]
    for bars in progressions:
        lines.append(f"Groove {groove}")  # restart the groove's pattern at each piece
        lines.extend(mma_line(bar) for bar in bars)
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "song.mma"
        script.write_text("\n".join(lines) + "\n")
        result = subprocess.run(
            ["mma", "-m", "100000", "-f", str(out_mid), str(script)],
            capture_output=True,
            text=True,
            timeout=600,
        )
    if result.returncode != 0 or not out_mid.exists():
        reason = (result.stderr or result.stdout).strip().splitlines()
        raise UserError(f"mma failed on groove {groove}: {reason[-1] if reason else 'no output'}")


@dataclass
class LeadSheet:
    """A melody and the chords MMA is given for it: one name per half bar, by bar."""

    name: str  # "bwv26.6" for a chorale, "pop909/001@32" for a POP909 segment
    melody_pitch: np.ndarray  # (T,)
    melody_onset: np.ndarray
    progression: list[list[str]]


def chorale_sheets(names: list[str]) -> list[LeadSheet]:
    """The named chorales: the soprano over its voices' chords."""
    by_name = {c.name: c for c in chorales.load_chorales()}
    return [
        LeadSheet(n, by_name[n].pitch[0], by_name[n].onset[0], chord_progression(by_name[n].pitch))
        for n in names
        if n in by_name
    ]


def pop909_sheets(names: list[str]) -> list[LeadSheet]:
    """The named POP909 songs: each run of 4/4 bars (up to POP909_BARS of it) as one sheet,
    the vocal melody over the annotated chords (a half bar without one keeps the chord
    before it, as the chorales' silent half bars do)."""
    wanted = set(names)
    out = []
    for song in pop909.load_songs():
        if song.name not in wanted:
            continue
        for seg in song.segments:
            bars = min(seg.bars, POP909_BARS)
            first = seg.beat * STEPS_PER_BEAT
            pitch, onset = song.melody_voice(first, bars * STEPS_PER_BAR)
            beats = song.chords[seg.beat : seg.beat + bars * BEATS_PER_BAR]
            basses = song.bass[seg.beat : seg.beat + bars * BEATS_PER_BAR]
            cells: list[Chord] = []
            for i in range(0, len(beats), 2):
                chord = Chord.from_token(int(beats[i]))
                bass = int(basses[i])
                if chord.root is not None and bass >= 0 and bass != chord.root:
                    chord = Chord(chord.root, chord.quality, bass)
                cells.append(chord)
            known = [c for c in cells if c.root is not None]
            if not known or not (pitch != REST).any():
                continue
            last, names_ = known[0], []
            for c in cells:
                last = c if c.root is not None else last
                names_.append(last.name)
            progression = [names_[i : i + 2] for i in range(0, len(names_), 2)]
            out.append(LeadSheet(f"pop909/{song.name}@{seg.beat}", pitch, onset, progression))
    return out


def render_genre(genre: str, sheets: list[LeadSheet]) -> list[BandPiece]:
    """Every lead sheet accompanied in each of the genre's grooves."""
    style = STYLES[genre]
    progressions = [s.progression for s in sheets]
    out: list[BandPiece] = []
    with tempfile.TemporaryDirectory() as tmp:
        for groove in style.grooves:
            mid = Path(tmp) / f"{groove}.mid"
            render(progressions, groove, style.tempo_bpm, mid)
            notes, _ = read_notes(mid)
            bar = 0
            for sheet, prog in zip(sheets, progressions):
                steps = len(prog) * STEPS_PER_BAR
                begin, end = bar * BEATS_PER_BAR, (bar + len(prog)) * BEATS_PER_BAR
                shifted = [
                    replace(n, start=n.start - begin, end=n.end - begin)
                    for n in notes
                    if begin <= n.start < end
                ]
                parts = grid_parts(shifted, steps, swing=style.swing, roles=mma_roles(shifted))
                melody_pitch = np.full(steps, REST, np.int16)
                melody_onset = np.zeros(steps, bool)
                length = min(len(sheet.melody_pitch), steps)
                melody_pitch[:length] = sheet.melody_pitch[:length]
                melody_onset[:length] = sheet.melody_onset[:length]
                chords = [Chord.parse(name) for bar_names in prog for name in bar_names]
                out.append(
                    BandPiece(
                        sheet.name,
                        groove,
                        melody_pitch,
                        melody_onset,
                        parts,
                        np.array([c.token for c in chords], np.int16),
                        np.array([-1 if c.bass is None else c.bass for c in chords], np.int16),
                    )
                )
                bar += len(prog)
    return out


def style_split() -> dict[str, list[str]]:
    """The pieces of each set: every chorale of the chorale split, and POP909_SONGS of the
    POP909 split (a fixed sample, in proportion: 80/10/10), by song."""
    chorale = chorales.load_split()
    pop = pop909.load_split()
    rng = np.random.default_rng(0)
    out = {}
    for part, names in chorale.items():
        share = POP909_SONGS * len(pop[part]) // sum(len(v) for v in pop.values())
        sample = sorted(rng.choice(pop[part], size=min(share, len(pop[part])), replace=False))
        out[part] = [*names, *(f"pop909/{n}" for n in sample)]
    return out


def _sheets(names: list[str]) -> list[LeadSheet]:
    pop = [n.removeprefix("pop909/") for n in names if n.startswith("pop909/")]
    return chorale_sheets([n for n in names if not n.startswith("pop909/")]) + pop909_sheets(pop)


def _cache_path(genre: str) -> Path:
    """Where a genre's windows are cached: one file per genre, its recipe key inside."""
    return chorales.default_cache_dir() / f"style-{genre}.npz"


def _recipe_key(genre: str) -> str:
    """A hash of everything the cached windows depend on."""
    recipe = {
        "version": CACHE_VERSION,
        "style": STYLES[genre].__dict__,
        "mma": mma_version(),
        "split": style_split(),
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True, default=list).encode()).hexdigest()


def load_style_split(genre: str, bars: int = 4) -> dict[str, Windows]:
    """Train/validation/test windows of a genre, split by chorale as the chorale model is.

    Rendered once and cached (``$DEEPKEYS_CACHE``); the cache key covers the recipe,
    MMA's version and the split, so a change re-renders.
    """
    if genre not in STYLES:
        raise UserError(f"no MMA recipe for genre {genre!r} (known: {', '.join(STYLES)})")
    key = _recipe_key(genre)
    path = _cache_path(genre)
    split = style_split()
    if path.exists():
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) == key and int(z["bars"]) == bars:
                return {part: _from_npz(z, part) for part in split}
    names = [n for part in split.values() for n in part]
    pieces = render_genre(genre, _sheets(names))
    sets = {
        part: band_windows(
            [p for p in pieces if p.name.split("@")[0] in set(members)],
            bars,
            grooves=STYLES[genre].grooves,
        )
        for part, members in split.items()
    }
    arrays = {"key": np.array(key), "bars": np.array(bars)}
    for part, w in sets.items():
        for column in fields(Windows):
            arrays[f"{part}/{column.name}"] = np.array(getattr(w, column.name))
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path) as f:
        np.savez_compressed(f, allow_pickle=False, **arrays)  # as it is read back
    log.info(
        "style=%s cached=%s %s", genre, path, " ".join(f"{p}={len(w)}" for p, w in sets.items())
    )
    return sets


def _from_npz(z: NpzFile, part: str) -> Windows:
    """One set's windows from the cache."""
    arrays = {f.name: z[f"{part}/{f.name}"] for f in fields(Windows) if f.name != "names"}
    return Windows(**arrays, names=[str(n) for n in z[f"{part}/names"]])


def main() -> None:
    """Build (or load) the cached windows of the genres named on the command line, or all."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    for genre in sys.argv[1:] or list(STYLES):
        sets = load_style_split(genre)
        print(genre, {part: len(w) for part, w in sets.items()})


if __name__ == "__main__":
    main()
    os._exit(0)
