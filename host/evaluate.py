"""Musical quality of a genre model on held-out windows.

Three accompaniments are scored against the same melodies with the same metrics
(``deepkeys.host.metrics``): the model's (decoded as the device decodes it), the
real one from the data, and a baseline that pairs each melody with the
accompaniment of a window from another piece.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from deepkeys.device.encoding import DEFAULT_DRUM_NOTES, Note, voice_to_notes
from deepkeys.device.generation.decode import decode_track
from deepkeys.device.log import kv
from deepkeys.host import metrics

if TYPE_CHECKING:  # annotations only: the scoring itself needs numpy alone
    from deepkeys.host.data.windows import Windows
    from deepkeys.host.model import GeneratorConfig

log = logging.getLogger("deepkeys.evaluate")

# The headline metrics, averaged over a model's tracks where they are per track.
HEADLINE = ("EB", "UPC", "QN", "DP", "polyphony", "in_key", "consonance", "TD")

Parts = dict[str, list[Note]]


def decode_outputs(
    outputs: dict[str, np.ndarray],
    kinds: dict[str, str],
    pitch_low: int,
    temperature: float = 0.0,
    seed: int = 0,
    drum_notes: Sequence[int] = DEFAULT_DRUM_NOTES,
    thresholds: dict[str, float] | None = None,
) -> list[Parts]:
    """Batched model outputs (N, ...) -> per window, the notes of each track, decoded
    exactly as the device decodes them (``thresholds``: the card's, per track)."""
    rng = np.random.default_rng(seed)
    n = len(next(iter(outputs.values())))
    thresholds = thresholds or {}
    return [
        {
            name: decode_track(
                kind,
                outputs[name][i],
                outputs[f"{name}_onset"][i] if kind != "drums" else None,
                pitch_low,
                temperature,
                rng,
                tuple(drum_notes),
                thresholds.get(name, 0.5),
            )
            for name, kind in kinds.items()
        }
        for i in range(n)
    ]


def roll_to_notes(roll: np.ndarray, onset: np.ndarray) -> list[Note]:
    """A polyphonic part (T, 128) with chord onsets (T,) -> notes; a chord onset
    re-attacks every pitch sounding there.

    >>> roll = np.zeros((4, 128), bool); roll[:, 60] = True
    >>> roll_to_notes(roll, np.array([1, 0, 1, 0], bool))
    [Note(pitch=60, start=0, end=2, velocity=96), Note(pitch=60, start=2, end=4, velocity=96)]
    """
    notes = []
    for pitch in np.flatnonzero(roll.any(axis=0)):
        voice = np.where(roll[:, pitch], pitch, -1).astype(np.int16)
        notes.extend(voice_to_notes(voice, onset & roll[:, pitch]))
    return sorted(notes, key=lambda n: (n.start, n.pitch))


def true_parts(
    windows: Windows, kinds: dict[str, str], drum_notes: Sequence[int] = DEFAULT_DRUM_NOTES
) -> list[Parts]:
    """The real accompaniment of each window, as notes."""
    names = {kind: [n for n, k in kinds.items() if k == kind] for kind in ("mono", "poly", "drums")}
    out = []
    for i in range(len(windows)):
        parts: Parts = {}
        for v, name in enumerate(names["mono"]):
            parts[name] = voice_to_notes(windows.mono_pitch[i, v], windows.mono_onset[i, v])
        for v, name in enumerate(names["poly"]):
            parts[name] = roll_to_notes(windows.poly[i, v], windows.poly_onset[i, v])
        for v, name in enumerate(names["drums"]):
            steps, classes = np.nonzero(windows.drums[i, v])
            parts[name] = [
                Note(int(drum_notes[k]), s, s + 1) for s, k in zip(steps.tolist(), classes.tolist())
            ]
        out.append({name: parts[name] for name in kinds})
    return out


def score(
    melody_pitch: np.ndarray,
    melody_onset: np.ndarray,
    parts: list[Parts],
    drum_names: Sequence[str] = (),
) -> dict[str, float]:
    """Mean metrics over windows: melodies (N, T) and each window's parts."""
    steps = melody_pitch.shape[-1]
    rows = [
        metrics.summarize(
            voice_to_notes(melody_pitch[i], melody_onset[i]), parts[i], steps, drum_parts=drum_names
        )
        for i in range(len(parts))
    ]
    return headline(metrics.mean_metrics(rows))


def headline(row: dict[str, float]) -> dict[str, float]:
    """Per-track and per-pair metrics averaged into the headline names, keeping the rest."""
    out = dict(row)
    for key in HEADLINE:
        values = [v for k, v in row.items() if k.startswith(f"{key}/")]
        if values:
            out[key] = float(np.nanmean(values))
    return out


def window_metrics(
    windows: Windows, outputs: dict[str, np.ndarray], cfg: GeneratorConfig
) -> dict[str, float]:
    """Validation metrics of decoded tracks, with polyphony relative to the data's."""
    kinds = cfg.kinds()
    drums = [n for n, k in kinds.items() if k == "drums"]
    gen = score(
        windows.melody_pitch,
        windows.melody_onset,
        decode_outputs(outputs, kinds, cfg.pitch_low),
        drums,
    )
    real = score(windows.melody_pitch, windows.melody_onset, true_parts(windows, kinds), drums)
    out = {k: gen[k] for k in HEADLINE if k in gen}
    out["polyphony_ratio"] = gen["polyphony"] / real["polyphony"] if real["polyphony"] else 0.0
    why = metrics.why_undefined(out)
    if why:  # a nan in the epoch's line says nothing by itself
        log.warning(
            "validation metrics: %s of the %d decoded at threshold 0.5 (export calibrates "
            "the card's thresholds)",
            why,
            len(windows),
        )
    return out


def shuffled(parts: list[Parts], names: Sequence[str]) -> list[Parts]:
    """Each window's accompaniment taken from the window half the set away, or, where
    that one is from the same piece, from the next after it that is not: every melody
    gets the accompaniment of another piece, real music with unrelated harmony. (While
    no piece holds half the windows, that is always the window half the set away.)

    Raises ``ValueError`` when every window is from one piece.
    """
    n = len(parts)
    if len(set(names)) < 2:
        raise ValueError(
            f"every one of the {n} windows is from one piece ({names[0] if n else '-'}): "
            "no other piece's accompaniment to pair a melody with"
        )
    order = []
    for i in range(n):
        j = (i + n // 2) % n
        while names[j] == names[i]:
            j = (j + 1) % n
        order.append(j)
    return [parts[j] for j in order]


def evaluate_table(
    windows: Windows,
    kinds: dict[str, str],
    generate: Callable[[np.ndarray, np.ndarray], list[Parts]],
    drum_notes: Sequence[int] = DEFAULT_DRUM_NOTES,
) -> dict[str, dict[str, float]]:
    """Rows: generated, real, shuffled. ``generate(melody_pitch, melody_onset)`` returns
    each window's parts. Without a shuffled baseline (every window from one piece) the
    table has the other two rows and one warning line says why."""
    drums = [n for n, k in kinds.items() if k == "drums"]
    real = true_parts(windows, kinds, drum_notes)
    m_pitch, m_onset = windows.melody_pitch, windows.melody_onset
    table = {
        "generated": score(m_pitch, m_onset, generate(m_pitch, m_onset), drums),
        "real": score(m_pitch, m_onset, real, drums),
    }
    try:
        table["shuffled"] = score(m_pitch, m_onset, shuffled(real, windows.names), drums)
    except ValueError as exc:
        log.warning(kv(baseline="none", reason=str(exc)))
    return table


def format_table(rows: dict[str, dict[str, float]], keys: Sequence[str] = HEADLINE) -> str:
    """A Markdown table, one row per accompaniment, one column per metric."""
    lines = ["| accompaniment | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for name, row in rows.items():
        cells = [f"{row[k]:.3f}" if k in row and np.isfinite(row[k]) else "-" for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# The quality bar of a band genre against MMA's own accompaniment of the same chords.
WITHIN = 0.20  # EB, UPC, QN, DP and TD within 20 % of MMA's
MIN_DP = 0.85  # drums on the 8th grid
CONSONANCE_SLACK = 0.05


def quality_checks(table: dict[str, dict[str, float]]) -> str:
    """PASS/FAIL lines for the quality bar, generated vs the data's ("real") row."""
    gen, real = table["generated"], table["real"]
    lines = []
    for key in ("EB", "UPC", "QN", "DP", "TD"):
        if key in gen and key in real and np.isfinite(real[key]) and real[key]:
            off = (gen[key] - real[key]) / real[key]
            lines.append(
                (
                    f"{key} within {WITHIN:.0%} of the data's",
                    abs(off) <= WITHIN,
                    f"{gen[key]:.3f} vs {real[key]:.3f} ({off:+.0%})",
                )
            )
    if "DP" in gen:
        lines.append(
            (f"drums on the grid (DP) >= {MIN_DP}", gen["DP"] >= MIN_DP, f"{gen['DP']:.3f}")
        )
    lines.append(
        (
            f"consonance >= data's - {CONSONANCE_SLACK}",
            gen["consonance"] >= real["consonance"] - CONSONANCE_SLACK,
            f"{gen['consonance']:.3f} vs {real['consonance']:.3f}",
        )
    )
    return "\n".join(f"{'PASS' if ok else 'FAIL'}  {what}: {detail}" for what, ok, detail in lines)


def style_features(parts: Parts, steps_per_bar: int = 16) -> np.ndarray:
    """Drum and bass (and comping) statistics of one window, for telling genres apart:
    hits per bar of each drum class, where in the bar the drums and the bass play, how
    long bass notes last, and how often the comping attacks."""
    from deepkeys.device.encoding import DRUM_CLASSES, drum_class_of

    drums, bass, comp = parts.get("drums", []), parts.get("bass", []), parts.get("comp", [])
    bars = max(1, max((n.end for p in parts.values() for n in p), default=1) / steps_per_bar)
    per_class = np.zeros(len(DRUM_CLASSES))
    drum_pos = np.zeros(steps_per_bar)
    for n in drums:
        cls = drum_class_of(n.pitch)
        if cls is not None:
            per_class[cls] += 1
        drum_pos[n.start % steps_per_bar] += 1
    bass_pos = np.zeros(steps_per_bar)
    for n in bass:
        bass_pos[n.start % steps_per_bar] += 1
    comp_starts = len({n.start for n in comp})
    bass_len = np.mean([n.length for n in bass]) if bass else 0.0
    return np.concatenate(
        [
            per_class / bars,
            drum_pos / bars,
            bass_pos / bars,
            [len(bass) / bars, bass_len, comp_starts / bars],
        ]
    )


def genre_confusion(real: dict[str, list[Parts]], made: dict[str, list[Parts]]) -> str:
    """Do the genres differ? A nearest-centroid classifier learns each genre from its
    data's accompaniment (standardized :func:`style_features`) and names the genre of
    every generated window; the table is its confusion, rows the true genre."""
    genres = list(real)
    feats = {g: np.array([style_features(p) for p in real[g]]) for g in genres}
    allf = np.concatenate(list(feats.values()))
    mean, std = allf.mean(axis=0), allf.std(axis=0) + 1e-6
    centroids = np.array([((feats[g] - mean) / std).mean(axis=0) for g in genres])
    lines = [
        "| generated \\ classified as | " + " | ".join(genres) + " | accuracy |",
        "|---|" + "---|" * (len(genres) + 1),
    ]
    correct = total = 0
    for i, g in enumerate(genres):
        x = (np.array([style_features(p) for p in made[g]]) - mean) / std
        guess = np.argmin(((x[:, None] - centroids[None]) ** 2).sum(axis=-1), axis=1)
        counts = np.bincount(guess, minlength=len(genres))
        correct += counts[i]
        total += len(guess)
        lines.append(
            f"| {g} | "
            + " | ".join(str(c) for c in counts)
            + f" | {counts[i] / max(len(guess), 1):.0%} |"
        )
    lines.append(
        f"\nGenre of generated windows recognized by a classifier trained on the data: "
        f"{correct / max(total, 1):.1%} ({correct}/{total}; chance {1 / len(genres):.0%})"
    )
    return "\n".join(lines)


def library_table(tables: dict[str, dict[str, dict[str, float]]]) -> str:
    """One row per genre: each headline metric as generated / data, and how many of the
    quality bar's checks pass."""
    keys = ("EB", "UPC", "QN", "DP", "TD", "consonance")
    lines = [
        "| genre | " + " | ".join(keys) + " | quality bar |",
        "|---|" + "---|" * (len(keys) + 1),
    ]
    for genre, table in tables.items():
        gen, real = table["generated"], table["real"]
        cells = [
            f"{gen[k]:.2f} / {real[k]:.2f}" if k in gen and np.isfinite(gen[k]) else "-"
            for k in keys
        ]
        checks = quality_checks(table).splitlines()
        passed = sum(line.startswith("PASS") for line in checks)
        lines.append(f"| {genre} | " + " | ".join(cells) + f" | {passed}/{len(checks)} |")
    return "\n".join(lines)
