"""The Bach chorales from music21's corpus, as four monophonic voices on the 16th grid.

Only chorales in 4/4 throughout with exactly four parts are kept, so every window
of bars lines up with the device's 4/4 encoding. Parsing takes tens of seconds, so
the result is cached as one .npz; the train/validation/test split is a committed
file so that it never drifts between runs.

    python -m deepkeys.host.data.chorales   # build the cache (and the split, once)
"""

from __future__ import annotations

import difflib
import importlib.metadata
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing import Pool
from pathlib import Path

import numpy as np

from deepkeys.device.atomic import atomic_open
from deepkeys.device.encoding import (
    REST,
    STEPS_PER_BAR,
    STEPS_PER_BEAT,
    Note,
    notes_to_voice,
    voice_to_notes,
)

log = logging.getLogger(__name__)

CACHE_VERSION = 1  # bump whenever parsing changes what a Chorale holds
LOW, HIGH = 24, 107  # the MIDI range the models cover
SPLIT_PATH = Path(__file__).parents[1] / "splits" / "chorale.json"  # package data of host/


@dataclass
class Chorale:
    name: str  # corpus path stem, e.g. "bwv26.6"; parse_chorale(name) re-opens it
    pitch: np.ndarray  # (4, T) int16, voices soprano/alto/tenor/bass, REST=-1
    onset: np.ndarray  # (4, T) bool, set where a note is (re-)attacked


class SkipChorale(Exception):
    """A chorale that does not fit the encoding; the message is the reason."""


def chorale_names() -> list[str]:
    """Every Bach chorale in music21's corpus, each file once, in BWV order."""
    from music21 import corpus

    # The Riemenschneider numbering lists some files twice; the BWV one lists each once.
    paths = corpus.chorales.Iterator(returnType="filename", numberingSystem="bwv")
    return [p.removeprefix("bach/") for p in paths]


def parse_chorale(name: str) -> Chorale:
    """Parse one chorale onto the step grid; raise SkipChorale(reason) if it does not fit."""
    from music21 import corpus, meter, stream

    score = corpus.parse(f"bach/{name}")
    parts = list(score.parts)
    if len(parts) != 4:
        raise SkipChorale(f"{len(parts)} parts")
    signatures = score.recurse().getElementsByClass(meter.TimeSignature)
    metres = sorted({ts.ratioString for ts in signatures})
    if metres != ["4/4"]:
        raise SkipChorale(f"metre {'+'.join(metres) or 'none'}")

    # A pickup is a short first measure; shift time so that the first full measure
    # starts at step 16 (or 0 without a pickup), i.e. bar lines at multiples of 16.
    measures = [m for part in parts for m in part.getElementsByClass(stream.Measure)]
    full = [m for m in measures if m.duration.quarterLength == 4]
    shift = -_step(full[0].offset) % STEPS_PER_BAR
    # A bar split in two at a repeat sign keeps the phase, but a few chorales have a
    # stray short measure that shifts it: every full measure must start on a bar line.
    if any((_step(m.offset) + shift) % STEPS_PER_BAR for m in full):
        raise SkipChorale("bar lines off the 4/4 grid")

    voices = []
    for part in parts:
        notes = []
        for n in part.stripTies(inPlace=False).flatten().notes:
            if n.duration.isGrace:  # ornaments of no duration would steal a step
                continue
            start = _step(n.offset) + shift
            end = max(_step(n.offset + n.duration.quarterLength) + shift, start + 1)
            notes += [Note(p.midi, start, end) for p in n.pitches]  # a chord: highest wins below
        voices.append(notes)
    n_steps = max(n.end for notes in voices for n in notes)
    pitches, onsets = zip(*(notes_to_voice(notes, n_steps) for notes in voices))
    pitch, onset = np.stack(pitches), np.stack(onsets)
    sounding = pitch[pitch != REST]
    if sounding.min() < LOW or sounding.max() > HIGH:
        raise SkipChorale(f"pitch outside {LOW}..{HIGH}")
    return Chorale(name, pitch, onset)


