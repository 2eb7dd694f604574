"""The chorale GAN in one file: a melody-conditioned generator and its critic.

The generator is a 1-D U-Net over time. Each 16th step carries the melody (which
pitch sounds, where notes begin), the chord of its half bar (root, chord tones, bass:
:func:`deepkeys.device.chords.chord_steps`), the position in the bar and, at the
bottleneck, the noise. The chords come from the harmony step, so every part plays
the same progression. For every accompaniment voice it writes one softmax per step over the
pitch window plus a rest class, and an onset probability so that repeated notes
survive. REFERENCE.md explains why: sigmoid piano rolls with BCE threshold to
silence, one softmax per voice is full, in key and consonant from the first epoch.

The critic sees the same melody and hard (straight-through Gumbel) samples of the
voices, so it judges notes the device could really play, not soft probabilities.

>>> gen = build_generator(GeneratorConfig(bars=4))        # doctest: +SKIP
>>> out = gen({"melody": melody, "chords": chords, "noise": noise})  # doctest: +SKIP
>>> out["alto"].shape, out["alto_onset"].shape           # doctest: +SKIP
((32, 64, 85), (32, 64))
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from deepkeys.device.chords import CHORD_FEATURES
from deepkeys.device.encoding import STEPS_PER_BAR, RollShape


@dataclass(frozen=True)
class GeneratorConfig(RollShape):
    bars: int = 4
    pitch_low: int = 24
    pitch_high: int = 107
    voices: tuple[str, ...] = ("alto", "tenor", "bass")  # monophonic tracks
    poly: tuple[str, ...] = ()  # polyphonic tracks: comping chords, pads
    drums: tuple[str, ...] = ()  # drum tracks, one onset per drum class
    n_drum_classes: int = 0
    grooves: tuple[str, ...] = ()  # one-hot in the first noise values (see generator.noise_vector)
    noise_dim: int = 32
    widths: tuple[int, ...] = (128, 192, 256, 256)  # one per U-Net level, top to bottom
    critic_widths: tuple[int, ...] = (96, 128, 192, 256)
    dropout: float = 0.1  # 2.4k training windows overfit within ~15 epochs without it

    @property
    def n_classes(self) -> int:
        return self.n_pitches + 1  # the last class is the rest

    def kinds(self) -> dict[str, str]:
        """Track name -> kind ("mono", "poly", "drums"), in output order."""
        return {
            **{v: "mono" for v in self.voices},
            **{p: "poly" for p in self.poly},
            **{d: "drums" for d in self.drums},
        }

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> GeneratorConfig:
        """The inverse of :meth:`to_json`: JSON's lists back into the tuple fields."""
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
        return cls(**values)


