"""The harmony step: a melody in, one chord per half bar out, before any part is played.

A phrase of up to 8 bars is read as 16 half-bar cells. Each cell's features say
which pitch classes the melody holds there, which it strikes and which sounds on the
cell's downbeat, all relative to the key the phrase implies (:func:`estimate_key`), so
one model serves every key. The int8 model (``models/harmony.tflite``) gives each cell
a distribution over the chord tokens of :mod:`deepkeys.device.chords`, in that
key-relative frame. Decoding then draws one whole progression from those
distributions chained by the card's transition prior (forward filtering, backward
sampling), at a temperature, with the seed: the same seed is the same progression,
another seed reharmonizes. Temperature 0 is the single most likely progression.

Chords the player gives (``--chords``, fingered hints below the split point) are
fixed cells: the chain is drawn around them, so the chords next to a hint lead to it.

>>> h = Harmonizer(load_harmony_card("models/harmony.json"))           # doctest: +SKIP
>>> [c.name for c in h.harmonize(pitch, onset, seed=1)][:4]              # doctest: +SKIP
['C', 'C', 'Am', 'F']
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from deepkeys.device.chords import N_QUALITIES, N_TOKENS, NO_CHORD, QUALITY_NAMES, Chord
from deepkeys.device.encoding import CHORD_STEPS, REST
from deepkeys.device.errors import UserError, first_line
from deepkeys.device.generation.card import TensorSpec, sha256_of, tensor_spec
from deepkeys.device.generation.litert import LiteModel

HARMONY_FORMAT = "deepkeys-harmony/1"
CELL_STEPS = CHORD_STEPS  # one chord per half bar
PHRASE_CELLS = 16  # 8 bars
SOURCES = ("pop909", "chorale", "folk")  # which music's harmony a genre asks for
N_FEATURES = 12 * 3 + 5 + PHRASE_CELLS // 2 + len(SOURCES)

# Krumhansl and Kessler's key profiles (probe-tone ratings), C major and C minor.
MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


class Key(NamedTuple):
    tonic: int  # pitch class
    minor: bool

    @property
    def rotation(self) -> int:
        """The pitch class that becomes 0 in the model's frame: the major tonic of the
        key signature, so a minor key and its relative major share one frame."""
        return (self.tonic + 3) % 12 if self.minor else self.tonic


def pitch_class_weights(pitch: np.ndarray) -> np.ndarray:
    """How many steps each pitch class sounds in a voice (REST ignored)."""
    sounding = pitch[pitch != REST]
    return np.bincount(sounding % 12, minlength=12).astype(np.float64)


def estimate_key(weights: np.ndarray) -> Key:
    """The key whose profile correlates best with a pitch-class histogram.

    >>> c_major = np.zeros(12); c_major[[0, 2, 4, 5, 7, 9, 11]] = 1; c_major[[0, 7]] = 3
    >>> estimate_key(c_major)
    Key(tonic=0, minor=False)
    >>> estimate_key(np.roll(c_major, 9)).rotation     # A major: its tonic is the frame's 0
    9
    """
    if not weights.any():
        return Key(0, False)
    best, best_r = Key(0, False), -np.inf
    for tonic in range(12):
        for minor, profile in ((False, MAJOR_PROFILE), (True, MINOR_PROFILE)):
            r = np.corrcoef(weights, np.roll(profile, tonic))[0, 1]
            if r > best_r:
                best, best_r = Key(tonic, minor), r
    return best


def phrase_features(
    pitch: np.ndarray, onset: np.ndarray, key: Key, source: int, n_cells: int | None = None
) -> np.ndarray:
    """A phrase's melody (steps,) -> (PHRASE_CELLS, N_FEATURES) model input.

    Per cell: the share of its steps each pitch class sounds, the pitch classes it
    strikes, the pitch class sounding on its downbeat (each 12, key-relative), then
    whether it has melody, the key's mode, second half of a bar, that the cell is part
    of the melody at all, the bar in the phrase (one-hot) and the source (one-hot).
    ``n_cells`` cells are real; the rest pad a short phrase.
    """
    n_cells = PHRASE_CELLS if n_cells is None else n_cells
    out = np.zeros((PHRASE_CELLS, N_FEATURES), np.float32)
    rel = np.where(pitch != REST, (pitch.astype(np.int64) - key.rotation) % 12, -1)
    for c in range(min(n_cells, PHRASE_CELLS)):
        cell = rel[c * CELL_STEPS : (c + 1) * CELL_STEPS]
        hits = onset[c * CELL_STEPS : (c + 1) * CELL_STEPS]
        sounding = cell >= 0
        if sounding.any():
            out[c, :12] = np.bincount(cell[sounding], minlength=12) / CELL_STEPS
            struck = cell[sounding & hits]
            out[c, 12 + struck] = 1.0
            if cell[0] >= 0:
                out[c, 24 + cell[0]] = 1.0
            out[c, 36] = 1.0
        out[c, 37] = float(key.minor)
        out[c, 38] = float(c % 2)
        out[c, 39] = 1.0
        out[c, 40 + c // 2] = 1.0
        out[c, 40 + PHRASE_CELLS // 2 + source] = 1.0
    return out


@dataclass(frozen=True)
class HarmonyCard:
    """``models/harmony.json``: the tensors, the transition prior and the provenance."""

    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]
    transition: np.ndarray  # (N_TOKENS, N_TOKENS) log P(next | previous), key-relative
    transition_weight: float
    temperature: float  # the default sampling temperature
    sha256: str
    description: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def model_path(self) -> Path:
        if self.path is None:
            raise ValueError("card was not loaded from a file")
        return self.path.with_suffix(".tflite")

    def to_json(self) -> dict[str, Any]:
        return {
            "format": HARMONY_FORMAT,
            "description": self.description,
            "cells": {"steps_per_cell": CELL_STEPS, "phrase_cells": PHRASE_CELLS},
            "chords": {"roots": 12, "qualities": list(QUALITY_NAMES), "no_chord": NO_CHORD},
            "sources": list(SOURCES),
            "features": N_FEATURES,
            "shapes": {
                "inputs": {k: v.to_json() for k, v in self.inputs.items()},
                "outputs": {k: v.to_json() for k, v in self.outputs.items()},
            },
            "decoding": {
                "temperature": self.temperature,
                "transition_weight": self.transition_weight,
                "transition": np.round(self.transition, 2).tolist(),
            },
            "sha256": self.sha256,
            "provenance": self.provenance,
        }


def load_harmony_card(path: str | Path, verify_model: bool = True) -> HarmonyCard:
    """Read and check the harmony card (and the sha256 of its model); one-line errors."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
        if raw.get("format") != HARMONY_FORMAT:
            raise ValueError(f"format is {raw.get('format')!r}, expected {HARMONY_FORMAT!r}")
        if raw["chords"]["qualities"] != list(QUALITY_NAMES) or raw["features"] != N_FEATURES:
            raise ValueError("its chord vocabulary or features differ from this firmware's")
        shapes, decoding = raw["shapes"], raw["decoding"]
        transition = np.array(decoding["transition"], np.float64)
        if transition.shape != (N_TOKENS, N_TOKENS) or not np.isfinite(transition).all():
            raise ValueError("the transition prior is not a finite 97 x 97 table")
        card = HarmonyCard(
            inputs={k: tensor_spec(k, v) for k, v in shapes["inputs"].items()},
            outputs={k: tensor_spec(k, v) for k, v in shapes["outputs"].items()},
            transition=transition,
            transition_weight=float(decoding["transition_weight"]),
            temperature=float(decoding["temperature"]),
            sha256=str(raw["sha256"]),
            description=str(raw.get("description", "")),
            provenance=dict(raw.get("provenance", {})),
            path=path,
        )
    except FileNotFoundError:
        raise UserError(f"{path}: harmony card not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not a readable harmony card ({first_line(exc)})") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{path}: malformed harmony card ({first_line(exc)})") from None
    if verify_model:
        model = card.model_path
        if not model.is_file():
            raise UserError(f"{model}: model file missing for card {path.name}")
        if sha256_of(model) != card.sha256:
            raise UserError(f"{model}: sha256 does not match its card")
    return card


