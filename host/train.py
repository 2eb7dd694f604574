"""The training loop for a melody-conditioned genre GAN, in one plain file.

Each step makes one forward pass of the generator and updates both networks:
- the generator: cross-entropy against the real voices (reconstruction), onset BCE,
  plus a small adversarial term from the critic (``adversarial_weight``; 0 for the
  ablation without it);
- the critic: the Wasserstein loss with a gradient penalty (WGAN-GP), real voices
  against straight-through Gumbel samples of the generator's voices, both seen
  together with the melody and the chords. ``wasserstein`` in the log is its estimate
  of the distance between the two; it falls as the generator gets closer.
Every epoch it validates (loss, and the musical metrics of decoded voices, decoded
exactly as the device decodes them), appends a line to ``log.jsonl``, saves a
checkpoint, keeps the best weights by validation loss, redraws ``training.png``,
and stops once validation has not improved for ``patience`` epochs.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from deepkeys.device.errors import UserError
from deepkeys.host import distributed
from deepkeys.host.data.sources import genre_config, load_windows
from deepkeys.host.data.windows import Windows
from deepkeys.host.evaluate import window_metrics
from deepkeys.host.model import GeneratorConfig, TrainConfig, build_critic, build_generator

log = logging.getLogger("deepkeys.train")


class Trainer:
    """The two networks, their optimizers and checkpoints, on one worker or several.

    ``cluster`` says which worker this process is (:mod:`deepkeys.host.distributed`);
    its strategy places the variables and sums the replicas' gradients.
    """

    def __init__(
        self,
        cfg: GeneratorConfig,
        tcfg: TrainConfig,
        run_dir: Path,
        cluster: distributed.Cluster | None = None,
    ) -> None:
        self.cfg, self.tcfg, self.run_dir = cfg, tcfg, run_dir
        self.cluster = cluster or distributed.Cluster()
        if tcfg.batch_size % self.cluster.workers:
            raise UserError(
                f"the batch of {tcfg.batch_size} does not split evenly over "
                f"{self.cluster.workers} workers"
            )
        self.strategy = distributed.strategy_for(self.cluster)
        tf.keras.utils.set_random_seed(tcfg.seed)
        self._kinds = set(cfg.kinds().values())
        with self.strategy.scope():
            self.generator = build_generator(cfg)
            self.critic = build_critic(cfg)
            self.g_opt = tf.keras.optimizers.Adam(
                tcfg.lr_generator, beta_1=tcfg.beta_1, beta_2=tcfg.beta_2
            )
            self.d_opt = tf.keras.optimizers.Adam(
                tcfg.lr_critic, beta_1=tcfg.beta_1, beta_2=tcfg.beta_2
            )
        self.epoch = tf.Variable(0, dtype=tf.int64)
        self.best = tf.Variable(np.inf, dtype=tf.float64)
        self.stale = tf.Variable(0, dtype=tf.int64)
        self.ckpt = tf.train.Checkpoint(
            generator=self.generator,
            critic=self.critic,
            g_opt=self.g_opt,
            d_opt=self.d_opt,
            epoch=self.epoch,
            best=self.best,
            stale=self.stale,
        )
        # Every worker saves (the save is collective); only the chief's copy is kept.
        self.ckpt_dir = run_dir / "ckpt"
        own = (
            self.ckpt_dir
            if self.cluster.is_chief
            else run_dir / f".ckpt-worker-{self.cluster.rank}"
        )
        self.manager = tf.train.CheckpointManager(self.ckpt, own, max_to_keep=2)

    def restore(self) -> bool:
        """Continue from the chief's last checkpoint, if there is one."""
        latest = tf.train.latest_checkpoint(self.ckpt_dir)
        if latest:
            self.ckpt.restore(latest)
            log.info("resume=%s epoch=%d", latest, int(self.epoch.numpy()))
        return latest is not None

    def _save_checkpoint(self) -> None:
        self.manager.save()
        if not self.cluster.is_chief:
            shutil.rmtree(self.manager.directory, ignore_errors=True)

    def write_config(self, genre: str, command: str) -> None:
        """What export needs to rebuild the generator, and the command that made it."""
        (self.run_dir / "config.json").write_text(
            json.dumps(
                {
                    "genre": genre,
                    "generator": self.cfg.to_json(),
                    "train": asdict(self.tcfg),
                    "command": command,
                },
                indent=2,
            )
        )

    # --- one step -----------------------------------------------------------------
    def _stack(self, out: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """Outputs grouped by kind: (B, T, tracks, ...) tensors; kinds without tracks absent."""
        cfg, grouped = self.cfg, {}
        for kind, names in (("mono", cfg.voices), ("poly", cfg.poly), ("drums", cfg.drums)):
            if names:
                grouped[kind] = tf.stack([out[n] for n in names], axis=2)
                if kind != "drums":
                    grouped[f"{kind}_onset"] = tf.stack([out[f"{n}_onset"] for n in names], axis=2)
        return grouped

    def _losses(self, pred: dict, batch: dict) -> dict[str, tf.Tensor]:
        tc, losses = self.tcfg, {}
        if "mono" in pred:
            losses["ce"] = tf.reduce_mean(
                tf.keras.losses.sparse_categorical_crossentropy(batch["mono"], pred["mono"])
            )
            losses["onset_bce"] = _bce(batch["mono_onset"], pred["mono_onset"])
        if "poly" in pred:
            losses["poly_bce"] = _bce(batch["poly"], pred["poly"], tc.poly_pos_weight)
            losses["poly_onset_bce"] = _bce(batch["poly_onset"], pred["poly_onset"])
        if "drums" in pred:
            losses["drum_bce"] = _bce(batch["drums"], pred["drums"], tc.drum_pos_weight)
        onset = losses.get("onset_bce", 0.0) + losses.get("poly_onset_bce", 0.0)
        losses["loss"] = (
            losses.get("ce", 0.0)
            + losses.get("poly_bce", 0.0)
            + losses.get("drum_bce", 0.0)
            + tc.onset_weight * onset
        )
        return losses

    def _accomp(self, parts: dict[str, tf.Tensor]) -> tf.Tensor:
        """Every track of a batch as one (B, T, features) tensor for the critic."""
        steps = self.cfg.steps
        flat = []
        for kind in ("mono", "poly", "drums"):
            if kind in parts:
                flat.append(tf.reshape(parts[kind], (-1, steps, _width(parts[kind]))))
            if f"{kind}_onset" in parts:
                flat.append(parts[f"{kind}_onset"])
        return tf.concat(flat, axis=-1)

    def _hard(
        self, pred: dict[str, tf.Tensor], draws: dict[str, tf.Tensor]
    ) -> dict[str, tf.Tensor]:
        # Straight-through: the critic sees notes the device could play (one-hot
        # pitches, fired onsets and hits), gradients flow through the probabilities.
        # The uniform draws come with the batch (see draws()).
        hard = {}
        for key, p in pred.items():
            u = draws[f"u_{key}"]
            if key == "mono":
                gumbel = -tf.math.log(-tf.math.log(u))
                soft = tf.nn.softmax(
                    (tf.math.log(p + 1e-8) + gumbel) / self.tcfg.gumbel_temperature
                )
                one_hot = tf.one_hot(tf.argmax(soft, axis=-1), self.cfg.n_classes)
                hard[key] = one_hot + soft - tf.stop_gradient(soft)
            else:
                fired = tf.cast(u < p, tf.float32)
                hard[key] = fired + p - tf.stop_gradient(p)
        return hard

    def _real(self, batch: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        real = {}
        for key in ("mono", "mono_onset", "poly", "poly_onset", "drums"):
            if key.split("_")[0] in self._kinds:
                real[key] = (
                    tf.one_hot(batch[key], self.cfg.n_classes) if key == "mono" else batch[key]
                )
        return real

    def _noise(self, groove: tf.Tensor, gaussian: tf.Tensor) -> tf.Tensor:
        """As ``generator.noise_vector``: the groove one-hot, then Gaussian noise."""
        k = len(self.cfg.grooves)
        return tf.concat([tf.one_hot(groove, k), gaussian], axis=-1) if k else gaussian

    def draws(
        self, arrays: dict[str, np.ndarray], rng: np.random.Generator
    ) -> dict[str, np.ndarray]:
        """Every random number one training step uses, drawn for the whole global batch.

        Drawn here from the epoch's generator rather than inside the step, so that N
        workers, each given its slice of the batch, draw exactly what one worker draws
        for all of it, and a resumed run draws what the uninterrupted one did.
        """
        n = len(arrays["melody"])
        out = {
            "noise": rng.standard_normal((n, self.cfg.noise_dim - len(self.cfg.grooves))),
            "mix": rng.random((n, 1, 1)),  # where between real and fake the penalty looks
        }
        for key in ("mono", "mono_onset", "poly", "poly_onset", "drums"):
            if key in arrays and key.split("_")[0] in self._kinds:
                shape = arrays[key].shape + ((self.cfg.n_classes,) if key == "mono" else ())
                out[f"u_{key}"] = rng.uniform(1e-6, 1 - 1e-6, shape)
        return {k: v.astype(np.float32) for k, v in out.items()}

    @tf.function(reduce_retracing=True)
    def train_step(self, batch):
        """One step on this worker's slice of the global batch; the metrics of all of it."""
        per_replica = self.strategy.run(self._replica_step, args=(batch,))
        mean = tf.distribute.ReduceOp.MEAN
        return {k: self.strategy.reduce(mean, v, axis=None) for k, v in per_replica.items()}

    def _replica_step(self, batch):
        melody, chords = batch["melody"], batch["chords"]
        noise = self._noise(batch["groove"], batch["noise"])
        # Each replica's losses are means over its slice; the optimizers sum the
        # replicas' gradients, so each is scaled by their number.
        replicas = self.strategy.num_replicas_in_sync
        with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
            given = {"melody": melody, "chords": chords, "noise": noise}
            pred = self._stack(self.generator(given, training=True))
            losses = self._losses(pred, batch)
            real = self._accomp(self._real(batch))
            fake = self._accomp(self._hard(pred, batch))
            given = {"melody": melody, "chords": chords}
            d_real = self.critic({**given, "accomp": real}, training=True)
            d_fake = self.critic({**given, "accomp": fake}, training=True)
            penalty = self._gradient_penalty(
                melody, chords, real, tf.stop_gradient(fake), batch["mix"]
            )
            wasserstein = tf.reduce_mean(d_real) - tf.reduce_mean(d_fake)
            d_loss = (
                -wasserstein
                + self.tcfg.gradient_penalty * penalty
                + self.tcfg.drift_penalty * tf.reduce_mean(tf.square(d_real))
            )
            g_adv = -tf.reduce_mean(d_fake)
            g_loss = losses["loss"] + self.tcfg.adversarial_weight * g_adv
            g_scaled, d_scaled = g_loss / replicas, d_loss / replicas
        g_vars = self.generator.trainable_variables
        d_vars = self.critic.trainable_variables
        self.g_opt.apply_gradients(zip(g_tape.gradient(g_scaled, g_vars), g_vars))
        self.d_opt.apply_gradients(zip(d_tape.gradient(d_scaled, d_vars), d_vars))
        return {
            **losses,
            "g_loss": g_loss,
            "g_adv": g_adv,
            "d_loss": d_loss,
            "d_real": tf.reduce_mean(d_real),
            "d_fake": tf.reduce_mean(d_fake),
            "wasserstein": wasserstein,
            "gradient_penalty": penalty,
        }

    def _gradient_penalty(self, melody, chords, real, fake, mix) -> tf.Tensor:
        """E[(|grad critic(x)| - 1)^2] at random points x between real and fake."""
        between = mix * real + (1.0 - mix) * fake
        with tf.GradientTape() as tape:
            tape.watch(between)
            score = self.critic(
                {"melody": melody, "chords": chords, "accomp": between}, training=True
            )
        grad = tape.gradient(score, between)
        norm = tf.sqrt(tf.reduce_sum(tf.square(grad), axis=[1, 2]) + 1e-12)
        return tf.reduce_mean(tf.square(norm - 1.0))

    @tf.function(reduce_retracing=True)
    def predict(self, melody, chords, groove, gaussian):
        noise = self._noise(groove, gaussian)
        return self.generator({"melody": melody, "chords": chords, "noise": noise}, training=False)

    # --- one epoch ------------------------------------------------------------------
    def validate(self, data: Windows, metric_windows: int = 256) -> dict[str, float]:
        arrays = data.arrays(self.cfg)
        # The same noise every epoch and on every worker: their scores, and so their
        # decisions to keep weights or stop, agree.
        gaussian = (
            np.random.default_rng(self.tcfg.seed)
            .standard_normal((len(data), self.cfg.noise_dim - len(self.cfg.grooves)))
            .astype(np.float32)
        )
        outs: dict[str, list[np.ndarray]] = {}
        for i in range(0, len(data), 128):
            for k, v in self.predict(
                arrays["melody"][i : i + 128],
                arrays["chords"][i : i + 128],
                arrays["groove"][i : i + 128],
                gaussian[i : i + 128],
            ).items():
                outs.setdefault(k, []).append(v.numpy())
        out = {k: np.concatenate(v) for k, v in outs.items()}
        losses = self._losses(self._stack(out), arrays)
        stats = {f"val_{k}": float(v) for k, v in losses.items()}
        if "mono" in self._kinds:
            pred = np.stack([out[v] for v in self.cfg.voices], axis=2)
            stats["val_acc"] = float((pred.argmax(-1) == arrays["mono"]).mean())
        # Musical metrics of decoded tracks, on an evenly spread subset (decoding is slow).
        idx = np.linspace(0, len(data) - 1, min(metric_windows, len(data))).astype(int)
        stats.update(
            {
                f"val_{k}": v
                for k, v in window_metrics(
                    data.take(idx), {k: v[idx] for k, v in out.items()}, self.cfg
                ).items()
            }
        )
        return stats

    def batches(self, data: Windows, rng: np.random.Generator, steps: int):
        """``steps`` random global batches, each window transposed into a random key,
        with the step's random draws; this worker's slice of each."""
        size = self.tcfg.batch_size
        share = size // self.cluster.workers
        mine = slice(self.cluster.rank * share, (self.cluster.rank + 1) * share)
        for window in _global_batches(data, rng, steps, size):
            window = window.transposed(rng, self.cfg.pitch_low, self.cfg.pitch_high)
            arrays = _present(window.arrays(self.cfg), self._kinds)
            arrays.update(self.draws(arrays, rng))
            yield {k: v[mine] for k, v in arrays.items()}

    def fit(self, data: dict[str, Windows], log_path: Path, command: str) -> None:
        """Train epoch by epoch until ``epochs`` or early stopping; resumable at any epoch.

        Each epoch's batches come from a generator seeded by (seed, epoch), so a run
        resumed from a checkpoint trains exactly as the uninterrupted run would have.
        """
        chief = self.cluster.is_chief
        steps = self.tcfg.steps_per_epoch or len(data["train"]) // self.tcfg.batch_size
        while int(self.epoch.numpy()) < self.tcfg.epochs:
            epoch = int(self.epoch.numpy()) + 1
            rng = np.random.default_rng([self.tcfg.seed, epoch])
            started = time.monotonic()
            sums: dict[str, float] = {}
            bar = tqdm(
                self.batches(data["train"], rng, steps),
                total=steps,
                desc=f"epoch {epoch}/{self.tcfg.epochs}",
                leave=False,
                file=sys.stderr,
                disable=None if chief else True,
            )
            for batch in bar:
                out = self.train_step(batch)
                for k, v in out.items():
                    sums[k] = sums.get(k, 0.0) + float(v)
                bar.set_postfix(loss=f"{float(out['loss']):.3f}", d=f"{float(out['d_loss']):.3f}")
            row = {"epoch": epoch, **{k: v / steps for k, v in sums.items()}}
            row["train_seconds"] = round(time.monotonic() - started, 2)  # the steps alone
            row.update(self.validate(data["validation"]))
            row["seconds"] = round(time.monotonic() - started, 1)
            improved = row["val_loss"] < float(self.best.numpy())
            if improved:
                self.best.assign(row["val_loss"])
                self.stale.assign(0)
                if chief:
                    self.generator.save_weights(self.run_dir / "best.weights.h5")
            else:
                self.stale.assign_add(1)
            row["best"] = improved
            self.epoch.assign(epoch)
            if chief:  # the row first: a resume drops rows its checkpoint has not reached
                with open(log_path, "a") as f:
                    f.write(json.dumps(row) + "\n")
            self._save_checkpoint()
            if chief:
                plot_history(log_path, self.run_dir / "training.png")
            log.info(" ".join(f"{k}={_fmt(v)}" for k, v in row.items()))
            if int(self.stale.numpy()) >= self.tcfg.patience:
                log.info("stop=early reason=no_val_improvement patience=%d", self.tcfg.patience)
                break


def _global_batches(data, rng: np.random.Generator, steps: int, size: int) -> Iterator[Windows]:
    """``steps`` batches of ``size`` windows in a random order: from memory, or from a
    prepared folder's shards (:class:`~deepkeys.host.data.shards.ShardedWindows`), which
    reads them a few at a time."""
    if not isinstance(data, Windows):
        yield from data.batches(rng, steps, size)
        return
    order = np.concatenate(
        [rng.permutation(len(data)) for _ in range(-(-steps * size // len(data)))]
    )
    for i in range(steps):
        yield data.take(order[i * size : (i + 1) * size])


def _bce(target: tf.Tensor, p: tf.Tensor, pos_weight: float = 1.0) -> tf.Tensor:
    """Binary cross-entropy, the positive cells weighted by ``pos_weight``."""
    p = tf.clip_by_value(p, 1e-6, 1 - 1e-6)
    return -tf.reduce_mean(pos_weight * target * tf.math.log(p) + (1 - target) * tf.math.log(1 - p))


def _width(t: tf.Tensor) -> int:
    return int(np.prod(t.shape[2:]))


def _present(batch: dict[str, np.ndarray], kinds: set[str]) -> dict[str, np.ndarray]:
    """The batch arrays of the kinds this model has (tf.function traces them once)."""
    return {
        k: v
        for k, v in batch.items()
        if k in ("melody", "chords", "groove") or k.split("_")[0] in kinds
    }


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
    for key in ("loss", "val_loss", "ce", "poly_bce", "drum_bce"):
        if key in rows[-1]:
            axes[0].plot(epochs, [r.get(key, np.nan) for r in rows], label=key)
    axes[0].set_title("generator reconstruction")
    for key in ("d_loss", "g_adv", "wasserstein"):
        if key in rows[-1]:
            axes[1].plot(epochs, [r.get(key, np.nan) for r in rows], label=key)
    axes[1].set_title("adversarial (WGAN-GP)")
    for key in sorted(
        k
        for k in rows[-1]
        if k.startswith("val_")
        and k[4:] in ("in_key", "consonance", "QN", "EB", "DP", "polyphony_ratio", "acc")
    ):
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


def train(
    genre: str,
    run_dir: Path,
    epochs: int,
    seed: int,
    resume: bool,
    command: str,
    tcfg_overrides: dict | None = None,
    data_folder: Path | None = None,
    melody_track: str | None = None,
    cfg_overrides: dict | None = None,
    workers: int = 1,
) -> Path:
    """Train ``genre`` into ``run_dir`` and return the path of the best weights.

    ``workers`` > 1 starts that many local worker processes that train together
    (:func:`deepkeys.host.distributed.launch_local`); without it, a ``TF_CONFIG`` in
    the environment makes this process one worker of that cluster. ``cfg_overrides``
    replace fields of the genre's generator (a tiny one for tests).
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    if workers > 1:  # each worker loads the data; a bad folder is its one-line error
        spec = {
            "genre": genre,
            "run_dir": str(run_dir),
            "epochs": epochs,
            "seed": seed,
            "resume": resume,
            "command": command,
            "tcfg_overrides": tcfg_overrides,
            "data_folder": None if data_folder is None else str(data_folder),
            "melody_track": melody_track,
            "cfg_overrides": cfg_overrides,
        }
        if not resume:
            _clear_run(run_dir)
        distributed.launch_local(spec, workers, run_dir)
        return run_dir / "best.weights.h5"
    data = load_windows(genre, data_folder, melody_track)  # bad data fails before any work
    try:
        tf.config.threading.set_inter_op_parallelism_threads(2)
    except RuntimeError:
        pass  # TensorFlow already started in this process (a test): its setting stays
    cluster = distributed.current()
    cfg, defaults = genre_config(genre)
    if cfg_overrides:
        cfg = GeneratorConfig.from_json({**cfg.to_json(), **cfg_overrides})
    tcfg = TrainConfig(epochs=epochs, seed=seed, **{**defaults, **(tcfg_overrides or {})})
    log_path = run_dir / "log.jsonl"
    if not resume and cluster.is_chief:
        _clear_run(run_dir)
    trainer = Trainer(cfg, tcfg, run_dir, cluster)
    if resume and trainer.restore() and cluster.is_chief and log_path.exists():
        _trim_log(log_path, int(trainer.epoch.numpy()))
    if cluster.is_chief:
        trainer.write_config(genre, command)
    log.info(
        "data train=%d validation=%d test=%d workers=%d rank=%d",
        len(data["train"]),
        len(data["validation"]),
        len(data["test"]),
        cluster.workers,
        cluster.rank,
    )
    trainer.fit(data, log_path, command)
    return run_dir / "best.weights.h5"


def _trim_log(log_path: Path, epochs: int) -> None:
    """Keep the log's rows of the epochs a restored checkpoint holds: a worker that died
    after writing a row but before its checkpoint will run that epoch again."""
    rows = [r for r in read_log(log_path) if r["epoch"] <= epochs]
    log_path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _clear_run(run_dir: Path) -> None:
    """A fresh run: an earlier run's log and checkpoints would be taken for this one's."""
    (run_dir / "log.jsonl").unlink(missing_ok=True)
    shutil.rmtree(run_dir / "ckpt", ignore_errors=True)


def worker_main(spec_path: str) -> int:
    """One local worker of ``--workers``: ``train(**spec)`` under the ``TF_CONFIG`` its
    supervisor (:func:`deepkeys.host.distributed.launch_local`) gave it."""
    logging.basicConfig(
        level=logging.INFO,
        format=f"level=%(levelname)s logger=%(name)s worker={distributed.current().rank} "
        "%(message)s",
    )
    for chatty in ("absl", "tensorflow"):  # a line per checkpoint and per collective
        logging.getLogger(chatty).setLevel(logging.WARNING)
    spec = json.loads(Path(spec_path).read_text())
    spec["run_dir"] = Path(spec["run_dir"])
    if spec.get("data_folder"):
        spec["data_folder"] = Path(spec["data_folder"])
    try:
        train(**spec)
    except UserError as exc:
        print(f"deepkeys: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1]))
