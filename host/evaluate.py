"""Musical quality of a genre model on held-out windows.

Three accompaniments are scored against the same melodies with the same metrics
(``deepkeys.device.metrics``): the model's (decoded as the device decodes it), the
real one from the data, and a baseline that pairs each melody with the
accompaniment of a window from another piece.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ..device import metrics
from ..device.decode import decode_track
from ..device.encoding import DEFAULT_DRUM_NOTES, Note, voice_to_notes

# The headline metrics, averaged over a model's tracks where they are per track.
HEADLINE = ("EB", "UPC", "QN", "DP", "polyphony", "in_key", "consonance", "TD")

Parts = dict[str, list[Note]]


def decode_outputs(outputs: dict[str, np.ndarray], kinds: dict[str, str], pitch_low: int,
                   temperature: float = 0.0, seed: int = 0,
                   drum_notes: Sequence[int] = DEFAULT_DRUM_NOTES) -> list[Parts]:
    """Batched model outputs (N, ...) -> per window, the notes of each track, decoded
    exactly as the device decodes them."""
    rng = np.random.default_rng(seed)
    n = len(next(iter(outputs.values())))
    return [{name: decode_track(kind, outputs[name][i],
                                outputs[f"{name}_onset"][i] if kind != "drums" else None,
                                pitch_low, temperature, rng, tuple(drum_notes))
             for name, kind in kinds.items()} for i in range(n)]


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


def true_parts(windows, kinds: dict[str, str],
               drum_notes: Sequence[int] = DEFAULT_DRUM_NOTES) -> list[Parts]:
    """The real accompaniment of each window (a ``dataset.Windows``), as notes."""
    names = {kind: [n for n, k in kinds.items() if k == kind] for kind in ("mono", "poly", "drums")}
    out = []
    for i in range(len(windows)):
        parts: Parts = {}
        for v, name in enumerate(names["mono"]):
            parts[name] = voice_to_notes(windows.mono_pitch[i, v], windows.mono_onset[i, v])
        for v, name in enumerate(names["poly"]):
            parts[name] = roll_to_notes(windows.poly[i, v], windows.poly_onset[i, v])
        for v, name in enumerate(names["drums"]):
            t, c = np.nonzero(windows.drums[i, v])
            parts[name] = [Note(int(drum_notes[k]), int(s), int(s) + 1) for s, k in zip(t, c)]
        out.append({name: parts[name] for name in kinds})
    return out


def score(melody_pitch: np.ndarray, melody_onset: np.ndarray, parts: list[Parts],
          drum_names: Sequence[str] = ()) -> dict[str, float]:
    """Mean metrics over windows: melodies (N, T) and each window's parts."""
    steps = melody_pitch.shape[-1]
    rows = [metrics.summarize(voice_to_notes(melody_pitch[i], melody_onset[i]), parts[i], steps,
                              drum_parts=drum_names)
            for i in range(len(parts))]
    return headline(metrics.mean_metrics(rows))


def headline(row: dict[str, float]) -> dict[str, float]:
    """Per-track and per-pair metrics averaged into the headline names, keeping the rest."""
    out = dict(row)
    for key in HEADLINE:
        values = [v for k, v in row.items() if k.startswith(f"{key}/")]
        if values:
            out[key] = float(np.nanmean(values))
    return out


def window_metrics(windows, outputs: dict[str, np.ndarray], cfg) -> dict[str, float]:
    """Validation metrics of decoded tracks, with polyphony relative to the data's."""
    kinds = cfg.kinds()
    drums = [n for n, k in kinds.items() if k == "drums"]
    gen = score(windows.melody_pitch, windows.melody_onset,
                decode_outputs(outputs, kinds, cfg.pitch_low), drums)
    real = score(windows.melody_pitch, windows.melody_onset, true_parts(windows, kinds), drums)
    out = {k: gen[k] for k in HEADLINE if k in gen}
    out["polyphony_ratio"] = gen["polyphony"] / real["polyphony"] if real["polyphony"] else 0.0
    return out


def shuffled(parts: list[Parts], names: Sequence[str]) -> list[Parts]:
    """Each window's accompaniment taken from the window half the set away.

    Windows come grouped by piece and no piece holds half of them, so every melody
    gets the accompaniment of another piece: real music, unrelated harmony.
    """
    n = len(parts)
    order = (np.arange(n) + n // 2) % n
    if any(names[i] == names[j] for i, j in enumerate(order)):
        raise ValueError("a piece holds half the windows; the shuffled baseline needs more pieces")
    return [parts[j] for j in order]


def evaluate_table(windows, kinds: dict[str, str],
                   generate: Callable[[np.ndarray, np.ndarray], list[Parts]],
                   drum_notes: Sequence[int] = DEFAULT_DRUM_NOTES) -> dict[str, dict[str, float]]:
    """Rows: generated, real, shuffled. ``generate(melody_pitch, melody_onset)`` returns
    each window's parts."""
    drums = [n for n, k in kinds.items() if k == "drums"]
    real = true_parts(windows, kinds, drum_notes)
    m_pitch, m_onset = windows.melody_pitch, windows.melody_onset
    return {
        "generated": score(m_pitch, m_onset, generate(m_pitch, m_onset), drums),
        "real": score(m_pitch, m_onset, real, drums),
        "shuffled": score(m_pitch, m_onset, shuffled(real, windows.names), drums),
    }


def format_table(rows: dict[str, dict[str, float]], keys: Sequence[str] = HEADLINE) -> str:
    """A Markdown table, one row per accompaniment, one column per metric."""
    lines = ["| accompaniment | " + " | ".join(keys) + " |",
             "|---|" + "---|" * len(keys)]
    for name, row in rows.items():
        cells = [f"{row[k]:.3f}" if k in row and np.isfinite(row[k]) else "-" for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