class Harmonizer:
    """Chords for a melody: the harmony model plus the sampler.

    ``quality_bias`` (log-probability added per quality, from a genre's card) steers
    the chords, e.g. a jazz card favouring sevenths.
    """

    def __init__(self, card: HarmonyCard | None, threads: int = 1) -> None:
        self.card = card
        self.model = (
            None if card is None else LiteModel(card.model_path, card.inputs, card.outputs, threads)
        )

    @classmethod
    def rule(cls) -> Harmonizer:
        """The fallback without a harmony model: :func:`rule_tokens`, the same every time."""
        return cls(None)

    @property
    def name(self) -> str:
        return "rule" if self.card is None else f"harmony model {self.card.sha256[:12]}"

    def cell_probabilities(self, features: np.ndarray) -> np.ndarray:
        """(PHRASE_CELLS, N_FEATURES) -> (PHRASE_CELLS, N_TOKENS), key-relative. The rule
        gives all its weight to its one chord."""
        if self.model is None:
            out = np.full((PHRASE_CELLS, N_TOKENS), 1e-6)
            out[np.arange(PHRASE_CELLS), rule_tokens(features)] = 1.0
        else:
            out = np.clip(self.model.run({"cells": features[None]})["chords"][0], 1e-6, None)
        return out / out.sum(axis=-1, keepdims=True)

    def harmonize(
        self,
        pitch: np.ndarray,
        onset: np.ndarray,
        seed: int = 0,
        temperature: float | None = None,
        source: str = "pop909",
        hints: Mapping[int, Chord] | None = None,
        quality_bias: Mapping[str, float] | None = None,
        rng: np.random.Generator | None = None,
    ) -> list[Chord]:
        """One chord per half bar of a melody voice (steps,), phrase by phrase.

        ``hints`` fixes cells (index -> chord); a no-chord hint is ignored.
        """
        if temperature is None:
            temperature = 0.0 if self.card is None else self.card.temperature
        if not math.isfinite(temperature) or temperature < 0:
            raise UserError(f"temperature must be a number >= 0, not {temperature}")
        if source not in SOURCES:
            raise UserError(f"harmony source {source!r} is not one of {', '.join(SOURCES)}")
        rng = rng or np.random.default_rng(seed)
        n_cells = -(-len(pitch) // CELL_STEPS)
        chosen: dict[int, Chord] = {
            c: h for c, h in (hints or {}).items() if 0 <= c < n_cells and h.root is not None
        }
        bias = np.zeros(N_TOKENS)
        for quality, amount in (quality_bias or {}).items():
            if quality in QUALITY_NAMES:
                bias[QUALITY_NAMES.index(quality) : NO_CHORD : N_QUALITIES] += amount
        for first in _phrase_starts(n_cells):
            cells = min(PHRASE_CELLS, n_cells - first)
            sl = slice(first * CELL_STEPS, (first + cells) * CELL_STEPS)
            p, o = pitch[sl], onset[sl]
            key = estimate_key(pitch_class_weights(p))
            probs = self.cell_probabilities(
                phrase_features(p, o, key, SOURCES.index(source), cells)
            )[:cells]
            fixed = {
                c - first: chosen[c].transposed(-key.rotation).token
                for c in range(first, first + cells)
                if c in chosen
            }
            transition = (
                np.zeros((N_TOKENS, N_TOKENS))
                if self.card is None
                else self.card.transition * self.card.transition_weight
            )
            tokens = sample_chain(np.log(probs) + bias, transition, temperature, rng, fixed)
            for i, token in enumerate(tokens):
                chosen.setdefault(first + i, Chord.from_token(token).transposed(key.rotation))
        return [chosen[c] for c in range(n_cells)]


# The diatonic triads of the key frame, most common first (ties go to the earlier).
DIATONIC = tuple(
    Chord(root, quality).token
    for root, quality in ((0, "maj"), (7, "maj"), (5, "maj"), (9, "min"), (2, "min"),
                          (4, "min"), (11, "dim"))
)  # fmt: skip


def rule_tokens(features: np.ndarray) -> list[int]:
    """The rule harmonizer: per cell, the diatonic triad that covers most of the
    melody's note-time there; a cell without melody keeps the chord before it.
    Key-relative tokens, like the model's. The baseline every figure is held against,
    and the fallback when no harmony model is installed.

    >>> f = np.zeros((2, N_FEATURES)); f[0, [7, 11]] = 0.5; f[0, 36] = 1.0
    >>> [Chord.from_token(t).name for t in rule_tokens(f)]
    ['G', 'G']
    """
    tones = [np.array(sorted(Chord.from_token(t).pitch_classes)) for t in DIATONIC]
    out, last = [], DIATONIC[0]
    for cell in features:
        if cell[36] > 0:  # the cell has melody
            weights = cell[:12] + 0.5 * cell[12:24]
            last = DIATONIC[int(np.argmax([weights[t].sum() for t in tones]))]
        out.append(last)
    return out


def _phrase_starts(n_cells: int) -> list[int]:
    """First cell of each model call; a last partial phrase overlaps the one before it.

    >>> _phrases = _phrase_starts; _phrases(8), _phrases(32), _phrases(20)
    ([0], [0, 16], [0, 4])
    """
    if n_cells <= PHRASE_CELLS:
        return [0]
    starts = list(range(0, n_cells - PHRASE_CELLS + 1, PHRASE_CELLS))
    if starts[-1] + PHRASE_CELLS < n_cells:
        starts.append(n_cells - PHRASE_CELLS)
    return starts


def sample_chain(
    emission: np.ndarray,
    transition: np.ndarray,
    temperature: float,
    rng: np.random.Generator,
    fixed: Mapping[int, int] | None = None,
) -> list[int]:
    """One token per cell from the chain exp((emission + transition) / temperature).

    Forward filtering, backward sampling: the whole sequence is drawn at once, so a
    chord is chosen knowing what follows. No-chord is never drawn (the band needs a
    chord to play); ``fixed`` cells take their token. Temperature 0 is Viterbi.

    >>> e = np.log(np.full((3, N_TOKENS), 1 / N_TOKENS)); e[:, 0] += 5
    >>> sample_chain(e, np.zeros((N_TOKENS, N_TOKENS)), 0.0, np.random.default_rng(0), {1: 8})
    [0, 8, 0]
    """
    n = len(emission)
    allowed = np.ones((n, N_TOKENS), bool)
    allowed[:, NO_CHORD] = False
    for c, token in (fixed or {}).items():
        allowed[c] = False
        allowed[c, token] = True
    scale = 1.0 / max(temperature, 1e-3)
    e = np.where(allowed, emission * scale, -np.inf)
    a = transition * scale
    greedy = temperature <= 1e-3
    alpha = np.empty_like(e)
    back = np.zeros((n, N_TOKENS), np.int64)
    alpha[0] = e[0]
    for t in range(1, n):
        scores = alpha[t - 1][:, None] + a  # (previous, next)
        if greedy:
            back[t] = scores.argmax(axis=0)
            alpha[t] = e[t] + scores.max(axis=0)
        else:
            alpha[t] = e[t] + _logsumexp(scores, axis=0)
    tokens = [0] * n
    tokens[-1] = _draw(alpha[-1], rng, greedy)
    for t in range(n - 2, -1, -1):
        if greedy:
            tokens[t] = int(back[t + 1][tokens[t + 1]])
        else:
            tokens[t] = _draw(alpha[t] + a[:, tokens[t + 1]], rng, greedy)
    return tokens


def _logsumexp(x: np.ndarray, axis: int) -> np.ndarray:
    top = np.max(x, axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        return np.squeeze(top, axis) + np.log(np.sum(np.exp(x - top), axis=axis))


def _draw(log_weights: np.ndarray, rng: np.random.Generator, greedy: bool) -> int:
    if greedy:
        return int(np.argmax(log_weights))
    w = np.exp(log_weights - np.max(log_weights))
    return int(rng.choice(len(w), p=w / w.sum()))
