"""POP909: pop melodies with a person's piano accompaniment and annotated chords.

Wang et al., "POP909: A Pop-song Dataset for Music Arrangement Generation", ISMIR 2020,
MIT licence; songs 001-810 are in ``../shared/datasets/pop909`` (``$DEEPKEYS_POP909``).
Real music: the melody is the song's vocal line, the accompaniment a pianist's
arrangement, and the chords were extracted from that arrangement.

Each song is read onto the 16th grid of its own beats (``beat_midi.txt``: 480 ticks a
beat from an offset), so a ritardando does not smear the grid. Bars come from the
downbeat column; only runs of 4-beat bars (:class:`Segment`) are used, because the
models are 4/4. Chords (``chord_midi.txt``, Harte syntax) fold onto the eight qualities
of :mod:`deepkeys.device.chords`, one per beat. Parsing takes about a minute, so the
songs are cached as one .npz; the split by song is a committed file.

    python -m deepkeys.host.data.pop909    # parse, cache and report what each song gave
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass
from multiprocessing import Pool
from pathlib import Path

import mido
import numpy as np

from deepkeys.device.atomic import atomic_open
from deepkeys.device.chords import N_QUALITIES, NO_CHORD, Chord, pitch_class
from deepkeys.device.encoding import BEATS_PER_BAR, REST, STEPS_PER_BAR, STEPS_PER_BEAT
from deepkeys.device.errors import UserError
from deepkeys.device.generation.harmony import CELL_STEPS
from deepkeys.device.resources import REPO
from deepkeys.host.data.band import BandTracks
from deepkeys.host.data.chorales import default_cache_dir
from deepkeys.host.data.multitrack import read_notes
from deepkeys.host.data.windows import Windows

log = logging.getLogger(__name__)

CACHE_VERSION = 1  # bump whenever parsing changes what a Song holds
SPLIT_PATH = Path(__file__).parents[1] / "splits" / "pop909.json"
DEFAULT_ROOT = REPO.parent / "shared" / "datasets" / "pop909"
MIN_BARS = 2  # shorter runs of 4-beat bars are dropped

# Harte qualities (POP909's spelling) onto the eight of device.chords; extensions in
# parentheses are dropped first. Unknown qualities are counted and become no chord.
HARTE: dict[str, str] = {
    "maj": "maj", "min": "min", "7": "7", "maj7": "maj7", "min7": "min7",
    "dim": "dim", "dim7": "dim", "hdim7": "dim", "sus4": "sus4", "sus2": "sus2",
    "maj6": "maj", "min6": "min", "minmaj7": "min", "aug": "maj", "9": "7",
    "maj9": "maj7", "min9": "min7", "11": "7", "13": "7", "min11": "min7",
}  # fmt: skip
# Scale degrees of a slash bass ("/5", "/b7") above the root.
DEGREES = {"1": 0, "2": 2, "3": 4, "4": 5, "5": 7, "6": 9, "7": 11, "9": 2}


@dataclass
class Segment:
    """A run of 4-beat bars: it starts on a downbeat, at ``beat`` of the song."""

    beat: int
    bars: int


@dataclass
class Song:
    """One song on the grid of its own beats (step = beat * 4)."""

    name: str  # the folder name, "001"
    melody: np.ndarray  # (M, 3) int32: pitch, start step, end step
    piano: np.ndarray  # (P, 4) int32: pitch, start, end, velocity
    chords: np.ndarray  # (B,) int16 chord token of each beat
    bass: np.ndarray  # (B,) int16 the annotated bass pitch class of each beat, -1 none
    segments: list[Segment]

    def melody_voice(self, start: int, steps: int) -> tuple[np.ndarray, np.ndarray]:
        """The melody from step ``start`` as one voice (highest note wins), with onsets."""
        pitch = np.full(steps, REST, np.int16)
        onset = np.zeros(steps, bool)
        for p, s, e in self.melody:
            lo, hi = max(s - start, 0), min(e - start, steps)
            if lo < hi:
                span = pitch[lo:hi]
                span[p >= span] = p
                if s - start == lo:
                    onset[lo] = True
        onset[1:] |= (pitch[1:] != pitch[:-1]) & (pitch[1:] != REST)
        onset[0] |= pitch[0] != REST
        return pitch, onset & (pitch != REST)

    def piano_roll(self, start: int, steps: int) -> tuple[np.ndarray, np.ndarray]:
        """The piano part from step ``start``: sounding and onset rolls (steps, 128)."""
        sounding = np.zeros((steps, 128), bool)
        onset = np.zeros((steps, 128), bool)
        for p, s, e, _ in self.piano:
            lo, hi = max(s - start, 0), min(e - start, steps)
            if lo < hi:
                sounding[lo:hi, p] = True
                if s - start == lo:
                    onset[lo, p] = True
        return sounding, onset


def harte_chord(label: str) -> Chord | None:
    """``"F#:maj7/5"`` -> F#maj7/C#; ``"N"`` -> no chord; None if the quality is unknown.

    >>> harte_chord("A:min7").name, harte_chord("Bb:sus4(b7)").name, harte_chord("C:maj/3").name
    ('Am7', 'Bbsus4', 'C/E')
    >>> harte_chord("N").name, harte_chord("C:weird")
    ('N', None)
    """
    if label == "N":
        return Chord(None)
    root_name, _, rest = label.partition(":")
    quality, _, bass = rest.partition("/")
    quality = quality.split("(")[0] or "maj"
    if quality not in HARTE:
        return None
    root = pitch_class(root_name)
    bass_pc = None
    if bass:
        flat = bass.count("b") - bass.count("#")
        degree = DEGREES.get(bass.strip("b#"))
        bass_pc = None if degree is None else (root + degree - flat) % 12
    return Chord(root, HARTE[quality], None if bass_pc == root else bass_pc)


def dataset_root() -> Path:
    return Path(os.environ.get("DEEPKEYS_POP909", DEFAULT_ROOT))


def song_names(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir() and (p / f"{p.name}.mid").exists())


def _seconds_to_ticks(mid: mido.MidiFile, seconds: float) -> float:
    """Where a time in seconds falls in ticks, through the file's tempo map."""
    changes = sorted(
        (tick, msg.tempo)
        for track in mid.tracks
        for tick, msg in _absolute(track)
        if msg.type == "set_tempo"
    )
    tick_at, time_at, tempo = 0, 0.0, 500000
    for tick, new_tempo in changes:
        span = mido.tick2second(tick - tick_at, mid.ticks_per_beat, tempo)
        if time_at + span > seconds:
            break
        tick_at, time_at, tempo = tick, time_at + span, new_tempo
    return tick_at + mido.second2tick(seconds - time_at, mid.ticks_per_beat, tempo)


