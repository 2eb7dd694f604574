"""Training phrases for the harmony model: melodies with the chords people gave them.

A phrase is up to 8 bars (16 half-bar cells) of one piece: the features the device
computes for it and the reference chord of each cell, both in the key-relative frame of
the key its melody implies. Sources (each split by piece, with committed split files):
- POP909's songs: the vocal melody and the chords annotated from the pianist's part;
- the Bach chorales: the soprano, and the four voices reduced to a chord per half bar
  (:func:`deepkeys.host.data.mma.chord_of`);
- folk tunes of music21's corpus: the tune and the chord symbols of its ABC.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

import numpy as np

from deepkeys.device.chords import NO_CHORD, Chord
from deepkeys.device.encoding import BEATS_PER_BAR, REST, STEPS_PER_BEAT
from deepkeys.device.generation.harmony import (
    CELL_STEPS,
    N_FEATURES,
    PHRASE_CELLS,
    SOURCES,
    estimate_key,
    phrase_features,
    pitch_class_weights,
)
from deepkeys.host.data import chorales, folk, pop909
from deepkeys.host.data.mma import chord_of

log = logging.getLogger(__name__)

PHRASE_BARS = PHRASE_CELLS // 2
HOP_BARS = 2
MIN_MELODY_CELLS = 4  # a phrase needs this much melody to imply a key
IGNORE = -1  # target of a padding cell


@dataclass
class Phrases:
    features: np.ndarray  # (N, PHRASE_CELLS, N_FEATURES) float32
    targets: np.ndarray  # (N, PHRASE_CELLS) int32, key-relative tokens, IGNORE for padding
    rotation: np.ndarray  # (N,) the key frame's pitch class, to turn tokens back
    source: np.ndarray  # (N,) index into SOURCES
    names: list[str]  # the piece of each phrase

    def __len__(self) -> int:
        return len(self.targets)

    @classmethod
    def join(cls, parts: list[Phrases]) -> Phrases:
        return cls(
            np.concatenate([p.features for p in parts]),
            np.concatenate([p.targets for p in parts]),
            np.concatenate([p.rotation for p in parts]),
            np.concatenate([p.source for p in parts]),
            [n for p in parts for n in p.names],
        )

    def summary(self) -> str:
        cells = self.targets[self.targets != IGNORE]
        chords = int((cells != NO_CHORD).sum())
        by_source = Counter(SOURCES[s] for s in self.source)
        pieces = len(set(self.names))
        return (
            f"{len(self)} phrases from {pieces} pieces ({dict(by_source)}), "
            f"{len(cells)} cells, {chords} with a chord"
        )


class _Builder:
    def __init__(self) -> None:
        self.rows: list[tuple[np.ndarray, np.ndarray, int, int, str]] = []
        self.skipped: Counter[str] = Counter()

    def add(
        self, pitch: np.ndarray, onset: np.ndarray, chords: list[Chord], source: int, name: str
    ):
        """One phrase: a melody voice of len(chords) cells and the chord of each cell."""
        cells = len(chords)
        melody_cells = int((pitch.reshape(cells, CELL_STEPS) != REST).any(axis=1).sum())
        if melody_cells < MIN_MELODY_CELLS:
            self.skipped["too little melody"] += 1
            return
        key = estimate_key(pitch_class_weights(pitch))
        targets = np.full(PHRASE_CELLS, IGNORE, np.int32)
        targets[:cells] = [c.transposed(-key.rotation).token for c in chords]
        features = phrase_features(pitch, onset, key, source, cells)
        self.rows.append((features, targets, key.rotation, source, name))

    def phrases(self) -> Phrases:
        if not self.rows:
            empty = np.zeros((0, PHRASE_CELLS, N_FEATURES), np.float32)
            return Phrases(empty, np.zeros((0, PHRASE_CELLS), np.int32), np.zeros(0, int),
                           np.zeros(0, int), [])  # fmt: skip
        f, t, r, s, n = zip(*self.rows)
        return Phrases(np.stack(f), np.stack(t), np.array(r), np.array(s), list(n))


def pop909_phrases(names: set[str], songs: list[pop909.Song] | None = None) -> Phrases:
    """Every 8-bar phrase (2 bars apart; a shorter run of 4/4 bars is one phrase)."""
    builder = _Builder()
    source = SOURCES.index("pop909")
    for song in songs if songs is not None else pop909.load_songs():
        if song.name not in names:
            continue
        for seg in song.segments:
            for bar in range(0, max(seg.bars - PHRASE_BARS, 0) + 1, HOP_BARS):
                bars = min(PHRASE_BARS, seg.bars - bar)
                first_beat = seg.beat + bar * BEATS_PER_BAR
                pitch, onset = song.melody_voice(first_beat * STEPS_PER_BEAT, bars * 16)
                beats = song.chords[first_beat : first_beat + bars * BEATS_PER_BAR]
                chords = [Chord.from_token(half_bar_token(beats[i : i + 2]))
                          for i in range(0, len(beats), 2)]  # fmt: skip
                builder.add(pitch, onset, chords, source, song.name)
    return builder.phrases()


def half_bar_token(beat_tokens: np.ndarray) -> int:
    """A half bar's chord from its two beats: the first beat's, unless it has none.

    >>> half_bar_token(np.array([3, 5])), half_bar_token(np.array([NO_CHORD, 5]))
    (3, 5)
    """
    first = int(beat_tokens[0])
    return int(beat_tokens[1]) if first == NO_CHORD and len(beat_tokens) > 1 else first


def chorale_phrases(names: set[str]) -> Phrases:
    """The chorales' sopranos with their four voices' chords, 8 bars, 2 bars apart."""
    builder = _Builder()
    source = SOURCES.index("chorale")
    for c in chorales.load_chorales():
        if c.name not in names:
            continue
        n_bars = c.pitch.shape[1] // 16
        for bar in range(0, max(n_bars - PHRASE_BARS, 0) + 1, HOP_BARS):
            bars = min(PHRASE_BARS, n_bars - bar)
            sl = slice(bar * 16, (bar + bars) * 16)
            voices = c.pitch[:, sl]
            chords = []
            for cell in range(bars * 2):
                name = chord_of(voices[:, cell * CELL_STEPS : (cell + 1) * CELL_STEPS])
                chords.append(Chord.parse(name) if name else Chord(None))
            builder.add(c.pitch[0, sl], c.onset[0, sl], chords, source, c.name)
    return builder.phrases()


def folk_phrases(names: set[str], tunes: list[folk.FolkTune] | None = None) -> Phrases:
    """The folk tunes' melodies with their ABC chord symbols, 8 bars, 2 bars apart."""
    builder = _Builder()
    source = SOURCES.index("folk")
    for tune in tunes if tunes is not None else folk.load_tunes():
        if tune.name not in names:
            continue
        n_bars = len(tune.pitch) // 16
        for bar in range(0, max(n_bars - PHRASE_BARS, 0) + 1, HOP_BARS):
            bars = min(PHRASE_BARS, n_bars - bar)
            sl = slice(bar * 16, (bar + bars) * 16)
            cells = tune.chords[bar * 2 : (bar + bars) * 2]
            chords = [Chord.from_token(int(t)) for t in cells]
            builder.add(tune.pitch[sl], tune.onset[sl], chords, source, tune.name)
    return builder.phrases()


def load_phrases() -> dict[str, Phrases]:
    """Train/validation/test phrases of every source, each split by its committed file."""
    songs = pop909.load_songs()
    tunes = folk.load_tunes()
    pop_split = pop909.load_split()
    chorale_split = chorales.load_split()
    folk_split = folk.load_split()
    out = {}
    for part in ("train", "validation", "test"):
        out[part] = Phrases.join(
            [
                pop909_phrases(set(pop_split[part]), songs),
                chorale_phrases(set(chorale_split[part])),
                folk_phrases(set(folk_split[part]), tunes),
            ]
        )
        log.info("harmony %s: %s", part, out[part].summary())
    return out
