"""Objective metrics for generated accompaniment, numpy only (it runs on the Pi too).

Every metric takes lists of :class:`~deepkeys.device.encoding.Note` on the 16th-note
step grid (plus ``n_steps`` where it needs a piano roll) and returns a float; ``nan``
means "undefined here" (no notes, no bars, no overlap), and :func:`mean_metrics`
averages such values away with a nan-mean.

The MuseGAN metrics (Dong et al., AAAI 2018) are EB, UPC, QN, DP and TD. MuseGAN
works at 96 steps a bar; deepkeys works at 16, so QN and DP use coarser thresholds,
explained in their docstrings. The other metrics are deepkeys' own: polyphony,
Krumhansl–Kessler key estimation, in-key ratio and melody/accompaniment consonance.

A trailing partial bar (``n_steps`` not a multiple of ``steps_per_bar``) counts as a
bar; its missing steps are silent.

>>> chord = [Note(60, 0, 16), Note(64, 0, 16), Note(67, 0, 16)]
>>> empty_bar_rate(chord, 32), used_pitch_classes(chord, 32), polyphony(chord, 32)
(0.5, 3.0, 3.0)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from itertools import combinations

import numpy as np

from deepkeys.device.encoding import STEPS_PER_BAR, Note, notes_to_roll

__all__ = [
    "MAJOR_PROFILE",
    "MINOR_PROFILE",
    "TONAL_MATRIX",
    "consonance",
    "drum_pattern_rate",
    "empty_bar_rate",
    "estimate_key",
    "in_key_ratio",
    "mean_metrics",
    "polyphony",
    "qualified_note_rate",
    "scale_pitch_classes",
    "summarize",
    "tonal_distance",
    "used_pitch_classes",
    "why_undefined",
]

NAN = float("nan")

# Krumhansl & Kessler (1982) key profiles, index 0 = tonic.
MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])

MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
# Natural minor plus the raised 7th: chorales use harmonic minor cadences.
MINOR_SCALE = (0, 2, 3, 5, 7, 8, 10, 11)

# Interval classes |m - a| mod 12 that count as consonant: unison/octave, thirds,
# sixths, perfect fourth and fifth. The set is closed under d -> 12 - d, so the
# signed (m - a) mod 12 gives the same answer.
CONSONANT_INTERVALS = frozenset({0, 3, 4, 5, 7, 8, 9})
_PC_DIFF = (np.arange(12)[:, None] - np.arange(12)[None, :]) % 12
_CONSONANT = np.isin(_PC_DIFF, sorted(CONSONANT_INTERVALS))


def _tonal_matrix(r1: float = 1.0, r2: float = 1.0, r3: float = 0.5) -> np.ndarray:
    """Harte, Sandler & Gasser (2006) 6x12 tonal-centroid projection.

    Rows: circle of fifths (angle 7*pi/6 per semitone, radius r1), circle of minor
    thirds (3*pi/2, r2), circle of major thirds (2*pi/3, r3), each as (sin, cos).
    This is the matrix MuseGAN and pypianoroll use.
    """
    pc = np.arange(12)
    rows = []
    for radius, angle in ((r1, 7 / 6), (r2, 3 / 2), (r3, 2 / 3)):
        rows.append(radius * np.sin(pc * angle * np.pi))
        rows.append(radius * np.cos(pc * angle * np.pi))
    return np.array(rows)


TONAL_MATRIX = _tonal_matrix()


def _key_profiles() -> np.ndarray:
    """(2, 12, 12): [mode, tonic, pitch class], centred and scaled to unit norm, so a
    dot product with a centred, unit-norm histogram is Pearson's correlation."""
    profiles = np.stack(
        [np.stack([np.roll(p, k) for k in range(12)]) for p in (MAJOR_PROFILE, MINOR_PROFILE)]
    )
    profiles = profiles - profiles.mean(axis=2, keepdims=True)
    return profiles / np.linalg.norm(profiles, axis=2, keepdims=True)


_KEY_PROFILES = _key_profiles()


# ---------------------------------------------------------------- helpers


def _roll(notes: Iterable[Note], n_steps: int) -> np.ndarray:
    return notes_to_roll(notes, n_steps)