def _absolute(track: mido.MidiTrack) -> list[tuple[int, mido.Message]]:
    now, out = 0, []
    for msg in track:
        now += msg.time
        out.append((now, msg))
    return out


def parse_song(folder: Path) -> Song | str:
    """One song folder -> a Song, or the reason it cannot be used."""
    name = folder.name
    try:
        notes, mid = read_notes(folder / f"{name}.mid")
        beats = np.loadtxt(folder / "beat_midi.txt", ndmin=2)
        chord_lines = (folder / "chord_midi.txt").read_text().split("\n")
    except (OSError, ValueError, EOFError) as e:
        return f"unreadable: {e}"
    if len(beats) < 8:
        return "fewer than 8 beats"
    # Beat k sits at first_tick + k * ticks_per_beat (the README's measurement).
    first = _seconds_to_ticks(mid, float(beats[0, 0])) / mid.ticks_per_beat

    def steps(beat: float) -> int:
        return round((beat - first) * STEPS_PER_BEAT)

    tracks = {n.track.upper() for n in notes}
    if "MELODY" not in tracks or "PIANO" not in tracks:
        return f"tracks {sorted(tracks)}"
    melody = [(n.pitch, steps(n.start), steps(n.end)) for n in notes if n.track.upper() == "MELODY"]
    piano = [
        (n.pitch, steps(n.start), max(steps(n.end), steps(n.start) + 1), 80)
        for n in notes
        if n.track.upper() == "PIANO"
    ]
    n_beats = len(beats)
    tokens, bass, unknown = _chords_per_beat(chord_lines, beats[:, 0], n_beats)
    if unknown:
        log.debug("song=%s unknown_chord_labels=%d", name, unknown)
    downbeats = np.flatnonzero(beats[:, 2] > 0.5)
    return Song(
        name,
        np.array(melody, np.int32).reshape(-1, 3),
        np.array(piano, np.int32).reshape(-1, 4),
        tokens,
        bass,
        regular_segments(downbeats, n_beats),
    )


