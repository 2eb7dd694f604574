"""The model card: the single source of truth the device reads about a model.

A model is ``<genre>.tflite`` plus ``<genre>.json``. The card says how the grid,
the tensors and the tracks are laid out, how to play the result, and where the
model came from. :func:`load_card` checks its shape and the sha256 of the model
file, and raises :class:`UserError` with one line that says what is wrong.

>>> card = load_card("models/chorale.json")          # doctest: +SKIP
>>> [t.name for t in card.tracks]                    # doctest: +SKIP
['alto', 'tenor', 'bass']
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepkeys.device.encoding import RollShape
from deepkeys.device.errors import UserError, first_line
from deepkeys.device.meter import COMMON, Meter

CARD_FORMAT = "deepkeys-model/1"
# How a track is represented (the decoding of each is in ``decode``):
# mono: one softmax over pitch + rest per step, plus an onset probability;
# poly: one sigmoid per pitch per step, plus a chord-onset probability;
# drums: one onset sigmoid per drum class per step, played by the card's drum_notes.
TRACK_KINDS = ("mono", "poly", "drums")
#: A genre name is part of file names (cards, models, saved compositions, which the
#: publish command gets) and of deploy's arguments: a safe set of characters only.
GENRE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def check_genre_name(genre: str) -> str:
    """``genre`` if it is 1 to 64 ASCII letters, digits, ``_`` or ``-``, starting with a
    letter or digit; a one-line :class:`UserError` otherwise.

    >>> check_genre_name("bossa-nova_2")
    'bossa-nova_2'
    >>> check_genre_name("bossa $(touch x)")
    Traceback (most recent call last):
    ...
    deepkeys.device.errors.UserError: bad genre name 'bossa $(touch x)': use 1 to 64 ...
    """
    if not GENRE_NAME.fullmatch(genre):
        raise UserError(
            f"bad genre name {genre!r}: use 1 to 64 letters, digits, '_' or '-', "
            "starting with a letter or digit"
        )
    return genre


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """An int8 tensor of the model: real = scale * (q - zero_point)."""

    name: str
    shape: tuple[int, ...]
    scale: float
    zero_point: int

    def to_json(self) -> dict[str, Any]:
        return {
            "shape": list(self.shape),
            "dtype": "int8",
            "scale": self.scale,
            "zero_point": self.zero_point,
        }


@dataclass(frozen=True, slots=True)
class TrackSpec:
    """One accompaniment part and how the model represents it."""

    name: str
    program: int
    channel: int
    kind: str = "mono"
    is_drum: bool = False
    output: str = ""  # the output tensor with the per-step probabilities
    onset_output: str = ""  # the per-step onset probability (mono and poly tracks)
    velocity: int = 80
    drum_notes: tuple[int, ...] = ()  # drums: the GM note each drum class plays
    threshold: float = 0.5  # poly and drums: the probability at which a note or hit fires

    def to_json(self) -> dict[str, Any]:
        out = {
            "name": self.name,
            "program": self.program,
            "channel": self.channel,
            "kind": self.kind,
            "is_drum": self.is_drum,
            "output": self.output,
            "onset_output": self.onset_output,
            "velocity": self.velocity,
        }
        if self.drum_notes:
            out["drum_notes"] = list(self.drum_notes)
        if self.kind != "mono":
            out["threshold"] = self.threshold
        return out


@dataclass(frozen=True, slots=True)
class Playback:
    tempo_bpm: float = 90.0
    swing: float = 0.5
    temperature: float = 0.7  # 0 picks the likeliest pitch; higher varies more
    melody_program: int = 0
    melody_velocity: int = 100
    accent: float = 0.15  # extra velocity share on downbeats

    def to_json(self) -> dict[str, Any]:
        return {
            "tempo_bpm": self.tempo_bpm,
            "swing": self.swing,
            "temperature": self.temperature,
            "melody_program": self.melody_program,
            "melody_velocity": self.melody_velocity,
            "accent": self.accent,
        }


@dataclass(frozen=True, slots=True)
class ModelCard(RollShape):
    genre: str
    bars: int
    pitch_low: int  # lowest MIDI pitch of the window (inclusive)
    pitch_high: int  # highest MIDI pitch of the window (inclusive)
    melody_center: int  # median melody pitch of the training data
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]
    tracks: tuple[TrackSpec, ...]
    playback: Playback
    sha256: str
    # Style genres learn several grooves; the first len(grooves) values of the noise
    # input select one (one-hot), the rest are Gaussian noise.
    grooves: tuple[str, ...] = ()
    description: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None  # where the card was read from
    # The harmony step for this genre: whose harmony it asks the model for (a source of
    # harmony.SOURCES) and a log-probability bonus per chord quality (jazz: sevenths).
    harmony_source: str = "pop909"
    quality_bias: dict[str, float] = field(default_factory=dict)

    @property
    def model_path(self) -> Path:
        if self.path is None:
            raise ValueError("card was not loaded from a file")
        return self.path.with_suffix(".tflite")

    def to_json(self) -> dict[str, Any]:
        return {
            "format": CARD_FORMAT,
            "genre": self.genre,
            "description": self.description,
            "grid": {
                "beats_per_bar": COMMON.numerator,
                "beat_unit": COMMON.denominator,
                "steps_per_bar": COMMON.steps_per_bar,
            },
            "shapes": {
                "bars": self.bars,
                "steps": self.steps,
                "pitch_low": self.pitch_low,
                "pitch_high": self.pitch_high,
                "melody_center": self.melody_center,
                "grooves": list(self.grooves),
                "inputs": {k: v.to_json() for k, v in self.inputs.items()},
                "outputs": {k: v.to_json() for k, v in self.outputs.items()},
            },
            "tracks": [t.to_json() for t in self.tracks],
            "playback": self.playback.to_json(),
            "harmony": {"source": self.harmony_source, "quality_bias": self.quality_bias},
            "sha256": self.sha256,
            "provenance": self.provenance,
        }


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_card(path: str | Path, verify_model: bool = True) -> ModelCard:
    """Read and check a card; with ``verify_model`` also check the model file's sha256."""
    path = Path(path)
    try:
        check_genre_name(path.stem)  # the card's file name is the genre's name
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from None
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: model card not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not a readable model card ({first_line(exc)})") from None
    try:
        card = _parse(raw, path)
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{path}: malformed model card ({first_line(exc)})") from None
    if verify_model:
        model = card.model_path
        if not model.is_file():
            raise UserError(f"{model}: model file missing for card {path.name}")
        actual = sha256_of(model)
        if actual != card.sha256:
            raise UserError(
                f"{model}: sha256 {actual[:12]}… does not match its card ({card.sha256[:12]}…)"
            )
    return card