def _chroma(roll: np.ndarray) -> np.ndarray:
    """(T, 128) bool roll -> (T, 12) int counts of sounding pitches per pitch class."""
    n_steps, n_pitches = roll.shape
    pad = (-n_pitches) % 12
    padded = np.pad(roll, ((0, 0), (0, pad))) if pad else roll
    return padded.reshape(n_steps, padded.shape[1] // 12, 12).sum(axis=1)


def _bar_chroma(roll: np.ndarray, steps_per_bar: int) -> np.ndarray:
    """(T, 128) roll -> (n_bars, 12) duration-weighted chroma per bar."""
    chroma = _chroma(roll)
    pad = (-chroma.shape[0]) % steps_per_bar
    if pad:
        chroma = np.pad(chroma, ((0, pad), (0, 0)))
    return chroma.reshape(chroma.shape[0] // steps_per_bar, steps_per_bar, 12).sum(axis=1)


def _eb(bar_chroma: np.ndarray) -> float:
    if len(bar_chroma) == 0:
        return NAN
    return float(np.mean(bar_chroma.sum(axis=1) == 0))


def _upc(bar_chroma: np.ndarray) -> float:
    used = (bar_chroma > 0).sum(axis=1)
    used = used[used > 0]
    return float(used.mean()) if len(used) else NAN


def _td(bar_chroma_a: np.ndarray, bar_chroma_b: np.ndarray) -> float:
    sum_a = bar_chroma_a.sum(axis=1, keepdims=True)
    sum_b = bar_chroma_b.sum(axis=1, keepdims=True)
    both = (sum_a[:, 0] > 0) & (sum_b[:, 0] > 0)
    if not both.any():
        return NAN
    centroid_a = (bar_chroma_a[both] / sum_a[both]) @ TONAL_MATRIX.T
    centroid_b = (bar_chroma_b[both] / sum_b[both]) @ TONAL_MATRIX.T
    return float(np.linalg.norm(centroid_a - centroid_b, axis=1).mean())


def _polyphony(roll: np.ndarray) -> float:
    count = roll.sum(axis=1)
    count = count[count > 0]
    return float(count.mean()) if len(count) else NAN


def _consonance(melody_roll: np.ndarray, accomp_roll: np.ndarray) -> float:
    # pairs[i, j]: number of (step, melody pitch, accompaniment pitch) triples whose
    # pitch classes are (i, j). Steps without melody contribute nothing.
    pairs = _chroma(melody_roll).T @ _chroma(accomp_roll)
    total = pairs.sum()
    return float(pairs[_CONSONANT].sum() / total) if total else NAN


def _pc_histogram(notes: Iterable[Note]) -> np.ndarray:
    hist = np.zeros(12)
    for note in notes:
        if note.length > 0:
            hist[note.pitch % 12] += note.length
    return hist


# ---------------------------------------------------------------- MuseGAN metrics


def empty_bar_rate(
    notes: Sequence[Note], n_steps: int, steps_per_bar: int = STEPS_PER_BAR
) -> float:
    """EB: the share of bars in which no note sounds (nan when there are no bars).

    >>> empty_bar_rate([Note(60, 0, 4), Note(62, 40, 44)], 64)  # bars 1 and 3 empty
    0.5
    """
    return _eb(_bar_chroma(_roll(notes, n_steps), steps_per_bar))


def used_pitch_classes(
    notes: Sequence[Note], n_steps: int, steps_per_bar: int = STEPS_PER_BAR
) -> float:
    """UPC: the mean number of distinct pitch classes sounding in a bar, over the
    bars that are not empty (nan when all are).

    A pitch class counts in a bar if any note of that class sounds there, held-over
    notes included; octaves count once.

    >>> upc = used_pitch_classes([Note(60, 0, 8), Note(72, 8, 20), Note(64, 16, 32)], 48)
    >>> upc  # bar 0: {C}; bar 1: {C, E}; bar 2 empty
    1.5
    """
    return _upc(_bar_chroma(_roll(notes, n_steps), steps_per_bar))


def qualified_note_rate(notes: Sequence[Note], min_steps: int = 2) -> float:
    """QN: the share of notes lasting at least ``min_steps`` steps (nan if no notes).

    MuseGAN counts notes of at least 3 steps at 96 steps a bar, i.e. a 32nd note.
    On our 16th-note grid every note would qualify, so the default here is 2 steps,
    an 8th note: QN then measures how much of the part is not 16th-note fragments.

    >>> qualified_note_rate([Note(60, 0, 1), Note(62, 1, 3), Note(64, 3, 7)])
    0.6666666666666666
    """
    if not notes:
        return NAN
    return sum(note.length >= min_steps for note in notes) / len(notes)


def drum_pattern_rate(notes: Sequence[Note], steps_per_bar: int = STEPS_PER_BAR) -> float:
    """DP: the share of drum onsets that fall on the 8th-note grid (nan if none).

    MuseGAN checks drum onsets against an 8- or 16-beat grid at 96 steps a bar. On
    our 16th-note grid the 16-beat grid is every step, so it would always give 1;
    we use the 8th-note grid, i.e. every ``steps_per_bar // 8`` steps (even steps).

    >>> drum_pattern_rate([Note(36, 0, 1), Note(38, 2, 3), Note(42, 3, 4)])
    0.6666666666666666
    """
    if not notes:
        return NAN
    every = max(steps_per_bar // 8, 1)
    return sum(note.start % every == 0 for note in notes) / len(notes)


def tonal_distance(
    notes_a: Sequence[Note],
    notes_b: Sequence[Note],
    n_steps: int,
    steps_per_bar: int = STEPS_PER_BAR,
) -> float:
    """TD: Harte et al. (2006) tonal-centroid distance between two parts, as MuseGAN
    computes it, averaged over the bars in which both parts sound (nan if none).

    Per bar and part: the duration-weighted chroma (steps each pitch class sounds,
    octaves added), normalised to sum 1, is projected with :data:`TONAL_MATRIX` to a
    6-d tonal centroid (fifths, minor thirds, major thirds); the bar's distance is
    the Euclidean distance between the two centroids. Lower means the parts agree
    more in harmony: 0 for the same pitch-class mix, 2*sqrt(2) for a lone pitch
    class against its tritone.

    (MuseGAN's own ``to_chroma`` reshapes 84 pitches as (12, 7), which groups
    neighbouring pitches rather than pitch classes; we use true pitch classes, as
    pypianoroll does.)

    >>> round(tonal_distance([Note(60, 0, 16)], [Note(66, 0, 16)], 16), 4)  # C vs F#
    2.8284
    >>> tonal_distance([Note(60, 0, 16)], [Note(48, 0, 8)], 16)  # same pitch class
    0.0
    """
    return _td(
        _bar_chroma(_roll(notes_a, n_steps), steps_per_bar),
        _bar_chroma(_roll(notes_b, n_steps), steps_per_bar),
    )


# ---------------------------------------------------------------- deepkeys metrics


def polyphony(notes: Sequence[Note], n_steps: int) -> float:
    """The mean number of pitches sounding at the steps where at least one sounds
    (muspy's ``polyphony``); nan if nothing sounds.

    >>> polyphony([Note(60, 0, 4), Note(64, 0, 4), Note(67, 2, 4)], 8)  # 2, 2, 3, 3
    2.5
    """
    return _polyphony(_roll(notes, n_steps))


def estimate_key(notes: Sequence[Note]) -> tuple[int, str]:
    """Krumhansl–Kessler key finding: correlate the duration-weighted pitch-class
    histogram with the 24 rotated major and minor profiles; return the best
    ``(tonic pitch class, "major" | "minor")``.

    Ties go to the lower tonic and to major; a histogram with no information (no
    notes, or all 12 classes equally long) gives ``(0, "major")``.

    >>> scale = [60, 62, 64, 65, 67, 69, 71, 72]
    >>> estimate_key([Note(p, 2 * i, 2 * i + 2) for i, p in enumerate(scale)])
    (0, 'major')
    """
    hist = _pc_histogram(notes)
    hist = hist - hist.mean()
    norm = np.linalg.norm(hist)
    if norm == 0:
        return 0, "major"
    # profiles[m, k, p]: weight of pitch class p in mode m with tonic k.
    corr = _KEY_PROFILES @ hist / norm
    mode, tonic = np.unravel_index(int(np.argmax(corr)), corr.shape)
    return int(tonic), ("major", "minor")[int(mode)]


def scale_pitch_classes(key: tuple[int, str]) -> frozenset[int]:
    """The pitch classes of a key's scale: the major scale, or for minor the natural
    minor plus the raised 7th (8 classes, as in harmonic-minor chorale writing).

    >>> sorted(scale_pitch_classes((9, "minor")))
    [0, 2, 4, 5, 7, 8, 9, 11]
    """
    tonic, mode = key
    if mode not in ("major", "minor"):
        raise ValueError(f"mode must be 'major' or 'minor', not {mode!r}")
    steps = MAJOR_SCALE if mode == "major" else MINOR_SCALE
    return frozenset((tonic + s) % 12 for s in steps)


def in_key_ratio(notes: Sequence[Note], key: tuple[int, str]) -> float:
    """The duration-weighted share of note-steps whose pitch class is in ``key``'s
    scale (see :func:`scale_pitch_classes`); nan if there are no note-steps.

    >>> in_key_ratio([Note(60, 0, 6), Note(61, 6, 8)], (0, "major"))  # C# is out
    0.75
    """
    hist = _pc_histogram(notes)
    total = hist.sum()
    if total == 0:
        return NAN
    return float(hist[sorted(scale_pitch_classes(key))].sum() / total)


def consonance(
    melody_notes: Sequence[Note], accompaniment_notes: Sequence[Note], n_steps: int
) -> float:
    """The share of consonant (step, melody pitch, accompaniment pitch) combinations.

    At every step where the melody sounds, each accompaniment pitch sounding then is
    paired with each melody pitch; a pair is consonant if ``|m - a| mod 12`` is in
    {0, 3, 4, 5, 7, 8, 9} (unisons, octaves, thirds, sixths, fourths, fifths). nan if
    there are no pairs.

    >>> consonance([Note(72, 0, 4)], [Note(60, 0, 4), Note(66, 2, 4)], 4)  # C-C x4, C-F# x2
    0.6666666666666666
    """
    return _consonance(_roll(melody_notes, n_steps), _roll(accompaniment_notes, n_steps))


# ---------------------------------------------------------------- summaries


def summarize(
    melody: Sequence[Note],
    parts: Mapping[str, Sequence[Note]],
    n_steps: int,
    drum_parts: Iterable[str] = (),
    steps_per_bar: int = STEPS_PER_BAR,
) -> dict[str, float]:
    """All metrics of one window as a flat dict.

    Keys: ``EB/<part>`` for every part; ``UPC/<part>`` and ``QN/<part>`` for pitched
    parts; ``DP/<part>`` for drum parts; ``polyphony`` of all pitched parts together;
    ``in_key``: the pitched parts' notes against the key estimated from the melody
    (nan if the melody is silent); ``consonance``: melody against all pitched parts;
    ``TD/<a>-<b>`` for each pair of pitched parts, in ``parts`` order.

    >>> m = [Note(72, 0, 16)]
    >>> parts = {"bass": [Note(48, 0, 16)], "drums": [Note(36, 0, 1)]}
    >>> s = summarize(m, parts, 32, drum_parts=("drums",))
    >>> s["EB/bass"], s["UPC/bass"], s["DP/drums"], s["consonance"], s["in_key"]
    (0.5, 1.0, 1.0, 1.0, 1.0)
    """
    drums = set(drum_parts)
    out: dict[str, float] = {}
    pitched_rolls: dict[str, np.ndarray] = {}
    pitched_bars: dict[str, np.ndarray] = {}
    pitched_notes: list[Note] = []
    for name, notes in parts.items():
        roll = _roll(notes, n_steps)
        bars = _bar_chroma(roll, steps_per_bar)
        out[f"EB/{name}"] = _eb(bars)
        if name in drums:
            out[f"DP/{name}"] = drum_pattern_rate(notes, steps_per_bar)
            continue
        out[f"UPC/{name}"] = _upc(bars)
        out[f"QN/{name}"] = qualified_note_rate(notes)
        pitched_rolls[name] = roll
        pitched_bars[name] = bars
        pitched_notes.extend(notes)

    accomp_roll = (
        np.logical_or.reduce(list(pitched_rolls.values()))
        if pitched_rolls
        else np.zeros((n_steps, 128), dtype=bool)
    )
    out["polyphony"] = _polyphony(accomp_roll)
    melody_weight = _pc_histogram(melody).sum()
    out["in_key"] = in_key_ratio(pitched_notes, estimate_key(melody)) if melody_weight else NAN
    out["consonance"] = _consonance(_roll(melody, n_steps), accomp_roll)
    for a, b in combinations(pitched_bars, 2):
        out[f"TD/{a}-{b}"] = _td(pitched_bars[a], pitched_bars[b])
    return out


def mean_metrics(summaries: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Average metric dicts key by key, ignoring nan and missing values (a key with
    no value anywhere averages to nan). Keys keep their first-seen order.

    >>> nan = float("nan")
    >>> mean_metrics([{"EB/bass": 0.5, "TD/a-b": nan}, {"EB/bass": 0.0, "TD/a-b": 1.0}])
    {'EB/bass': 0.25, 'TD/a-b': 1.0}
    """
    values: dict[str, list[float]] = {}
    for summary in summaries:
        for key, value in summary.items():
            bucket = values.setdefault(key, [])
            if value is not None and not math.isnan(value):
                bucket.append(float(value))
    return {key: (sum(vals) / len(vals) if vals else NAN) for key, vals in values.items()}


# Why a headline metric (a mean over windows) is nan: its input was missing in every window.
UNDEFINED_WHEN = {
    "EB": "no bars",
    "UPC": "no pitched note",
    "QN": "no pitched note",
    "polyphony": "no pitched note",
    "in_key": "no pitched note",
    "consonance": "no pitched note",
    "TD": "no bar in which two pitched parts sound",
    "DP": "no drum hit",
}


def why_undefined(row: Mapping[str, float]) -> str | None:
    """One line naming the nan metrics of ``row`` (means over windows) and why each is
    undefined; None when every metric it has is defined.

    >>> why_undefined({"EB": 1.0, "UPC": NAN, "QN": NAN, "DP": 0.5})
    'UPC, QN undefined: no pitched note in any window'
    """
    groups: dict[str, list[str]] = {}
    for key, reason in UNDEFINED_WHEN.items():
        value = row.get(key)
        if value is not None and math.isnan(value):
            groups.setdefault(reason, []).append(key)
    if not groups:
        return None
    return "; ".join(
        f"{', '.join(keys)} undefined: {reason} in any window" for reason, keys in groups.items()
    )
