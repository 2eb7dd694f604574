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
from ..device.decode import decode_voice
from ..device.encoding import voice_to_notes

# The headline metrics, averaged over a model's voices where they are per voice.
HEADLINE = ("EB", "UPC", "QN", "polyphony", "in_key", "consonance", "TD")


def decode_windows(probs: np.ndarray, onset_p: np.ndarray, pitch_low: int,
                   temperature: float = 0.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Model outputs (N, T, V, C) and (N, T, V) -> voices (N, V, T) pitch and onset."""
    rng = np.random.default_rng(seed)
    n, steps, voices, _ = probs.shape
    pitch = np.empty((n, voices, steps), dtype=np.int16)
    onset = np.empty((n, voices, steps), dtype=bool)
    for i in range(n):
        for v in range(voices):
            pitch[i, v], onset[i, v] = decode_voice(probs[i, :, v], onset_p[i, :, v], pitch_low,
                                                    temperature, rng)
    return pitch, onset


def score_windows(melody_pitch: np.ndarray, melody_onset: np.ndarray, voice_pitch: np.ndarray,
                  voice_onset: np.ndarray, names: Sequence[str]) -> dict[str, float]:
    """Mean metrics over windows: melody (N, T), voices (N, V, T)."""
    rows = []
    steps = melody_pitch.shape[-1]
    for i in range(len(melody_pitch)):
        melody = voice_to_notes(melody_pitch[i], melody_onset[i])
        parts = {name: voice_to_notes(voice_pitch[i, v], voice_onset[i, v])
                 for v, name in enumerate(names)}
        rows.append(metrics.summarize(melody, parts, steps))
    return headline(metrics.mean_metrics(rows))


def headline(row: dict[str, float]) -> dict[str, float]:
    """Per-voice and per-pair metrics averaged into the headline names, keeping the rest."""
    out = dict(row)
    for key in HEADLINE:
        values = [v for k, v in row.items() if k.startswith(f"{key}/")]
        if values:
            out[key] = float(np.nanmean(values))
    return out


def window_metrics(pitch: np.ndarray, onset: np.ndarray, probs: np.ndarray,
                   onset_p: np.ndarray, cfg) -> dict[str, float]:
    """Validation metrics of decoded voices, with polyphony relative to the data's."""
    gen_pitch, gen_onset = decode_windows(probs, onset_p, cfg.pitch_low)
    gen = score_windows(pitch[:, 0], onset[:, 0], gen_pitch, gen_onset, cfg.voices)
    real = score_windows(pitch[:, 0], onset[:, 0], pitch[:, 1:], onset[:, 1:], cfg.voices)
    out = {k: gen[k] for k in HEADLINE if k in gen}
    out["polyphony_ratio"] = gen["polyphony"] / real["polyphony"]
    return out


def shuffled(pitch: np.ndarray, onset: np.ndarray,
             names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Each window's accompaniment taken from the window half the set away.

    Windows come grouped by piece and no piece holds half of them, so every melody
    gets the voices of another piece: real music, unrelated harmony.
    """
    n = len(pitch)
    order = (np.arange(n) + n // 2) % n
    if any(names[i] == names[j] for i, j in enumerate(order)):
        raise ValueError("a piece holds half the windows; the shuffled baseline needs more pieces")
    return pitch[order, 1:], onset[order, 1:]


def evaluate_table(pitch: np.ndarray, onset: np.ndarray, piece_names: Sequence[str],
                   generate: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
                   voice_names: Sequence[str]) -> dict[str, dict[str, float]]:
    """Rows: generated, real, shuffled. ``generate(melody_pitch, melody_onset)`` returns voices."""
    gen_pitch, gen_onset = generate(pitch[:, 0], onset[:, 0])
    shuf_pitch, shuf_onset = shuffled(pitch, onset, list(piece_names))
    return {
        "generated": score_windows(pitch[:, 0], onset[:, 0], gen_pitch, gen_onset, voice_names),
        "real": score_windows(pitch[:, 0], onset[:, 0], pitch[:, 1:], onset[:, 1:], voice_names),
        "shuffled": score_windows(pitch[:, 0], onset[:, 0], shuf_pitch, shuf_onset, voice_names),
    }


def format_table(rows: dict[str, dict[str, float]], keys: Sequence[str] = HEADLINE) -> str:
    """A Markdown table, one row per accompaniment, one column per metric."""
    lines = ["| accompaniment | " + " | ".join(keys) + " |",
             "|---|" + "---|" * len(keys)]
    for name, row in rows.items():
        cells = [f"{row[k]:.3f}" if k in row and np.isfinite(row[k]) else "-" for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