@keras.saving.register_keras_serializable("deepkeys")
class PositionFeatures(layers.Layer):
    """Appends a constant one-hot of the step within the bar and of the bar number."""

    def __init__(self, bars: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.bars = bars
        steps = bars * STEPS_PER_BAR
        t = np.arange(steps)
        table = np.concatenate(
            [np.eye(STEPS_PER_BAR)[t % STEPS_PER_BAR], np.eye(bars)[t // STEPS_PER_BAR]], axis=1
        )
        # Kept as numpy: a tensor made here would be captured as a graph input,
        # which the int8 converter cannot freeze.
        self.table = table[None].astype(np.float32)

    def call(self, x: tf.Tensor) -> tf.Tensor:
        batch = tf.shape(x)[0]
        return tf.concat([x, tf.tile(tf.constant(self.table), [batch, 1, 1])], axis=-1)

    def get_config(self) -> dict:
        return {**super().get_config(), "bars": self.bars}


def _conv(
    x: tf.Tensor,
    width: int,
    kernel: int = 3,
    strides: int = 1,
    dilation: int = 1,
    name: str | None = None,
) -> tf.Tensor:
    x = layers.Conv1D(
        width, kernel, strides=strides, dilation_rate=dilation, padding="same", name=name
    )(x)
    return layers.LeakyReLU(0.2)(x)


def build_generator(cfg: GeneratorConfig, batch_size: int | None = None) -> keras.Model:
    """Melody (T, P, 2) + chords (T, 37) + noise (Z) -> per voice: softmax (T, P+1) and
    onset (T).

    ``batch_size=1`` builds the export graph (XNNPACK covers more with a fixed batch).
    """
    melody = keras.Input((cfg.steps, cfg.n_pitches, 2), batch_size=batch_size, name="melody")
    noise = keras.Input((cfg.noise_dim,), batch_size=batch_size, name="noise")
    chords = keras.Input((cfg.steps, CHORD_FEATURES), batch_size=batch_size, name="chords")

    x = layers.Reshape((cfg.steps, cfg.n_pitches * 2))(melody)
    x = layers.Concatenate()([x, chords])
    x = PositionFeatures(cfg.bars)(x)

    skips = []
    for level, width in enumerate(cfg.widths):
        if level:
            # Halve time: 16ths -> 8ths -> beats -> half bars.
            x = _conv(x, width, kernel=4, strides=2)
        x = layers.Dropout(cfg.dropout)(_conv(x, width))
        skips.append(x)

    # The bottleneck sees the noise and, through dilation, the whole phrase.
    bottom_steps = cfg.steps // 2 ** (len(cfg.widths) - 1)
    z = layers.Dense(bottom_steps * 16)(noise)
    z = layers.Reshape((bottom_steps, 16))(z)
    x = layers.Concatenate()([x, z])
    for dilation in (1, 2, 4):
        x = layers.Add()([x[..., : cfg.widths[-1]], _conv(x, cfg.widths[-1], dilation=dilation)])

    for width, skip in zip(reversed(cfg.widths[:-1]), reversed(skips[:-1])):
        x = layers.UpSampling1D(2)(x)
        x = _conv(x, width)
        x = layers.Concatenate()([x, skip])
        x = layers.Dropout(cfg.dropout)(_conv(x, width))

    outputs = {}
    for name, kind in cfg.kinds().items():
        if kind == "mono":
            logits = layers.Conv1D(cfg.n_classes, 1, name=f"{name}_logits")(x)
            outputs[name] = layers.Softmax(name=name)(logits)
        else:
            width = cfg.n_pitches if kind == "poly" else cfg.n_drum_classes
            outputs[name] = layers.Conv1D(width, 1, activation="sigmoid", name=name)(x)
        if kind != "drums":
            onset = layers.Conv1D(1, 1, activation="sigmoid", name=f"{name}_onset_prob")(x)
            outputs[f"{name}_onset"] = layers.Reshape((cfg.steps,), name=f"{name}_onset")(onset)
    # Keys in sorted order: the int8 converter passes the inputs as a list in the order of
    # ``model.inputs``, which Keras matches against the dict's sorted keys.
    inputs = {"chords": chords, "melody": melody, "noise": noise}
    return keras.Model(inputs, outputs, name="generator")


def accomp_width(cfg: GeneratorConfig) -> int:
    """Features per step of all tracks together, as the critic sees them."""
    return (
        len(cfg.voices) * (cfg.n_classes + 1)
        + len(cfg.poly) * (cfg.n_pitches + 1)
        + len(cfg.drums) * cfg.n_drum_classes
    )


def build_critic(cfg: GeneratorConfig) -> keras.Model:
    """Melody + chords + every track (hard samples, concatenated per step) -> one
    unbounded score (the Wasserstein critic)."""
    melody = keras.Input((cfg.steps, cfg.n_pitches, 2), name="melody")
    chords = keras.Input((cfg.steps, CHORD_FEATURES), name="chords")
    accomp = keras.Input((cfg.steps, accomp_width(cfg)), name="accomp")
    flat_melody = layers.Reshape((cfg.steps, cfg.n_pitches * 2))(melody)
    x = layers.Concatenate()([flat_melody, chords, accomp])
    x = PositionFeatures(cfg.bars)(x)
    for level, width in enumerate(cfg.critic_widths):
        x = _conv(x, width, kernel=4, strides=2 if level else 1)
    x = layers.GlobalAveragePooling1D()(x)
    score = layers.Dense(1)(x)
    inputs = {"accomp": accomp, "chords": chords, "melody": melody}  # sorted, as the generator's
    return keras.Model(inputs, score, name="critic")


def melody_tensor(pitch: np.ndarray, onset: np.ndarray, cfg: GeneratorConfig) -> np.ndarray:
    """Melody voices (N, T) -> model input (N, T, P, 2): sounding and onset channels."""
    n, steps = pitch.shape
    out = np.zeros((n, steps, cfg.n_pitches, 2), dtype=np.float32)
    idx = pitch.astype(np.int64) - cfg.pitch_low
    on = (pitch >= 0) & (idx >= 0) & (idx < cfg.n_pitches)
    rows, cols = np.nonzero(on)
    out[rows, cols, idx[rows, cols], 0] = 1.0
    out[rows, cols, idx[rows, cols], 1] = onset[rows, cols]
    return out


def voice_targets(pitch: np.ndarray, cfg: GeneratorConfig) -> np.ndarray:
    """Voice pitches (..., T) with REST=-1 -> class indices, the last class = rest."""
    idx = pitch.astype(np.int32) - cfg.pitch_low
    return np.where(pitch < 0, cfg.n_pitches, idx).astype(np.int32)


@dataclass
class TrainConfig:
    epochs: int = 60
    batch_size: int = 32
    lr_generator: float = 5e-4
    lr_critic: float = 2e-4
    beta_1: float = 0.5
    beta_2: float = 0.9  # WGAN-GP's usual Adam setting; it keeps the critic's steps steady
    adversarial_weight: float = 0.05  # 0 trains the generator on reconstruction alone
    # The game: Wasserstein loss with a gradient penalty (Gulrajani et al. 2017) on
    # points between real and generated accompaniments of the same melody and chords.
    # A hinge critic (the first models') reached d_loss 0 by epoch 5 and then taught the
    # generator nothing; the penalty keeps the critic's slope bounded, so its score
    # stays informative for the whole run.
    gradient_penalty: float = 10.0
    drift_penalty: float = 1e-3  # keeps the critic's scores near 0 (Karras et al. 2018)
    onset_weight: float = 1.0
    # Notes and hits are rare among (step, pitch) cells; weighting the positive cells
    # keeps the sigmoid parts from settling on silence.
    poly_pos_weight: float = 4.0
    drum_pos_weight: float = 2.0
    steps_per_epoch: int = 0  # 0: one pass over the training windows
    gumbel_temperature: float = 1.0
    patience: int = 8  # epochs without a better validation score before stopping
    seed: int = 0
    extra: dict = field(default_factory=dict)
