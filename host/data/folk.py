"""The folk tunes of music21's corpus that carry chord symbols: a melody and its chords.

Each ABC tune (an ``X:`` block; one file may hold hundreds) becomes a :class:`FolkTune`
named ``<collection>/<file stem>/<X number>``: the melody on the 16th grid of
:mod:`deepkeys.device.encoding`, a whole number of 4/4 bars, and one chord token
(:mod:`deepkeys.device.chords`) per half bar. This module may import deepkeys.device.*,
the chorales' module (for the cache folder) and music21, never TensorFlow.

What is kept, and how:

- Meter: 4/4 or 2/2 (``C``, ``C|``) throughout; any other tune (2/4 included, for now)
  is skipped as ``meter 3/4`` and the like.
- Bar lines fall on multiples of 16 steps. Every full measure starts on a bar line; a
  short measure that begins a bar and leads into a full one is an anacrusis and ends at
  the next bar line (a pickup at the start thus fills steps 12..16 of a leading bar of
  rests); a short measure that completes a bar begun by another one (the two halves of
  a bar split by a repeat sign) follows it; any other short measure (a first ending, a
  strain's last bar) starts on a bar line and is padded with rests. Repeats are not
  expanded.
- Chords: a symbol holds until the next one; a half bar gets the one sounding at its
  first step, and before the first symbol there is no chord. Symbols that
  :meth:`Chord.parse` rejects (``D/f+``, ``C11``) become no chord from where they stand
  and are listed in :attr:`FolkTune.unparsed`; quoted text that is no chord at all
  (fingerings, ``"f"`` for forte, tempo words) is ignored, and music21 drops most of it.
- Skipped, each with a one-line reason: no chord symbols, fewer than 4 bars, fewer than
  2 distinct chords, chord symbols on under a quarter of the bars (section letters such
  as ``"A"``/``"B"``, not harmony), more than one part, a melody outside the models'
  range, or music21 failing.

Parsing takes a while, so the result is cached as one .npz; the train/validation/test
split is a committed file.

    python -m deepkeys.host.data.folk   # build the cache (and the split, once)
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from multiprocessing import Pool
from pathlib import Path
from typing import Any

import numpy as np

from deepkeys.device.atomic import atomic_open
from deepkeys.device.chords import NO_CHORD, NONE, Chord
from deepkeys.device.encoding import (
    CHORD_STEPS,
    REST,
    STEPS_PER_BAR,
    STEPS_PER_BEAT,
    Note,
    notes_to_voice,
    voice_to_notes,
)
from deepkeys.device.errors import UserError
from deepkeys.host.data.chorales import default_cache_dir

log = logging.getLogger(__name__)

CACHE_VERSION = 1  # bump whenever parsing changes what a FolkTune holds
LOW, HIGH = 24, 107  # the MIDI range the models cover
MIN_BARS, MIN_CHORDS = 4, 2
METERS = frozenset({"4/4", "2/2"})
# The corpus's folk collections (josquin's ABC files have chords too, but are not folk).
COLLECTIONS = (
    "airdsAirs",
    "essenFolksong",
    "miscFolk",
    "nottingham-dataset",
    "oneills1850",
    "ryansMammoth",
)
SPLIT_PATH = Path(__file__).parents[1] / "splits" / "folk.json"  # package data of host/

# Quoted text that could be a chord name: a capital A-G and a few more characters, no
# spaces. Tunes without any are skipped unparsed: music21 would take seconds to tell.
_CHORDISH = re.compile(r'"\(?[A-G][^"\s]{0,11}"')
_FIELD = re.compile(r"^[A-Za-z+]:")
_SPLIT = "\t"  # joins a tune's unparsed figures in the cache


@dataclass
class FolkTune:
    name: str  # "<collection>/<file stem>/<X number>"
    title: str  # the first T: field, "" if none
    pitch: np.ndarray  # (T,) int16 melody, REST=-1; T a multiple of STEPS_PER_BAR
    onset: np.ndarray  # (T,) bool, set where a note is (re-)attacked
    chords: np.ndarray  # (T // CHORD_STEPS,) int16 chord tokens, NO_CHORD before the first
    bass: np.ndarray  # (T // CHORD_STEPS,) int8 slash-chord bass pitch class, -1 = the root
    unparsed: tuple[str, ...] = field(default=())  # figures Chord.parse rejected (no chord)

    @property
    def bars(self) -> int:
        return len(self.pitch) // STEPS_PER_BAR


class SkipTune(Exception):
    """A tune that does not fit the encoding; the message is the reason."""


def corpus_root() -> Path:
    """music21's corpus folder."""
    from music21 import common

    return Path(common.getCorpusFilePath())


