"""The training loop for a melody-conditioned genre GAN, in one plain file.

Each step makes one forward pass of the generator and updates both networks:
- the generator: cross-entropy against the real voices (reconstruction), onset BCE,
  plus a small hinge adversarial term from the critic;
- the critic: hinge loss, real voices against straight-through Gumbel samples of
  the generator's voices, both seen together with the melody.
Every epoch it validates (loss, and the musical metrics of decoded voices, decoded
exactly as the device decodes them), appends a line to ``log.jsonl``, saves a
checkpoint, keeps the best weights by validation loss, redraws ``training.png``,
and stops once validation has not improved for ``patience`` epochs.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from . import chorales
from .model import (GeneratorConfig, TrainConfig, build_critic, build_generator, melody_tensor,
                    voice_targets)
from .evaluate import window_metrics

log = logging.getLogger("deepkeys.train")


class Dataset:
    """Windows of voices (soprano first), split by chorale, transposed on the fly."""

    def __init__(self, pitch: np.ndarray, onset: np.ndarray, cfg: GeneratorConfig) -> None:
        self.pitch, self.onset, self.cfg = pitch, onset, cfg

    def __len__(self) -> int:
        return len(self.pitch)

    def arrays(self, idx: np.ndarray, rng: np.random.Generator | None) -> dict[str, np.ndarray]:
        pitch, onset = self.pitch[idx], self.onset[idx]
        if rng is not None:
            pitch, onset = chorales.random_transpose(
                pitch, onset, rng, low=self.cfg.pitch_low, high=self.cfg.pitch_high)
        return {
            "melody": melody_tensor(pitch[:, 0], onset[:, 0], self.cfg),
            "targets": voice_targets(pitch[:, 1:], self.cfg).transpose(0, 2, 1),  # (N, T, V)
            "onsets": onset[:, 1:].transpose(0, 2, 1).astype(np.float32),
        }

    def batches(self, batch_size: int, rng: np.random.Generator):
        order = rng.permutation(len(self))
        for i in range(0, len(order) - batch_size + 1, batch_size):
            yield self.arrays(order[i : i + batch_size], rng)


def load_chorale_data(cfg: GeneratorConfig) -> dict[str, Dataset]:
    all_chorales = {c.name: c for c in chorales.load_chorales()}
    split = chorales.load_split()
    sets = {}
    for part, names in split.items():
        chosen = [all_chorales[n] for n in names if n in all_chorales]
        pitch, onset, _ = chorales.windows(chosen, bars=cfg.bars, hop_bars=1)
        sets[part] = Dataset(pitch, onset, cfg)
    return sets


class Trainer:
    def __init__(self, cfg: GeneratorConfig, tcfg: TrainConfig, run_dir: Path) -> None:
        self.cfg, self.tcfg, self.run_dir = cfg, tcfg, run_dir
        tf.keras.utils.set_random_seed(tcfg.seed)
        self.generator = build_generator(cfg)
        self.critic = build_critic(cfg)
        self.g_opt = tf.keras.optimizers.Adam(tcfg.lr_generator, beta_1=tcfg.beta_1)
        self.d_opt = tf.keras.optimizers.Adam(tcfg.lr_critic, beta_1=tcfg.beta_1)
        self.epoch = tf.Variable(0, dtype=tf.int64)
        self.best = tf.Variable(np.inf, dtype=tf.float64)
        self.stale = tf.Variable(0, dtype=tf.int64)
        self.ckpt = tf.train.Checkpoint(generator=self.generator, critic=self.critic,
                                        g_opt=self.g_opt, d_opt=self.d_opt, epoch=self.epoch,
                                        best=self.best, stale=self.stale)
        self.manager = tf.train.CheckpointManager(self.ckpt, run_dir / "ckpt", max_to_keep=2)

    def write_config(self, genre: str, command: str) -> None:
        """What export needs to rebuild the generator, and the command that made it."""
        (self.run_dir / "config.json").write_text(json.dumps(
            {"genre": genre, "generator": self.cfg.to_json(), "train": asdict(self.tcfg),
             "command": command}, indent=2))

    # --- one step -----------------------------------------------------------------
    def _stack(self, out: dict[str, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        probs = tf.stack([out[v] for v in self.cfg.voices], axis=2)  # (B, T, V, C)
        onsets = tf.stack([out[f"{v}_onset"] for v in self.cfg.voices], axis=2)  # (B, T, V)
        return probs, onsets

    def _losses(self, probs, onset_p, targets, onsets):
        ce = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(targets, probs))
        bce = tf.reduce_mean(tf.keras.losses.binary_crossentropy(onsets[..., None],
                                                                 onset_p[..., None]))
        return ce, bce

    def _hard_samples(self, probs, onset_p):
        # Straight-through Gumbel: the critic sees one-hot notes, gradients flow
        # through the soft probabilities.
        gumbel = -tf.math.log(-tf.math.log(tf.random.uniform(tf.shape(probs), 1e-6, 1 - 1e-6)))
        soft = tf.nn.softmax((tf.math.log(probs + 1e-8) + gumbel) / self.tcfg.gumbel_temperature)
        hard = tf.one_hot(tf.argmax(soft, axis=-1), self.cfg.n_classes)
        voices = hard + soft - tf.stop_gradient(soft)
        fired = tf.cast(onset_p > 0.5, tf.float32)
        return voices, fired + onset_p - tf.stop_gradient(onset_p)

    @tf.function(reduce_retracing=True)
    def train_step(self, melody, targets, onsets):
        batch = tf.shape(melody)[0]
        noise = tf.random.normal((batch, self.cfg.noise_dim))
        with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
            probs, onset_p = self._stack(self.generator({"melody": melody, "noise": noise},
                                                        training=True))
            ce, bce = self._losses(probs, onset_p, targets, onsets)
            fake_voices, fake_onsets = self._hard_samples(probs, onset_p)
            real_voices = tf.one_hot(targets, self.cfg.n_classes)
            d_real = self.critic({"melody": melody, "voices": real_voices, "onsets": onsets},
                                 training=True)
            d_fake = self.critic({"melody": melody, "voices": fake_voices,
                                  "onsets": fake_onsets}, training=True)
            d_loss = tf.reduce_mean(tf.nn.relu(1 - d_real)) + tf.reduce_mean(tf.nn.relu(1 + d_fake))
            g_adv = -tf.reduce_mean(d_fake)
            g_loss = ce + self.tcfg.onset_weight * bce + self.tcfg.adversarial_weight * g_adv
        g_vars = self.generator.trainable_variables
        d_vars = self.critic.trainable_variables
        self.g_opt.apply_gradients(zip(g_tape.gradient(g_loss, g_vars), g_vars))
        self.d_opt.apply_gradients(zip(d_tape.gradient(d_loss, d_vars), d_vars))
        return {"g_loss": g_loss, "ce": ce, "onset_bce": bce, "g_adv": g_adv, "d_loss": d_loss,
                "d_real": tf.reduce_mean(d_real), "d_fake": tf.reduce_mean(d_fake)}

    @tf.function(reduce_retracing=True)
    def predict(self, melody):
        noise = tf.random.normal((tf.shape(melody)[0], self.cfg.noise_dim))
        return self._stack(self.generator({"melody": melody, "noise": noise}, training=False))

    # --- one epoch ------------------------------------------------------------------
    def validate(self, data: Dataset) -> dict[str, float]:
        arrays = data.arrays(np.arange(len(data)), rng=None)
        probs, onset_p = [], []
        for i in range(0, len(data), 128):
            p, o = self.predict(arrays["melody"][i : i + 128])
            probs.append(p.numpy())
            onset_p.append(o.numpy())
        probs, onset_p = np.concatenate(probs), np.concatenate(onset_p)
        ce, bce = self._losses(probs, onset_p, arrays["targets"], arrays["onsets"])
        stats = {"val_ce": float(ce), "val_onset_bce": float(bce),
                 "val_acc": float((probs.argmax(-1) == arrays["targets"]).mean())}
        stats.update({f"val_{k}": v for k, v in
                      window_metrics(data.pitch, data.onset, probs, onset_p, self.cfg).items()})
        return stats

    def fit(self, data: dict[str, Dataset], log_path: Path, command: str) -> None:
        rng = np.random.default_rng(self.tcfg.seed + int(self.epoch.numpy()))
        steps = len(data["train"]) // self.tcfg.batch_size
        while int(self.epoch.numpy()) < self.tcfg.epochs:
            epoch = int(self.epoch.numpy()) + 1
            started = time.monotonic()
            sums: dict[str, float] = {}
            bar = tqdm(data["train"].batches(self.tcfg.batch_size, rng), total=steps,
                       desc=f"epoch {epoch}/{self.tcfg.epochs}", leave=False, file=sys.stderr,
                       disable=None)
            for batch in bar:
                out = self.train_step(batch["melody"], batch["targets"], batch["onsets"])
                for k, v in out.items():
                    sums[k] = sums.get(k, 0.0) + float(v)
                bar.set_postfix(ce=f"{float(out['ce']):.3f}", d=f"{float(out['d_loss']):.3f}")
            row = {"epoch": epoch, **{k: v / steps for k, v in sums.items()}}
            row.update(self.validate(data["validation"]))
            row["seconds"] = round(time.monotonic() - started, 1)
            improved = row["val_ce"] < float(self.best.numpy())
            if improved:
                self.best.assign(row["val_ce"])
                self.stale.assign(0)
                self.generator.save_weights(self.run_dir / "best.weights.h5")
            else:
                self.stale.assign_add(1)
            row["best"] = improved
            self.epoch.assign(epoch)
            self.manager.save()
            with open(log_path, "a") as f:
                f.write(json.dumps(row) + "\n")
            log.info(" ".join(f"{k}={_fmt(v)}" for k, v in row.items()))
            plot_history(log_path, self.run_dir / "training.png")
            if int(self.stale.numpy()) >= self.tcfg.patience:
                log.info("stop=early reason=no_val_improvement patience=%d", self.tcfg.patience)
                break


def _fmt(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def read_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_history(log_path: Path, png: Path) -> None:
    """Losses of both networks and the validation metrics, one panel each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_log(log_path)
    epochs = [r["epoch"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for key in ("ce", "val_ce", "onset_bce"):
        axes[0].plot(epochs, [r[key] for r in rows], label=key)
    axes[0].set_title("generator reconstruction")
    for key in ("d_loss", "g_adv"):
        axes[1].plot(epochs, [r[key] for r in rows], label=key)
    axes[1].set_title("adversarial (hinge)")
    for key in sorted(k for k in rows[-1] if k.startswith("val_") and k[4:] in
                      ("in_key", "consonance", "QN", "EB", "polyphony_ratio", "acc")):
        axes[2].plot(epochs, [r[key] for r in rows], label=key)
    axes[2].set_title("validation metrics (decoded voices)")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = png.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, png)


def train(genre: str, run_dir: Path, epochs: int, seed: int, resume: bool, command: str,
          tcfg_overrides: dict | None = None) -> Path:
    """Train ``genre`` into ``run_dir`` and return the path of the best weights."""
    if genre != "chorale":
        from ..device.errors import UserError
        raise UserError(f"no training data recipe for genre {genre!r} yet (known: chorale)")
    tf.config.threading.set_inter_op_parallelism_threads(2)
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg = GeneratorConfig()
    tcfg = TrainConfig(epochs=epochs, seed=seed, **(tcfg_overrides or {}))
    log_path = run_dir / "log.jsonl"
    if not resume and log_path.exists():
        log_path.unlink()
    trainer = Trainer(cfg, tcfg, run_dir)
    if resume and trainer.manager.latest_checkpoint:
        trainer.ckpt.restore(trainer.manager.latest_checkpoint)
        log.info("resume=%s epoch=%d", trainer.manager.latest_checkpoint, int(trainer.epoch.numpy()))
    trainer.write_config(genre, command)
    data = load_chorale_data(cfg)
    log.info("data train=%d validation=%d test=%d", len(data["train"]), len(data["validation"]),
             len(data["test"]))
    trainer.fit(data, log_path, command)
    return run_dir / "best.weights.h5"