def _step(quarters: float) -> int:  # music21 offsets may be Fractions
    return round(float(quarters) * STEPS_PER_BEAT)


def _parse_or_reason(name: str) -> Chorale | str:
    try:
        return parse_chorale(name)
    except SkipChorale as e:
        return str(e)


def default_cache_dir() -> Path:
    """Where parsed and rendered data is cached: ``$DEEPKEYS_CACHE`` or ~/.cache/deepkeys."""
    return Path(os.environ.get("DEEPKEYS_CACHE", Path.home() / ".cache" / "deepkeys"))


def cache_path(cache_dir: Path | None = None) -> Path:
    """The chorale cache's file in ``cache_dir`` (default: :func:`default_cache_dir`)."""
    # Keyed by the music21 version too: a new corpus or parser may change the data.
    # importlib.metadata avoids importing music21 (half a second) on a cache hit.
    m21 = importlib.metadata.version("music21")
    return (cache_dir or default_cache_dir()) / f"chorales-v{CACHE_VERSION}-music21-{m21}.npz"


def load_chorales(cache_dir: Path | None = None, workers: int = 2) -> list[Chorale]:
    """All usable chorales, parsed once with `workers` processes and cached after."""
    path = cache_path(cache_dir)
    if path.exists():
        chorales, skipped = _read_cache(path)
        _log_summary(chorales, skipped, f"loaded from {path}")
        return chorales

    t0 = time.perf_counter()
    names = chorale_names()
    with Pool(workers) as pool:
        results = pool.map(_parse_or_reason, names, chunksize=4)
    chorales = [r for r in results if isinstance(r, Chorale)]
    skipped = {n: r for n, r in zip(names, results) if isinstance(r, str)}
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_cache(path, chorales, skipped)
    _log_summary(chorales, skipped, f"parsed in {time.perf_counter() - t0:.1f} s")
    return chorales


def _write_cache(path: Path, chorales: list[Chorale], skipped: dict[str, str]) -> None:
    # One concatenated array per field plus lengths: far faster to load than one
    # array per chorale.
    with atomic_open(path) as f:
        np.savez_compressed(
            f,
            names=np.array([c.name for c in chorales]),
            lengths=np.array([c.pitch.shape[1] for c in chorales], dtype=np.int64),
            pitch=np.concatenate([c.pitch for c in chorales], axis=1),
            onset=np.concatenate([c.onset for c in chorales], axis=1),
            skipped_names=np.array(list(skipped), dtype=str),
            skipped_reasons=np.array(list(skipped.values()), dtype=str),
        )


def _read_cache(path: Path) -> tuple[list[Chorale], dict[str, str]]:
    with np.load(path) as z:
        bounds = np.cumsum(z["lengths"])[:-1]
        pitch = np.split(z["pitch"], bounds, axis=1)
        onset = np.split(z["onset"], bounds, axis=1)
        chorales = [Chorale(str(n), p, o) for n, p, o in zip(z["names"], pitch, onset)]
        skipped = dict(zip(z["skipped_names"].tolist(), z["skipped_reasons"].tolist()))
    return chorales, skipped


def _log_summary(chorales: list[Chorale], skipped: dict[str, str], how: str) -> None:
    steps = sum(c.pitch.shape[1] for c in chorales)
    reasons = ", ".join(f"{r}: {k}" for r, k in Counter(skipped.values()).most_common())
    n, k = len(chorales), len(skipped)
    log.info("%d chorales (%d steps) %s; %d skipped (%s)", n, steps, how, k, reasons)


def soprano_key(chorale: Chorale) -> tuple[int, ...]:
    """The soprano's interval sequence, the same in any key and any rhythm."""
    pitches = [n.pitch for n in voice_to_notes(chorale.pitch[0], chorale.onset[0])]
    return tuple(np.diff(pitches).tolist())