def split_tunes(text: str) -> list[tuple[str, str]]:
    """An ABC file's tunes as (X number, the tune's text from its ``X:`` line on)."""
    # The corpus's files carry no file header before the first X:, so none is copied in.
    blocks = re.split(r"(?m)^X:", text)[1:]
    return [(b.split("\n", 1)[0].strip(), "X:" + b) for b in blocks]


def has_chord_text(tune_text: str) -> bool:
    """Whether a tune's body (not its header fields or comments) quotes a chord-like name."""
    body = (ln.split("%", 1)[0] for ln in tune_text.splitlines() if not _FIELD.match(ln))
    return any(_CHORDISH.search(ln) for ln in body)


def written_meters(tune_text: str) -> list[str]:
    """The meters a tune's ``M:`` fields (inline ``[M:...]`` too) give, sorted; C is 4/4, C| 2/2.

    Read from the text, not from music21, which adds a time signature such as 1/8 for
    every measure that does not add up.

    >>> written_meters("X:1\\nM:C|\\nK:G\\nGABc|[M:3/4]def|")
    ['2/2', '3/4']
    """
    fields = re.findall(r"(?m)^M:([^%\n]*)|\[M:([^\]]*)\]", tune_text)
    spelled = {(a or b).strip().replace(" ", "") for a, b in fields}
    return sorted({"C": "4/4", "C|": "2/2"}.get(m, m) for m in spelled if m)