def _chords_per_beat(
    lines: list[str], beat_times: np.ndarray, n_beats: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """The chord covering most of each beat (its token and bass pitch class)."""
    ends = np.append(beat_times[1:], beat_times[-1] + np.median(np.diff(beat_times)))
    tokens = np.full(n_beats, NO_CHORD, np.int16)
    bass = np.full(n_beats, -1, np.int16)
    cover = np.zeros(n_beats)
    unknown = 0
    for line in lines:
        fields = line.split()
        if len(fields) != 3:
            continue
        start, end, label = float(fields[0]), float(fields[1]), fields[2]
        chord = harte_chord(label)
        if chord is None:
            unknown += 1
            chord = Chord(None)
        overlap = np.clip(np.minimum(ends, end) - np.maximum(beat_times, start), 0, None)
        better = overlap > cover
        tokens[better] = chord.token
        bass[better] = -1 if chord.bass_class is None else chord.bass_class
        cover = np.maximum(cover, overlap)
    return tokens, bass, unknown


def regular_segments(downbeats: np.ndarray, n_beats: int) -> list[Segment]:
    """Maximal runs of bars exactly four beats long, at least MIN_BARS of them.

    >>> regular_segments(np.array([0, 4, 8, 11, 15, 19, 23]), 27)
    [Segment(beat=0, bars=2), Segment(beat=11, bars=4)]
    """
    bounds = np.append(downbeats, n_beats)
    out: list[Segment] = []
    run_start, run = 0, 0
    for i in range(len(downbeats)):
        if bounds[i + 1] - bounds[i] == BEATS_PER_BAR:
            if run == 0:
                run_start = int(bounds[i])
            run += 1
            continue
        if run >= MIN_BARS:
            out.append(Segment(run_start, run))
        run = 0
    if run >= MIN_BARS:
        out.append(Segment(run_start, run))
    return out


def _cache_path() -> Path:
    return default_cache_dir() / f"pop909-v{CACHE_VERSION}.npz"


def load_songs(root: Path | None = None, workers: int = 2) -> list[Song]:
    """Every usable song, parsed once and cached; one log line says what was skipped."""
    root = root or dataset_root()
    path = _cache_path()
    if path.exists():
        songs, skipped = _read_cache(path)
        _log_summary(songs, skipped, f"loaded from {path}")
        return songs
    if not root.is_dir():
        raise UserError(f"POP909 not found at {root} (set DEEPKEYS_POP909 to its folder)")
    t0 = time.perf_counter()
    names = song_names(root)
    with Pool(workers) as pool:
        results = pool.map(parse_song, [root / n for n in names], chunksize=8)
    songs = [r for r in results if isinstance(r, Song)]
    skipped = {n: r for n, r in zip(names, results) if isinstance(r, str)}
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_cache(path, songs, skipped)
    _log_summary(songs, skipped, f"parsed in {time.perf_counter() - t0:.1f} s")
    return songs


def _write_cache(path: Path, songs: list[Song], skipped: dict[str, str]) -> None:
    def joined(field: str, width: int) -> np.ndarray:
        return np.concatenate([getattr(s, field) for s in songs]).reshape(-1, width)

    with atomic_open(path) as f:
        np.savez_compressed(
            f,
            names=np.array([s.name for s in songs]),
            melody_len=np.array([len(s.melody) for s in songs]),
            piano_len=np.array([len(s.piano) for s in songs]),
            beats_len=np.array([len(s.chords) for s in songs]),
            seg_len=np.array([len(s.segments) for s in songs]),
            melody=joined("melody", 3),
            piano=joined("piano", 4),
            chords=np.concatenate([s.chords for s in songs]),
            bass=np.concatenate([s.bass for s in songs]),
            segments=np.array([(g.beat, g.bars) for s in songs for g in s.segments]).reshape(-1, 2),
            skipped_names=np.array(list(skipped), dtype=str),
            skipped_reasons=np.array(list(skipped.values()), dtype=str),
        )


def _read_cache(path: Path) -> tuple[list[Song], dict[str, str]]:
    with np.load(path) as z:

        def split(key: str, lengths: str) -> list[np.ndarray]:
            return np.split(z[key], np.cumsum(z[lengths])[:-1])

        columns = zip(
            z["names"],
            split("melody", "melody_len"),
            split("piano", "piano_len"),
            split("chords", "beats_len"),
            split("bass", "beats_len"),
            split("segments", "seg_len"),
        )
        songs = [
            Song(str(n), m, p, c, b, [Segment(int(s), int(k)) for s, k in g])
            for n, m, p, c, b, g in columns
        ]
        skipped = dict(zip(z["skipped_names"].tolist(), z["skipped_reasons"].tolist()))
    return songs, skipped


def _log_summary(songs: list[Song], skipped: dict[str, str], how: str) -> None:
    bars = sum(g.bars for s in songs for g in s.segments)
    chords = sum(int((s.chords != NO_CHORD).sum()) for s in songs)
    reasons = ", ".join(f"{r}: {k}" for r, k in Counter(skipped.values()).most_common())
    log.info(
        "pop909: %d songs, %d bars of 4/4, %d beats with a chord %s; %d skipped (%s)",
        len(songs), bars, chords, how, len(skipped), reasons or "none",
    )  # fmt: skip


def make_split(names: list[str], seed: int = 0) -> dict[str, list[str]]:
    """About 80/10/10 by song."""
    order = list(names)
    np.random.default_rng(seed).shuffle(order)
    tenth = len(order) // 10
    return {
        "train": sorted(order[2 * tenth :]),
        "validation": sorted(order[tenth : 2 * tenth]),
        "test": sorted(order[:tenth]),
    }


def load_split() -> dict[str, list[str]]:
    """The committed split: {"train": [...], "validation": [...], "test": [...]} by song."""
    return json.loads(SPLIT_PATH.read_text())


def main() -> None:
    """Parse (or load) the songs, write the split once, and report each set."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    songs = load_songs()
    if not SPLIT_PATH.exists():
        with atomic_open(SPLIT_PATH) as f:
            f.write((json.dumps(make_split([s.name for s in songs]), indent=1) + "\n").encode())
        log.info("wrote %s", SPLIT_PATH)
    by_name = {s.name: s for s in songs}
    for part, names in load_split().items():
        members = [by_name[n] for n in names if n in by_name]
        bars = sum(g.bars for s in members for g in s.segments)
        print(f"{part}: {len(members)} songs, {bars} bars of 4/4")


if __name__ == "__main__":
    main()


# --- the real-playing genre ------------------------------------------------------------
PIANO_GENRE = "ballad"  # learned from people: POP909's piano accompaniments
PIANO_TRACKS: BandTracks = {"voices": ("bass",), "poly": ("piano",), "drums": ()}
PIANO_HOP_BARS = 2


def piano_windows(songs: list[Song], bars: int) -> Windows:
    """Windows of the pianist's part under the vocal melody, conditioned on the annotated
    chords: the lowest sounding piano note as the bass voice, every other piano note as
    one polyphonic part."""
    from deepkeys.host.data.multitrack import GridPart, line

    steps = bars * STEPS_PER_BAR
    cells = steps // CELL_STEPS
    rows: dict[str, list] = {k: [] for k in ("mp", "mo", "bp", "bo", "poly", "po", "ch", "cb")}
    names: list[str] = []
    for song in songs:
        for seg in song.segments:
            for bar in range(0, seg.bars - bars + 1, PIANO_HOP_BARS):
                beat = seg.beat + bar * BEATS_PER_BAR
                start = beat * STEPS_PER_BEAT
                pitch, onset = song.melody_voice(start, steps)
                if not (pitch != REST).any():
                    continue
                sounding, struck = song.piano_roll(start, steps)
                bass, bass_onset = line(GridPart(sounding, struck))
                upper = sounding.copy()
                has = bass != REST
                upper[np.flatnonzero(has), bass[has]] = False
                upper_struck = struck & upper
                beats = song.chords[beat : beat + bars * BEATS_PER_BAR]
                basses = song.bass[beat : beat + bars * BEATS_PER_BAR]
                rows["mp"].append(pitch)
                rows["mo"].append(onset)
                rows["bp"].append(bass[None])
                rows["bo"].append(bass_onset[None])
                rows["poly"].append(upper[None])
                rows["po"].append(upper_struck.any(axis=1)[None])
                rows["ch"].append(beats[::2][:cells])
                roots = beats[::2][:cells] // N_QUALITIES
                rows["cb"].append(np.where(basses[::2][:cells] == roots, -1, basses[::2][:cells]))
                names.append(song.name)
    n = len(names)
    if not n:
        raise ValueError("no POP909 window with melody")
    return Windows(
        np.stack(rows["mp"]),
        np.stack(rows["mo"]),
        np.stack(rows["bp"]),
        np.stack(rows["bo"]),
        np.stack(rows["poly"]),
        np.stack(rows["po"]),
        np.zeros((n, 0, steps, 0), bool),
        names,
        np.zeros(n, np.int32),
        np.stack(rows["ch"]).astype(np.int16),
        np.stack(rows["cb"]).astype(np.int16),
    )


def piano_split(bars: int = 4) -> dict[str, Windows]:
    """The real-playing genre's train/validation/test windows, split by song."""
    by_name = {s.name: s for s in load_songs()}
    return {
        part: piano_windows([by_name[n] for n in names if n in by_name], bars)
        for part, names in load_split().items()
    }
