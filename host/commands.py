"""Handlers of the host-only subcommands: train, export, evaluate (and the float half
of ``bench generate``). The CLI imports this module only when one of them runs."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from ..device.card import ModelCard, load_card
from ..device.encoding import voice_to_notes
from ..device.errors import UserError
from ..device.generator import Generator
from ..device.models import card_path

DEFAULT_RUNS = Path("runs")


def _run_dir(args: argparse.Namespace) -> Path:
    return args.run_dir or DEFAULT_RUNS / args.genre


def train(args: argparse.Namespace) -> int:
    from .train import train as run_training

    run_dir = _run_dir(args)
    # The card records this, so anyone can retrain the model exactly.
    command = f"deepkeys train --genre {args.genre} --epochs {args.epochs} --seed {args.seed}"
    best = run_training(args.genre, run_dir, args.epochs, args.seed, args.resume, command)
    print(f"weights={best}\nlog={run_dir / 'log.jsonl'}\nplot={run_dir / 'training.png'}")
    return 0


def _test_windows(genre: str, bars: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    from . import chorales

    if genre != "chorale":
        raise UserError(f"no held-out data recipe for genre {genre!r} yet")
    by_name = {c.name: c for c in chorales.load_chorales()}
    names = [n for n in chorales.load_split()["test"] if n in by_name]
    return chorales.windows([by_name[n] for n in names], bars=bars, hop_bars=1)


def export(args: argparse.Namespace) -> int:
    from . import chorales
    from .export import add_metrics, calibration_set, export as run_export, load_run
    from .train import read_log

    run_dir = _run_dir(args)
    if not (run_dir / "best.weights.h5").exists():
        raise UserError(f"{run_dir}: no trained weights (run 'deepkeys train --genre "
                        f"{args.genre}' first)")
    _, cfg = load_run(run_dir)
    by_name = {c.name: c for c in chorales.load_chorales()}
    train_set = [by_name[n] for n in chorales.load_split()["train"] if n in by_name]
    pitch, onset, _ = chorales.windows(train_set, bars=cfg.bars)
    soprano = pitch[:, 0][pitch[:, 0] >= 0]
    card = run_export(run_dir, args.genre, args.out, calibration_set(pitch, onset, cfg),
                      melody_center=int(np.median(soprano)),
                      history=read_log(run_dir / "log.jsonl"), extra_provenance={})
    test_pitch, test_onset, test_names = _test_windows(args.genre, cfg.bars)
    f1 = int8_float_agreement(card, test_pitch, test_onset)
    table = evaluation(card, test_pitch, test_onset, test_names, seed=0)
    add_metrics(card.path, {"test_split": table, "int8_vs_float_note_f1": round(f1, 4),
                            "evaluate_command": f"deepkeys evaluate --genre {args.genre}"})
    print(f"model={card.model_path}\ncard={card.path}\nint8_vs_float_note_f1={f1:.3f}")
    return 0


def evaluation(card: ModelCard, pitch: np.ndarray, onset: np.ndarray, names: list[str],
               seed: int = 0, temperature: float | None = None) -> dict[str, dict[str, float]]:
    """The evaluate table: int8 generation vs real vs shuffled, on held-out windows."""
    from .evaluate import evaluate_table

    generator = Generator(card)
    voice_names = [t.name for t in card.tracks]

    def generate(melody_pitch: np.ndarray, melody_onset: np.ndarray):
        n, steps = melody_pitch.shape
        out_p = np.empty((n, len(voice_names), steps), np.int16)
        out_o = np.empty((n, len(voice_names), steps), bool)
        for i in range(n):
            voices = generator.accompany(voice_to_notes(melody_pitch[i], melody_onset[i]), steps,
                                         seed=seed + i, temperature=temperature)
            for v, name in enumerate(voice_names):
                out_p[i, v], out_o[i, v] = voices[name]
        return out_p, out_o

    table = evaluate_table(pitch, onset, names, generate, voice_names)
    return {row: {k: round(v, 4) for k, v in vals.items()} for row, vals in table.items()}


def evaluate(args: argparse.Namespace) -> int:
    from .evaluate import format_table

    card = load_card(card_path(args.genre, args.models))
    pitch, onset, names = _test_windows(args.genre, card.bars)
    table = evaluation(card, pitch, onset, names, seed=args.seed, temperature=args.temperature)
    temperature = card.playback.temperature if args.temperature is None else args.temperature
    print(f"evaluate: genre={args.genre} model={card.model_path} windows={len(pitch)} "
          f"(test split, {card.bars}-bar windows) temperature={temperature}")
    print(format_table(table))
    return 0


def float_model_of(card: ModelCard, batch_size: int | None = None):
    """The float32 Keras generator shipped beside an int8 model."""
    from .model import GeneratorConfig, build_generator

    weights = card.model_path.parent / card.provenance["float_weights"]
    if not weights.exists():
        raise UserError(f"{weights}: float weights missing; re-run 'deepkeys export'")
    model = build_generator(GeneratorConfig.from_json(card.provenance["generator"]),
                            batch_size=batch_size)
    model.load_weights(weights)
    return model


def int8_float_agreement(card: ModelCard, pitch: np.ndarray, onset: np.ndarray) -> float:
    """Frame-level note F1 between the int8 and float models' decoded voices (temperature 0)."""
    from .evaluate import decode_windows
    from .model import GeneratorConfig, melody_tensor

    cfg = GeneratorConfig.from_json(card.provenance["generator"])
    generator = Generator(card)
    model = float_model_of(card)
    noise = np.random.default_rng(0).standard_normal(cfg.noise_dim).astype(np.float32)
    melody = melody_tensor(pitch[:, 0], onset[:, 0], cfg)
    out = model.predict({"melody": melody, "noise": np.tile(noise, (len(melody), 1))},
                        batch_size=64, verbose=0)
    names = [t.name for t in card.tracks]
    float_p, _ = decode_windows(np.stack([out[n] for n in names], axis=2),
                                np.stack([out[f"{n}_onset"] for n in names], axis=2), cfg.pitch_low)
    tp = fp = fn = 0
    for i in range(len(pitch)):
        q = generator.infer(pitch[i, 0], onset[i, 0], noise)
        q_p, _ = decode_windows(np.stack([q[n] for n in names], axis=1)[None],
                                np.stack([q[f"{n}_onset"] for n in names], axis=1)[None],
                                cfg.pitch_low)
        a, b = q_p[0], float_p[i]
        on_a, on_b = a >= 0, b >= 0
        tp += int(np.sum(on_a & on_b & (a == b)))
        fp += int(np.sum(on_a & ~(on_b & (a == b))))
        fn += int(np.sum(on_b & ~(on_a & (a == b))))
    return 2 * tp / max(2 * tp + fp + fn, 1)


def bench_float(result, runs: int) -> None:
    """The float32 Keras half of ``bench generate``: the same phrase, the same noise."""
    import tensorflow as tf

    from ..device.bench import percentiles
    from .model import GeneratorConfig, melody_tensor

    card = load_card(result.card_path)
    cfg = GeneratorConfig.from_json(card.provenance["generator"])
    tf.config.threading.set_intra_op_parallelism_threads(1)
    model = float_model_of(card, batch_size=1)
    melody = tf.constant(melody_tensor(result.phrase_pitch[None], result.phrase_onset[None], cfg))
    noise = tf.constant(result.noise[None])
    serve = tf.function(lambda m, z: model({"melody": m, "noise": z}, training=False))
    for _ in range(10):
        serve(melody, noise)
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = serve(melody, noise)
        [v.numpy() for v in out.values()]
        samples.append(time.perf_counter() - t0)
    med, p95 = percentiles(samples)
    int8_med, _ = percentiles(result.invoke_s)
    print(f"| float32 Keras (tf.function, 1 thread), one {card.bars}-bar phrase "
          f"| {med:.2f} | {p95:.2f} |")
    print(f"int8 speed-up over float32 Keras: {med / int8_med:.1f}x")