def parse_tune(text: str, name: str = "tune") -> FolkTune:
    """Parse one ABC tune's text; raise SkipTune(reason) if it does not fit."""
    from music21 import bar, converter, harmony, stream

    if not has_chord_text(text):
        raise SkipTune("no chord symbols")
    meters = written_meters(text)
    if not meters or not set(meters) <= METERS:
        raise SkipTune(f"meter {'+'.join(meters) or 'none'}")
    try:
        score = converter.parseData(text, format="abc")
    except Exception as e:  # music21 raises all sorts on malformed ABC
        raise SkipTune(f"music21 failed: {type(e).__name__}") from e
    if isinstance(score, stream.Opus):  # more than one X: in the text: the first
        score = score.scores[0]
    parts = list(score.parts) if isinstance(score, stream.Score) else [score]
    if len(parts) != 1:
        raise SkipTune(f"{len(parts)} parts")
    measures = list(parts[0].getElementsByClass(stream.Measure))
    lengths = [_step(m.duration.quarterLength) for m in measures]
    if not measures or max(lengths) > STEPS_PER_BAR:
        raise SkipTune("no measures" if not measures else "a measure longer than a bar")
    closes = [_closes(m.rightBarline, bar) for m in measures]

    notes: list[Note] = []
    symbols: list[tuple[int, Any]] = []  # (step, music21 ChordSymbol)
    for m, start in zip(measures, layout(lengths, closes)):
        flat = m.flatten()  # offsets relative to the measure, voices merged
        symbols += [
            (start + _step(cs.offset), cs) for cs in flat.getElementsByClass(harmony.Harmony)
        ]
        for n in flat.notes:
            if isinstance(n, harmony.Harmony) or n.duration.isGrace:
                continue  # a chord symbol is a music21 chord; ornaments would steal a step
            on = start + _step(n.offset)
            off = max(start + _step(n.offset + n.duration.quarterLength), on + 1)
            top = max(p.midi for p in n.pitches)  # a double stop: its top note is the tune
            if n.tie is not None and n.tie.type != "start" and notes and notes[-1].pitch == top:
                notes[-1] = replace(notes[-1], end=off)  # tied on across a bar line
            else:
                notes.append(Note(top, on, off))
    if not notes:
        raise SkipTune("no notes")
    n_steps = -(-max(n.end for n in notes) // STEPS_PER_BAR) * STEPS_PER_BAR
    if n_steps // STEPS_PER_BAR < MIN_BARS:
        raise SkipTune(f"fewer than {MIN_BARS} bars")
    pitch, onset = notes_to_voice(notes, n_steps)
    sounding = pitch[pitch != REST]
    if sounding.min() < LOW or sounding.max() > HIGH:
        raise SkipTune(f"pitch outside {LOW}..{HIGH}")

    events: list[tuple[int, Chord]] = []
    unparsed: list[str] = []
    for step, cs in sorted(symbols, key=lambda s: s[0]):
        figure = _figure(cs, harmony)
        if figure is None:
            continue
        try:
            events.append((step, Chord.parse(figure)))
        except UserError:
            unparsed.append(figure)
            events.append((step, NONE))  # the harmony changed to one we cannot name
    named = {c.token for _, c in events if c.token != NO_CHORD}
    if not events:
        raise SkipTune("no chord symbols")
    if len(named) < MIN_CHORDS:
        raise SkipTune(f"fewer than {MIN_CHORDS} distinct chords")
    if len(events) * 4 < n_steps // STEPS_PER_BAR:
        raise SkipTune("chord symbols on under a quarter of the bars")
    chords, bass = _cells(events, n_steps // CHORD_STEPS)
    title = str(score.metadata.title or "") if score.metadata is not None else ""
    return FolkTune(name, title, pitch, onset, chords, bass, tuple(unparsed))


def layout(lengths: Sequence[int], closes: Sequence[bool]) -> list[int]:
    """Each measure's first step, from the measures' lengths in steps and whether each ends
    a strain (a repeat end or a double or final bar line); see the module docstring.

    >>> layout([4, 16, 12, 4, 16], [False] * 5)  # a pickup; a bar split by a repeat sign
    [12, 16, 32, 44, 48]
    >>> layout([4, 16, 12, 16], [False, False, True, False])  # a first and a second ending
    [12, 16, 32, 48]
    """
    starts: list[int] = []
    cursor = 0
    for i, (length, closing) in enumerate(zip(lengths, closes)):
        bar_line = -(-cursor // STEPS_PER_BAR) * STEPS_PER_BAR
        in_bar = cursor % STEPS_PER_BAR
        leads_in = i + 1 < len(lengths) and lengths[i + 1] >= STEPS_PER_BAR and not closing
        if length == 0 or (length < STEPS_PER_BAR and in_bar and in_bar + length <= STEPS_PER_BAR):
            start = cursor  # nothing to place, or the rest of a bar another measure began
        elif length < STEPS_PER_BAR and leads_in:
            start = bar_line + STEPS_PER_BAR - length  # an anacrusis ends on the bar line
        else:
            start = bar_line
        starts.append(start)
        cursor = start + length
    return starts


def _closes(barline: Any, bar: Any) -> bool:
    """Whether a measure's right bar line ends a strain: a repeat end, a double or final bar."""
    if barline is None:
        return False
    if isinstance(barline, bar.Repeat):
        return bool(barline.direction == "end")
    return barline.type not in ("regular", "dashed", "dotted", "none", "short", "tick")


def _figure(cs: Any, harmony: Any) -> str | None:
    """A music21 chord symbol's name as Chord.parse reads it; None for text that is no chord."""
    if isinstance(cs, harmony.NoChord):
        return "N"
    figure = str(cs.figure or "")
    if not figure or figure[0] not in "ABCDEFG":  # lower case: forte, fingering, a note
        return None
    # music21 spells flats "-" (Bb -> B-) and ABC writes slash basses in lower case (Am/c).
    figure = re.sub(r"([A-Ga-g])-", r"\1b", figure)
    head, slash, bass = figure.partition("/")
    return head + slash + bass[:1].upper() + bass[1:]


def _cells(events: Sequence[tuple[int, Chord]], n_cells: int) -> tuple[np.ndarray, np.ndarray]:
    """Per half bar, the token and slash bass of the last chord at or before its first step."""
    steps = np.array([s for s, _ in events])
    tokens = np.array([c.token for _, c in events] + [NO_CHORD], np.int16)
    basses = np.array([-1 if c.bass is None else c.bass for _, c in events] + [-1], np.int8)
    # Index -1 (before the first symbol) picks the NO_CHORD/-1 sentinel at the end.
    which = np.searchsorted(steps, np.arange(n_cells) * CHORD_STEPS, side="right") - 1
    return tokens[which], basses[which]


def _step(quarters: float) -> int:  # music21 offsets may be Fractions
    return round(float(quarters) * STEPS_PER_BEAT)


def _parse_or_reason(item: tuple[str, str]) -> FolkTune | str:
    name, text = item
    try:
        return parse_tune(text, name)
    except SkipTune as e:
        return str(e)


def parse_file(path: Path, collection: str | None = None) -> dict[str, FolkTune | str]:
    """Every tune of one ABC file, by name, as a FolkTune or the reason it was skipped.

    ``collection`` names the tunes (default: the file's folder).
    """
    prefix = f"{collection or path.parent.name}/{path.stem}"
    tunes = split_tunes(path.read_text(encoding="utf-8", errors="replace"))
    return {f"{prefix}/{x}": _parse_or_reason((f"{prefix}/{x}", t)) for x, t in tunes}


def corpus_tunes() -> list[tuple[str, str]]:
    """(name, ABC text) of every tune in the corpus's folk collections, in file order."""
    root = corpus_root()
    items = []
    for collection in COLLECTIONS:
        for path in sorted((root / collection).glob("**/*.abc")):
            text = path.read_text(encoding="utf-8", errors="replace")
            items += [(f"{collection}/{path.stem}/{x}", t) for x, t in split_tunes(text)]
    return items


def cache_path(cache_dir: Path | None = None) -> Path:
    """The folk cache's file in ``cache_dir`` (default: :func:`default_cache_dir`)."""
    # Keyed by the music21 version too: a new corpus or parser may change the data.
    m21 = importlib.metadata.version("music21")
    return (cache_dir or default_cache_dir()) / f"folk-v{CACHE_VERSION}-music21-{m21}.npz"


def load_tunes(cache_dir: Path | None = None, workers: int = 2) -> list[FolkTune]:
    """All usable tunes, parsed once with `workers` processes and cached after."""
    path = cache_path(cache_dir)
    if path.exists():
        tunes, skipped = _read_cache(path)
        _log_summary(tunes, skipped, f"loaded from {path}")
        return tunes

    t0 = time.perf_counter()
    items = corpus_tunes()
    # The cheap text test first: most tunes quote no chord, and need no music21 at all.
    candidates = [item for item in items if has_chord_text(item[1])]
    with Pool(workers) as pool:
        parsed = dict(zip((n for n, _ in candidates), pool.map(_parse_or_reason, candidates)))
    results = [parsed.get(name, "no chord symbols") for name, _ in items]
    tunes = [r for r in results if isinstance(r, FolkTune)]
    skipped = {n: r for (n, _), r in zip(items, results) if isinstance(r, str)}
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_cache(path, tunes, skipped)
    took = time.perf_counter() - t0
    _log_summary(tunes, skipped, f"parsed in {took:.1f} s ({len(candidates)} through music21)")
    return tunes


def _write_cache(path: Path, tunes: Sequence[FolkTune], skipped: dict[str, str]) -> None:
    # One concatenated array per field plus lengths: far faster to load than one per tune.
    def joined(arrays: list[np.ndarray], dtype: type) -> np.ndarray:
        return np.concatenate(arrays) if arrays else np.zeros(0, dtype)

    with atomic_open(path) as f:
        np.savez_compressed(
            f,
            cache_version=np.array(CACHE_VERSION),
            music21=np.array(importlib.metadata.version("music21")),
            names=np.array([t.name for t in tunes], dtype=str),
            titles=np.array([t.title for t in tunes], dtype=str),
            lengths=np.array([len(t.pitch) for t in tunes], dtype=np.int64),
            pitch=joined([t.pitch for t in tunes], np.int16),
            onset=joined([t.onset for t in tunes], bool),
            chords=joined([t.chords for t in tunes], np.int16),
            bass=joined([t.bass for t in tunes], np.int8),
            unparsed=np.array([_SPLIT.join(t.unparsed) for t in tunes], dtype=str),
            skipped_names=np.array(list(skipped), dtype=str),
            skipped_reasons=np.array(list(skipped.values()), dtype=str),
        )


def _read_cache(path: Path) -> tuple[list[FolkTune], dict[str, str]]:
    with np.load(path) as z:
        if int(z["cache_version"]) != CACHE_VERSION:  # the name says so too; a renamed file
            raise ValueError(f"{path}: cache version {int(z['cache_version'])}")
        lengths = z["lengths"]
        steps = np.cumsum(lengths)[:-1]
        cells = np.cumsum(lengths // CHORD_STEPS)[:-1]
        pitch, onset = np.split(z["pitch"], steps), np.split(z["onset"], steps)
        chords, bass = np.split(z["chords"], cells), np.split(z["bass"], cells)
        tunes = [
            FolkTune(str(n), str(t), p, o, c, b, tuple(u.split(_SPLIT)) if u else ())
            for n, t, p, o, c, b, u in zip(
                z["names"], z["titles"], pitch, onset, chords, bass, z["unparsed"].tolist()
            )
        ]
        skipped = dict(zip(z["skipped_names"].tolist(), z["skipped_reasons"].tolist()))
    return tunes, skipped


def _log_summary(tunes: Sequence[FolkTune], skipped: dict[str, str], how: str) -> None:
    bars = sum(t.bars for t in tunes)
    cells = sum(len(t.chords) for t in tunes)
    unparsed = Counter(f for t in tunes for f in t.unparsed)
    reasons = ", ".join(f"{r}: {k}" for r, k in Counter(skipped.values()).most_common())
    n, k = len(tunes), len(skipped)
    bad = dict(unparsed.most_common()) or "none"
    log.info(
        "%d tunes (%d bars, %d chord cells) %s; %d skipped (%s); unparsed chords, kept as no "
        "chord: %s",
        *(n, bars, cells, how, k, reasons, bad),
    )


def title_key(title: str) -> str:
    """A title compared loosely: case, punctuation, "The" and (remarks) ignored.

    >>> title_key("The Cuckoo's Nest (hornpipe)") == title_key("Cuckoos Nest, The")
    True
    """
    text = re.sub(r"\(.*?\)", "", title.lower()).strip()
    text = re.sub(r"^the\s+|,\s*the$", "", text)
    return re.sub(r"[^a-z0-9]", "", text)


def melody_key(tune: FolkTune, length: int = 32) -> tuple[int, ...]:
    """The first `length` intervals of the melody: the same in any key and any rhythm."""
    pitches = [n.pitch for n in voice_to_notes(tune.pitch, tune.onset)]
    return tuple(np.diff(pitches[: length + 1]).tolist())


def tune_groups(tunes: Sequence[FolkTune]) -> list[list[str]]:
    """Tune names grouped by tune, in corpus order: the same title (see :func:`title_key`)
    or the same opening (:func:`melody_key`, 16 notes at least) make one tune, closed under
    both relations, since collections print one tune under several titles and one title
    for settings that differ in their second strain."""
    parent = list(range(len(tunes)))  # union-find

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    first: dict[object, int] = {}
    for i, t in enumerate(tunes):
        melody = melody_key(t)
        keys: list[object] = [("title", title_key(t.title))] if title_key(t.title) else []
        keys += [("melody", melody)] if len(melody) >= 15 else []
        for key in keys:
            j = first.setdefault(key, i)
            parent[root(i)] = root(j)
    groups: dict[int, list[str]] = {}
    for i, t in enumerate(tunes):
        groups.setdefault(root(i), []).append(t.name)
    return list(groups.values())


def make_split(tunes: Sequence[FolkTune], seed: int = 0) -> dict[str, list[str]]:
    """About 80/10/10 by tune, every copy of a tune (see :func:`tune_groups`) in one set."""
    groups = tune_groups(tunes)
    np.random.default_rng(seed).shuffle(groups)
    split: dict[str, list[str]] = {"train": [], "validation": [], "test": []}
    tenth = len(tunes) // 10
    for names in groups:  # fill test, then validation, to a tenth each; the rest trains
        subset = next((k for k in ("test", "validation") if len(split[k]) < tenth), "train")
        split[subset] += names
    return {k: sorted(v) for k, v in split.items()}


def load_split() -> dict[str, list[str]]:
    """The committed split: {"train": [...], "validation": [...], "test": [...]} by tune name."""
    return json.loads(SPLIT_PATH.read_text())


def quality_counts(tunes: Sequence[FolkTune]) -> Counter[str]:
    """How many half-bar cells hold each chord quality ("none" for no chord)."""
    tokens = np.concatenate([t.chords for t in tunes]) if tunes else np.zeros(0, np.int16)
    return Counter(
        "none" if tok == NO_CHORD else Chord.from_token(int(tok)).quality for tok in tokens
    )


def main() -> None:
    """Build the cache (and the split, once) and log each set's size."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    tunes = load_tunes()
    if not SPLIT_PATH.exists():
        SPLIT_PATH.parent.mkdir(exist_ok=True)
        with atomic_open(SPLIT_PATH) as f:
            f.write((json.dumps(make_split(tunes), indent=1) + "\n").encode())
        log.info("wrote %s", SPLIT_PATH)
    by_name = {t.name: t for t in tunes}
    for subset, names in load_split().items():
        kept = [by_name[n] for n in names if n in by_name]
        log.info("%s: %d tunes, %d bars", subset, len(kept), sum(t.bars for t in kept))
    log.info("chord qualities per half bar: %s", dict(quality_counts(tunes).most_common()))


if __name__ == "__main__":
    main()