def _parse(raw: dict[str, Any], path: Path) -> ModelCard:
    if raw.get("format") != CARD_FORMAT:
        raise ValueError(f"format is {raw.get('format')!r}, expected {CARD_FORMAT!r}")
    grid = raw["grid"]
    try:
        meter = Meter(grid["beats_per_bar"], grid["beat_unit"])
    except UserError as e:
        raise ValueError(str(e)) from None
    if meter != COMMON or grid["steps_per_bar"] != meter.steps_per_bar:
        raise ValueError(
            f"its grid is {meter.name} in {grid['steps_per_bar']} steps a bar;"
            f" this deepkeys plays models of {COMMON.name} in {COMMON.steps_per_bar} steps"
        )
    shapes = raw["shapes"]
    inputs = {k: tensor_spec(k, v) for k, v in shapes["inputs"].items()}
    outputs = {k: tensor_spec(k, v) for k, v in shapes["outputs"].items()}
    tracks = tuple(
        TrackSpec(**{**t, "drum_notes": tuple(t.get("drum_notes", ()))}) for t in raw["tracks"]
    )
    for t in tracks:
        if t.kind not in TRACK_KINDS:
            raise ValueError(f"track {t.name!r} has unknown kind {t.kind!r}")
        for out in (t.output,) if t.kind == "drums" else (t.output, t.onset_output):
            if out not in outputs:
                raise ValueError(f"track {t.name!r} names output {out!r}, which is not in shapes")
        if not 0.0 < t.threshold < 1.0:
            raise ValueError(f"track {t.name!r} has a threshold outside (0, 1)")
        if t.kind == "drums" and (
            len(t.drum_notes) != outputs[t.output].shape[-1]
            or not all(0 <= n <= 127 for n in t.drum_notes)
        ):
            raise ValueError(f"drum track {t.name!r} needs one GM note per drum class")
        if not 0 <= t.program <= 127 or not 0 <= t.channel <= 15:
            raise ValueError(f"track {t.name!r} has program or channel out of range")
    if "melody" not in inputs:
        raise ValueError("no 'melody' input")
    card = ModelCard(
        genre=str(raw["genre"]),
        bars=int(shapes["bars"]),
        pitch_low=int(shapes["pitch_low"]),
        pitch_high=int(shapes["pitch_high"]),
        melody_center=int(shapes["melody_center"]),
        inputs=inputs,
        outputs=outputs,
        tracks=tracks,
        playback=Playback(**raw.get("playback", {})),
        sha256=str(raw["sha256"]),
        grooves=tuple(str(g) for g in shapes.get("grooves", ())),
        description=str(raw.get("description", "")),
        provenance=dict(raw.get("provenance", {})),
        path=path,
        harmony_source=str(raw.get("harmony", {}).get("source", "pop909")),
        quality_bias={
            str(k): float(v) for k, v in raw.get("harmony", {}).get("quality_bias", {}).items()
        },
    )
    if shapes.get("steps", card.steps) != card.steps:
        raise ValueError("steps does not equal bars x 16")
    if card.grooves and (
        "noise" not in inputs or len(card.grooves) >= math.prod(inputs["noise"].shape)
    ):
        raise ValueError("grooves need a noise input with more values than grooves")
    if not 0 <= card.pitch_low < card.pitch_high <= 127:
        raise ValueError("pitch window out of MIDI range")
    return card


def tensor_spec(name: str, raw: dict[str, Any]) -> TensorSpec:
    if raw.get("dtype", "int8") != "int8":
        raise ValueError(f"tensor {name!r} is not int8")
    return TensorSpec(
        name, tuple(int(d) for d in raw["shape"]), float(raw["scale"]), int(raw["zero_point"])
    )