def tune_groups(chorales: Sequence[Chorale], similar: float = 0.7) -> list[list[str]]:
    """Chorale names grouped by soprano tune, in corpus order.

    Bach harmonized many hymn tunes several times, often with a passing note or a
    cadence changed, so identical sopranos alone miss most copies. Two chorales
    share a tune when their interval sequences match at least `similar` (difflib
    ratio; pairs of different tunes here stay below about 0.65, variants of one
    tune mostly score 0.7 to 1), and groups are closed under that relation.
    """
    keys = [soprano_key(c) for c in chorales]
    parent = list(range(len(keys)))  # union-find

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for i in range(len(keys)):
        matcher = difflib.SequenceMatcher(None, (), keys[i], autojunk=False)  # caches b
        for j in range(i):
            matcher.set_seq1(keys[j])
            # quick_ratio() bounds ratio() from above and rules out most pairs cheaply.
            if matcher.quick_ratio() >= similar and matcher.ratio() >= similar:
                parent[root(i)] = root(j)
    groups: dict[int, list[str]] = {}
    for i, c in enumerate(chorales):
        groups.setdefault(root(i), []).append(c.name)
    return list(groups.values())


def make_split(chorales: Sequence[Chorale], seed: int = 0) -> dict[str, list[str]]:
    """About 80/10/10 by chorale, with every version of a soprano tune in the same set.

    Takes chorales rather than bare names because the grouping needs the sopranos:
    a test melody seen in training (even transposed, as augmentation does) would
    flatter the test score.
    """
    groups = tune_groups(chorales)
    np.random.default_rng(seed).shuffle(groups)
    split: dict[str, list[str]] = {"train": [], "validation": [], "test": []}
    tenth = len(chorales) // 10
    for names in groups:  # fill test, then validation, to a tenth each; the rest trains
        subset = next((k for k in ("test", "validation") if len(split[k]) < tenth), "train")
        split[subset] += names
    return {k: sorted(v) for k, v in split.items()}


def load_split() -> dict[str, list[str]]:
    """The committed split: {"train": [...], "validation": [...], "test": [...]} by chorale name."""
    return json.loads(SPLIT_PATH.read_text())


def windows(
    chorales: Sequence[Chorale], bars: int = 4, hop_bars: int = 1
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Every `bars`-bar window, `hop_bars` apart: pitch (N, 4, L) int16, onset (N, 4, L) bool,
    and the chorale name of each window.

    A chorale's last partial bar is padded with rests; windows with a silent soprano
    are dropped, since there is no melody to harmonize.
    """
    length, hop = bars * STEPS_PER_BAR, hop_bars * STEPS_PER_BAR
    pitches, onsets, names = [], [], []
    for c in chorales:
        n_steps = max(-(-c.pitch.shape[1] // STEPS_PER_BAR) * STEPS_PER_BAR, length)
        pad = ((0, 0), (0, n_steps - c.pitch.shape[1]))
        pitch = np.pad(c.pitch, pad, constant_values=REST)
        onset = np.pad(c.onset, pad, constant_values=False)
        for start in range(0, n_steps - length + 1, hop):
            if (pitch[0, start : start + length] != REST).any():
                pitches.append(pitch[:, start : start + length])
                onsets.append(onset[:, start : start + length])
                names.append(c.name)
    if not names:
        return np.full((0, 4, length), REST, np.int16), np.zeros((0, 4, length), bool), []
    return np.stack(pitches), np.stack(onsets), names


def main() -> None:
    """Build the cache (and the split, once) and log each set's size."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    chorales = load_chorales()
    if not SPLIT_PATH.exists():
        SPLIT_PATH.parent.mkdir(exist_ok=True)
        with atomic_open(SPLIT_PATH) as f:
            f.write((json.dumps(make_split(chorales), indent=1) + "\n").encode())
        log.info("wrote %s", SPLIT_PATH)
    split = load_split()
    by_name = {c.name: c for c in chorales}
    for subset, names in split.items():
        pitch, _, _ = windows([by_name[n] for n in names if n in by_name])
        log.info("%s: %d chorales, %d windows", subset, len(names), len(pitch))


if __name__ == "__main__":
    main()
